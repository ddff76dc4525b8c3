#include "core/generation.hpp"

#include <unistd.h>

#include <algorithm>

#include "core/config/error.hpp"
#include "core/config/values.hpp"

namespace tollgate {

size_t module_index(const Module& m) {
    auto list = compiled_modules();
    for (size_t i = 0; i < list.size(); ++i) {
        if (list[i] == &m) return i;
    }
    return SIZE_MAX;
}

// ---- DirectiveContext helpers ---------------------------------------------------------------

void DirectiveContext::invalid_value(size_t i, std::string_view reason) const {
    std::string msg = "invalid value \"" + arg(i) + "\" in \"" + node.name + "\" directive";
    if (!reason.empty()) msg += ", " + std::string(reason);
    fail(msg);
}

void DirectiveContext::duplicate() const {
    fail("\"" + node.name + "\" directive is duplicate");
}

uint64_t DirectiveContext::size_arg(size_t i) const {
    auto v = conf::parse_size(arg(i));
    if (!v) invalid_value(i);
    return *v;
}

uint64_t DirectiveContext::time_ms_arg(size_t i) const {
    auto v = conf::parse_time_ms(arg(i));
    if (!v) invalid_value(i);
    return *v;
}

bool DirectiveContext::flag_arg(size_t i) const {
    auto v = conf::parse_flag(arg(i));
    if (!v) {
        fail("invalid value \"" + arg(i) + "\" in \"" + node.name +
             "\" directive, it must be \"on\" or \"off\"");
    }
    return *v;
}

int64_t DirectiveContext::int_arg(size_t i, int64_t min, int64_t max) const {
    auto v = conf::parse_int(arg(i));
    if (!v || *v < min || *v > max) invalid_value(i);
    return *v;
}

void DirectiveContext::lru_cache_args(size_t& max, int64_t& valid_s) const {
    if (arg(0) == "off") {
        if (nargs() > 1) invalid_value(1);
        max = 0;
        return;
    }
    bool have_max = false;
    for (size_t i = 0; i < nargs(); ++i) {
        std::string_view a = arg(i);
        if (a.rfind("max=", 0) == 0) {
            auto v = conf::parse_int(a.substr(4));
            if (!v || *v < 1 || *v > 1000000) invalid_value(i, "max must be 1 to 1000000");
            max = static_cast<size_t>(*v);
            have_max = true;
        } else if (a.rfind("valid=", 0) == 0) {
            auto ms = conf::parse_time_ms(a.substr(6));
            if (!ms || *ms < 1000 || *ms > 3600000000ULL) {
                invalid_value(i, "valid must be 1s to 1000h");
            }
            valid_s = static_cast<int64_t>(*ms / 1000);
        } else {
            invalid_value(i);
        }
    }
    if (!have_max) fail("\"" + node.name + "\" needs max=N or off");
}

// ---- GenerationBuilder ----------------------------------------------------------------------

namespace {

std::string with_trailing_slash(std::string s) {
    if (s.empty() || s.back() != '/') s += '/';
    return s;
}

std::string absolute_from(const std::string& base, std::string_view path) {
    if (!path.empty() && path.front() == '/') return std::string(path);
    return base + std::string(path);
}

int last_line(const std::string& content) {
    return 1 + static_cast<int>(std::count(content.begin(), content.end(), '\n'));
}

// Merge one scope's configs: every module with a merge function fills the child from the parent.
void merge_confs(const http::ConfVector& parent, http::ConfVector& child, bool location) {
    auto modules = compiled_modules();
    for (size_t i = 0; i < modules.size(); ++i) {
        auto merge = location ? modules[i]->merge_location : modules[i]->merge_server;
        if (merge != nullptr && parent[i] && child[i]) merge(*parent[i], *child[i]);
    }
}

void build_lookup_tables(http::Server& server) {
    for (auto& loc : server.locations) {
        switch (loc->kind) {
            case http::Location::Kind::Exact:
                server.exact.emplace(loc->pattern, loc.get());
                break;
            case http::Location::Kind::Prefix:
            case http::Location::Kind::PrefixNoRegex:
                server.prefixes.push_back(loc.get());
                break;
            case http::Location::Kind::Regex:
                server.regexes.push_back(loc.get());
                break;
            case http::Location::Kind::Named:
                server.named.emplace(loc->pattern, loc.get());
                break;
            case http::Location::Kind::ServerDefault:
                break;
        }
    }
    std::stable_sort(server.prefixes.begin(), server.prefixes.end(),
                     [](const http::Location* a, const http::Location* b) {
                         return a->pattern.size() > b->pattern.size();
                     });
}

}  // namespace

GenerationBuilder::GenerationBuilder(const BuildOptions& options)
    : options_(options), gen_(std::make_shared<ConfigGeneration>()) {
    auto modules = compiled_modules();
    for (size_t i = 0; i < modules.size(); ++i) {
        for (const Directive& d : modules[i]->directives)
            directives_[d.name].push_back(Entry{i, &d});
    }
}

std::vector<std::unique_ptr<ModuleConf>> GenerationBuilder::create_confs(ConfScope scope) const {
    std::vector<std::unique_ptr<ModuleConf>> out;
    for (const Module* m : compiled_modules()) {
        auto create = scope == ConfScope::Main     ? m->create_main
                      : scope == ConfScope::Server ? m->create_server
                                                   : m->create_location;
        out.push_back(create != nullptr ? create() : nullptr);
    }
    return out;
}

std::string GenerationBuilder::prefix_path(std::string_view path) const {
    return absolute_from(gen_->prefix, path);
}

std::string GenerationBuilder::conf_dir_path(std::string_view path) const {
    return absolute_from(conf_dir_, path);
}

void GenerationBuilder::parse_block(const conf::Node& block, uint32_t context,
                                    const ConfSlots& slots) {
    for (const conf::Node& node : block.children) {
        auto it = directives_.find(node.name);
        if (it == directives_.end()) node.fail("unknown directive \"" + node.name + "\"");
        const Entry* entry = nullptr;
        for (const Entry& e : it->second) {
            if ((e.directive->contexts & context) != 0) {
                entry = &e;
                break;
            }
        }
        if (entry == nullptr) node.fail("\"" + node.name + "\" directive is not allowed here");
        const Directive& d = *entry->directive;
        if (d.block != node.is_block) {
            node.fail(d.block ? "directive \"" + node.name + "\" has no opening \"{\""
                              : "unexpected \"{\"");
        }
        size_t n = node.args.size();
        if (n < d.min_args || (d.max_args != kUnlimitedArgs && n > d.max_args)) {
            node.fail("invalid number of arguments in \"" + node.name + "\" directive");
        }
        ModuleConf* conf = nullptr;
        if (d.scope != ConfScope::None) {
            auto* vec = d.scope == ConfScope::Main     ? slots.main
                        : d.scope == ConfScope::Server ? slots.server
                                                       : slots.location;
            conf = vec != nullptr ? (*vec)[entry->module].get() : nullptr;
            if (conf == nullptr) node.fail("\"" + node.name + "\" directive is not allowed here");
        }
        DirectiveContext ctx(node, *this, conf, context);
        d.handler(ctx);
    }
}

std::shared_ptr<SharedZone> GenerationBuilder::shared_zone(const conf::Node& where,
                                                           std::string_view name, size_t size,
                                                           std::string_view kind, uint64_t layout) {
    for (const auto& z : gen_->zones) {
        if (z->name() != name) continue;
        if (z->kind() != kind) {
            where.fail("zone \"" + std::string(name) + "\" is already declared for " + z->kind());
        }
        if (z->size() != size || z->layout() != layout) {
            where.fail("zone \"" + std::string(name) +
                       "\" is already declared with other parameters");
        }
        return z;
    }
    std::string error;
    auto z = SharedZone::acquire(name, kind, size, layout, error);
    if (!z) where.fail("zone \"" + std::string(name) + "\" " + error);
    gen_->zones.push_back(z);
    return z;
}

std::shared_ptr<SharedZone> GenerationBuilder::find_shared_zone(std::string_view name) const {
    for (const auto& z : gen_->zones) {
        if (z->name() == name) return z;
    }
    return nullptr;
}

std::string GenerationBuilder::resolve_prefix(const BuildOptions& options) {
    std::string prefix =
        with_trailing_slash(options.prefix.empty() ? TOLLGATE_DEFAULT_PREFIX : options.prefix);
    if (prefix.front() != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) != nullptr) prefix = with_trailing_slash(cwd) + prefix;
    }
    return prefix;
}

