// The "map" module: nginx's ngx_http_map_module.
//   map SOURCE $variable { ... }        http      (load; the variable is computed when used)
//   map_hash_max_size SIZE;             http      (accepted for nginx compatibility; no effect)
//   map_hash_bucket_size SIZE;          http      (accepted for nginx compatibility; no effect)
// No phase handlers. Inside the block (read from the syntax tree, not as directives):
//   default VALUE;  hostnames;  volatile;  include FILE;  KEY VALUE;
// KEY is a string matched ignoring case ("\" before a key that would read as a parameter or a
// regex), "~REGEX" (case-sensitive) or "~*REGEX", and with `hostnames` also "*.example.com",
// ".example.com" and "www.example.*". Priority: exact, longest leading mask, longest trailing
// mask, first matching regex in config order, default (else ""). SOURCE and VALUE may contain
// variables; VALUE also "$1".."$9" and the named groups of its own regex key.
//
// Variables are resolved at load (as everywhere in tollgate), so a map must come before the
// directives that use its variable, and the variables it uses must already be defined. The value
// is computed lazily the first time the request uses it and then cached for the request, except
// with `volatile`. Defining the same $variable in a second map replaces the first (as nginx);
// defining one that another module provides is an error.
#include <memory>
#include <optional>
#include <vector>

#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "modules/map/map.hpp"

namespace tollgate {
namespace {

struct MapMainConf : ModuleConf {
    std::vector<std::unique_ptr<map::Map>> maps;
    std::optional<uint64_t> hash_max_size;
    std::optional<uint64_t> hash_bucket_size;
};

// Maps whose values use other maps nest their evaluation; a cycle (possible only by redefining a
// map's variable) would recurse without end, so nesting deeper than this yields "not found".
constexpr int kMaxNesting = 32;

bool get_map_variable(http::Request& r, std::string_view, uintptr_t data, std::string_view& out) {
    thread_local int depth = 0;
    if (depth >= kMaxNesting) return false;
    struct Nest {
        Nest() { ++depth; }
        ~Nest() { --depth; }
    } nest;
    const auto& m = *reinterpret_cast<const map::Map*>(data);
    std::string_view key = m.source().evaluate(r);
    size_t ovector[2 * map::kMaxCaptures];
    std::string_view subject;
    const map::MapValue* value = m.find(key, ovector, subject);
    out = value != nullptr ? value->evaluate(r, subject, ovector) : std::string_view();
    return true;
}

void set_map(DirectiveContext& ctx) {
    auto& conf = ctx.conf<MapMainConf>();
    VariableRegistry& registry = ctx.builder.variables();
    auto m = map::Map::compile(ctx.node, registry);
    auto existing = registry.find(m->variable());
    if (existing && existing->suffix.empty() &&
        registry.at(existing->index).get != get_map_variable)
        ctx.fail("the duplicate \"" + m->variable() + "\" variable");
    registry.add(m->variable(), get_map_variable, reinterpret_cast<uintptr_t>(m.get()),
                 !m->is_volatile());
    conf.maps.push_back(std::move(m));
}

void set_hash_size(DirectiveContext& ctx) {
    auto& conf = ctx.conf<MapMainConf>();
    auto& field = ctx.node.name == "map_hash_max_size" ? conf.hash_max_size : conf.hash_bucket_size;
    if (field) ctx.duplicate();
    field = ctx.size_arg(0);
}

constexpr Directive kDirectives[] = {
    {"map", kHttpContext, 2, 2, true, ConfScope::Main, set_map},
    {"map_hash_max_size", kHttpContext, 1, 1, false, ConfScope::Main, set_hash_size},
    {"map_hash_bucket_size", kHttpContext, 1, 1, false, ConfScope::Main, set_hash_size},
};

}  // namespace

extern const Module map_module = {
    .name = "map",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new MapMainConf()); },
};

}  // namespace tollgate
