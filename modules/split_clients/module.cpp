// The "split_clients" module: nginx's ngx_http_split_clients_module, for canary and A/B splits.
//   split_clients STRING $variable { PERCENT% VALUE; ... [* VALUE;] }      http
// No phase handlers: $variable is computed when a request first uses it (then cached for the
// request). STRING (with variables) is hashed with MurmurHash2 and the hash picks the part whose
// share of the 32-bit hash space it falls in, in the order written: the same key always lands in
// the same part (sticky), and the assignment is nginx's own, key for key. PERCENT has at most
// two decimals; "*" takes the rest; the total may not pass 100% (below 100% without "*", the
// keys past the total get an empty value). VALUE is a literal, as in nginx. Typical use:
//   split_clients "${remote_addr}${http_user_agent}" $variant { 5% canary; * stable; }
//   location / { proxy_pass http://$variant; }
#include <memory>
#include <vector>

#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "core/variables.hpp"
#include "modules/split_clients/split_clients.hpp"

namespace tollgate {
namespace {

struct Split {
    ComplexValue key;
    split_clients::SplitTable table;
};

struct SplitMainConf : ModuleConf {
    std::vector<std::unique_ptr<Split>> splits;
};

bool get_split_variable(http::Request& r, std::string_view, uintptr_t data, std::string_view& out) {
    const auto& s = *reinterpret_cast<const Split*>(data);
    const std::string* v = s.table.pick_key(s.key.evaluate(r));
    out = v != nullptr ? std::string_view(*v) : std::string_view();
    return true;
}

void set_split_clients(DirectiveContext& ctx) {
    auto& conf = ctx.conf<SplitMainConf>();
    VariableRegistry& registry = ctx.builder.variables();
    std::string_view name = ctx.arg(1);
    if (name.size() < 2 || name.front() != '$') ctx.invalid_value(1);
    name.remove_prefix(1);
    auto split = std::make_unique<Split>();
    split->key = ComplexValue::compile(ctx.arg(0), registry, ctx.node);
    for (const conf::Node& part : ctx.node.children) {
        if (part.is_block || part.args.size() != 1) {
            part.fail("invalid number of arguments in split_clients part \"" + part.name + "\"");
        }
        uint32_t hundredths = 0;
        if (part.name != "*") {
            auto p = split_clients::parse_percent(part.name);
            if (!p) part.fail("invalid percent value \"" + part.name + "\"");
            hundredths = *p;
        }
        std::string error = split->table.add(hundredths, part.args[0].value);
        if (!error.empty()) part.fail(error);
    }
    if (split->table.parts().empty()) ctx.fail("split_clients block is empty");
    auto existing = registry.find(name);
    if (existing && existing->suffix.empty() &&
        registry.at(existing->index).get != get_split_variable) {
        ctx.fail("the duplicate \"" + std::string(name) + "\" variable");
    }
    registry.add(std::string(name), get_split_variable, reinterpret_cast<uintptr_t>(split.get()));
    conf.splits.push_back(std::move(split));
}

constexpr Directive kDirectives[] = {
    {"split_clients", kHttpContext, 2, 2, true, ConfScope::Main, set_split_clients},
};

}  // namespace

extern const Module split_clients_module = {
    .name = "split_clients",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new SplitMainConf()); },
};

}  // namespace tollgate