std::string GenerationBuilder::resolve_conf_path(const BuildOptions& options) {
    return absolute_from(resolve_prefix(options), options.conf_path.empty()
                                                      ? TOLLGATE_DEFAULT_CONF_PATH
                                                      : options.conf_path);
}

std::shared_ptr<const ConfigGeneration> GenerationBuilder::build(const BuildOptions& options) {
    GenerationBuilder b(options);
    ConfigGeneration& gen = *b.gen_;
    gen.prefix = resolve_prefix(options);
    gen.conf_path = resolve_conf_path(options);
    b.conf_dir_ = gen.conf_path.substr(0, gen.conf_path.rfind('/') + 1);

    for (const Module* m : compiled_modules()) {
        if (m->register_variables != nullptr) m->register_variables(gen.variables);
    }
    gen.main_confs = b.create_confs(ConfScope::Main);

    conf::ParseOptions popts;
    popts.include_base = b.conf_dir_;
    conf::ParsedConfig parsed = conf::parse_file(gen.conf_path, popts);
    if (!options.global_directives.empty()) {
        conf::ParsedConfig extra =
            conf::parse_string(options.global_directives, "command line", popts);
        for (auto& n : extra.root.children) parsed.root.children.push_back(std::move(n));
    }
    gen.files = std::move(parsed.files);
    ConfSlots main_slots{&gen.main_confs, nullptr, nullptr};
    b.parse_block(parsed.root, kMainContext, main_slots);

    const std::string& main_file = gen.files.empty() ? gen.conf_path : gen.files.front().path;
    int eof_line = gen.files.empty() ? 1 : last_line(gen.files.front().content);
    if (!gen.http) {
        throw conf::ConfigError(main_file, eof_line, "no \"http\" section in configuration");
    }

    // Merge top-down: http -> server -> location (server defaults are the locations' parent).
    http::HttpConfig& h = *gen.http;
    for (auto& server : h.servers) {
        merge_confs(h.srv_confs, server->srv_confs, false);
        merge_confs(h.loc_confs, server->defaults->confs, true);
        for (auto& loc : server->locations) merge_confs(server->defaults->confs, loc->confs, true);
        build_lookup_tables(*server);
    }
    for (const Module* m : compiled_modules()) {
        if (m->check != nullptr) m->check(b);
    }
    for (auto& server : h.servers) {
        auto attach = [&](http::Location& loc) {
            LocationBuilder lb(loc, *server, b);
            for (const Module* m : compiled_modules()) {
                if (m->attach_location != nullptr) m->attach_location(lb);
            }
        };
        attach(*server->defaults);
        for (auto& loc : server->locations) attach(*loc);
    }
    return b.gen_;
}

}  // namespace tollgate
