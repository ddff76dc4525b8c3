#include "core/http/http_core_module.hpp"

#include <algorithm>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/generation.hpp"

namespace tollgate::http {

void register_http_variables(VariableRegistry& registry);  // http_variables.cpp

namespace {

HttpCoreServerConf& srv(DirectiveContext& ctx) {
    return ctx.conf<HttpCoreServerConf>();
}
HttpCoreLocConf& loc(DirectiveContext& ctx) {
    return ctx.conf<HttpCoreLocConf>();
}

template <class T>
void set_once(DirectiveContext& ctx, std::optional<T>& field, T value) {
    if (field) ctx.duplicate();
    field = std::move(value);
}

void http_block(DirectiveContext& ctx) {
    auto& gen = ctx.builder.generation();
    if (gen.http) ctx.duplicate();
    gen.http = std::make_unique<HttpConfig>();
    gen.http->srv_confs = ctx.builder.create_confs(ConfScope::Server);
    gen.http->loc_confs = ctx.builder.create_confs(ConfScope::Location);
    ConfSlots slots{&gen.main_confs, &gen.http->srv_confs, &gen.http->loc_confs};
    ctx.builder.parse_block(ctx.node, kHttpContext, slots);
}

void server_block(DirectiveContext& ctx) {
    auto& gen = ctx.builder.generation();
    auto server = std::make_unique<Server>();
    server->srv_confs = ctx.builder.create_confs(ConfScope::Server);
    server->defaults = std::make_unique<Location>();
    server->defaults->kind = Location::Kind::ServerDefault;
    server->defaults->confs = ctx.builder.create_confs(ConfScope::Location);
    server->file = *ctx.node.file;
    server->line = ctx.node.line;
    Server* s = server.get();
    gen.http->servers.push_back(std::move(server));
    ConfSlots slots{&gen.main_confs, &s->srv_confs, &s->defaults->confs};
    ctx.builder.parse_block(ctx.node, kServerContext, slots);
}

void location_block(DirectiveContext& ctx) {
    Server& server = *ctx.builder.http()->servers.back();
    auto loc = std::make_unique<Location>();
    std::string modifier;
    std::string pattern;
    if (ctx.nargs() == 2) {
        modifier = ctx.arg(0);
        pattern = ctx.arg(1);
    } else {
        pattern = ctx.arg(0);
        if (pattern.size() > 1 && pattern[0] == '=') {  // nginx accepts "=/exact"
            modifier = "=";
            pattern.erase(0, 1);
        }
    }
    if (modifier.empty()) {
        if (!pattern.empty() && pattern[0] == '@') {
            loc->kind = Location::Kind::Named;
        } else {
            loc->kind = Location::Kind::Prefix;
        }
    } else if (modifier == "=") {
        loc->kind = Location::Kind::Exact;
    } else if (modifier == "^~") {
        loc->kind = Location::Kind::PrefixNoRegex;
    } else if (modifier == "~" || modifier == "~*") {
        loc->kind = Location::Kind::Regex;
        std::string error;
        loc->regex = Regex::compile(pattern, modifier == "~*", error);
        if (!loc->regex) ctx.fail("invalid regex \"" + pattern + "\": " + error);
    } else {
        ctx.fail("invalid location modifier \"" + modifier + "\"");
    }
    if (pattern.empty()) ctx.fail("empty location \"\"");
    for (const auto& other : server.locations) {
        if (other->pattern == pattern && other->kind == loc->kind) {
            ctx.fail("duplicate location \"" + pattern + "\"");
        }
    }
    loc->pattern = pattern;
    loc->confs = ctx.builder.create_confs(ConfScope::Location);
    loc->file = *ctx.node.file;
    loc->line = ctx.node.line;
    Location* l = loc.get();
    server.locations.push_back(std::move(loc));
    ConfSlots slots{&ctx.builder.generation().main_confs, &server.srv_confs, &l->confs};
    ctx.builder.parse_block(ctx.node, kLocationContext, slots);
}

void listen(DirectiveContext& ctx) {
    ListenSpec spec;
    std::string error;
    if (!parse_listen_address(ctx.arg(0), spec, error))
        ctx.fail(error + " in \"listen\" directive");
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        const std::string& a = ctx.arg(i);
        if (a == "default_server" || a == "default") {
            spec.default_server = true;
        } else if (a.rfind("backlog=", 0) == 0) {
            auto v = conf::parse_int(std::string_view(a).substr(8));
            if (!v || *v < 1 || *v > 65535) ctx.invalid_value(i);
            spec.backlog = static_cast<int>(*v);
        } else if (a == "ipv6only=on" || a == "ipv6only=off") {
            spec.ipv6only = a == "ipv6only=on";
        } else if (a == "ssl") {
            spec.ssl = true;
        } else if (a == "reuseport") {
            // Always on: every worker slot has its own SO_REUSEPORT socket.
        } else {
            ctx.fail("invalid parameter \"" + a + "\"");
        }
    }
    for (const auto& other : srv(ctx).listens) {
        if (other.text == spec.text) ctx.fail("duplicate listen " + spec.text);
    }
    spec.file = *ctx.node.file;
    spec.line = ctx.node.line;
    srv(ctx).listens.push_back(spec);
}

void server_name(DirectiveContext& ctx) {
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string name = ctx.arg(i);
        if (name.empty()) continue;  // server_name ""; matches requests with no Host
        if (name[0] != '~') {
            std::transform(name.begin(), name.end(), name.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            size_t stars = std::count(name.begin(), name.end(), '*');
            bool lead = name.rfind("*.", 0) == 0;
            bool trail = name.size() > 2 && name.compare(name.size() - 2, 2, ".*") == 0;
            if (stars > 1 || (stars == 1 && !lead && !trail)) {
                ctx.fail("invalid server name or wildcard \"" + name + "\"");
            }
        } else {
            std::string error;  // compiled again in check(); here for the error's line
            if (!Regex::compile(std::string_view(name).substr(1), true, error)) {
                ctx.fail("invalid server_name regex \"" + name + "\": " + error);
            }
        }
        srv(ctx).names.push_back(name);
    }
}

void client_header_timeout(DirectiveContext& ctx) {
    set_once(ctx, srv(ctx).client_header_timeout_ms, ctx.time_ms_arg(0));
}

void large_client_header_buffers(DirectiveContext& ctx) {
    int64_t n = ctx.int_arg(0, 1, 1024);
    uint64_t size = ctx.size_arg(1);
    if (size < 64 || size > (1u << 20)) ctx.invalid_value(1, "must be between 64 and 1m");
    HeadLimits limits;
    limits.max_line = size;
    limits.max_head = size * static_cast<uint64_t>(n);
    set_once(ctx, srv(ctx).header_limits, limits);
}

void client_max_body_size(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).client_max_body_size, ctx.size_arg(0));
}
void client_body_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).client_body_timeout_ms, ctx.time_ms_arg(0));
}
void send_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).send_timeout_ms, ctx.time_ms_arg(0));
}
void keepalive_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).keepalive_timeout_ms, ctx.time_ms_arg(0));
}
void satisfy(DirectiveContext& ctx) {
    if (ctx.arg(0) != "all" && ctx.arg(0) != "any") ctx.invalid_value(0, "expected all or any");
    set_once(ctx, loc(ctx).satisfy_any, ctx.arg(0) == "any");
}
void internal(DirectiveContext& ctx) {
    if (loc(ctx).internal) ctx.duplicate();
    loc(ctx).internal = true;
}

void keepalive_requests(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).keepalive_requests, static_cast<uint64_t>(ctx.int_arg(0)));
}
void default_type(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).default_type, ctx.arg(0));
}

void server_tokens(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).server_tokens, ctx.flag_arg(0));
}

// Tuning knobs of nginx's implementation that have no counterpart here: the value is checked and
// otherwise has no effect (see the header comment).
void compat_flag(DirectiveContext& ctx) {
    (void)ctx.flag_arg(0);
}
void compat_size(DirectiveContext& ctx) {
    (void)ctx.size_arg(0);
}

void error_page(DirectiveContext& ctx) {
    size_t n = ctx.nargs();
    ErrorPage page;
    size_t last_code = n - 1;  // the final argument is the uri
    if (n >= 3 && ctx.arg(n - 2)[0] == '=') {
        const std::string& eq = ctx.arg(n - 2);
        if (eq.size() == 1) {
            page.override_status = 0;
        } else {
            auto v = conf::parse_int(std::string_view(eq).substr(1));
            if (!v || *v < 100 || *v > 599) ctx.invalid_value(n - 2);
            page.override_status = static_cast<int>(*v);
        }
        last_code = n - 2;
    } else if (n >= 2 && ctx.arg(n - 1)[0] == '=' && ctx.arg(n - 1).size() > 1 &&
               ctx.arg(n - 1).find('/') != std::string::npos) {
        ctx.fail("invalid value \"" + ctx.arg(n - 1) + "\"");
    }
    if (last_code == 0) ctx.fail("invalid number of arguments in \"error_page\" directive");
    for (size_t i = 0; i < last_code; ++i) {
        auto v = conf::parse_int(ctx.arg(i));
        if (!v || *v < 300 || *v > 599) {
            ctx.fail("value \"" + ctx.arg(i) + "\" must be between 300 and 599");
        }
        page.codes.push_back(static_cast<int>(*v));
    }
    page.uri = ComplexValue::compile(ctx.arg(n - 1), ctx.builder.variables(), ctx.node);
    auto& pages = loc(ctx).error_pages;
    if (!pages) pages.emplace();
    pages->push_back(std::move(page));
}

void types_block(DirectiveContext& ctx) {
    auto& c = loc(ctx);
    if (c.types) ctx.duplicate();
    auto types = std::make_shared<MimeTypes>();
    for (const auto& entry : ctx.node.children) {
        if (entry.is_block || entry.args.empty()) {
            entry.fail("invalid types entry \"" + entry.name + "\"");
        }
        for (const auto& ext : entry.args) {
            std::string e = ext.value;
            std::transform(e.begin(), e.end(), e.begin(),
                           [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
            (*types)[e] = entry.name;
        }
    }
    c.types = std::move(types);
}

template <class T>
void inherit(std::optional<T>& child, const std::optional<T>& parent) {
    if (!child && parent) child = parent;
}

void merge_server(const ModuleConf& p, ModuleConf& c) {
    const auto& parent = static_cast<const HttpCoreServerConf&>(p);
    auto& child = static_cast<HttpCoreServerConf&>(c);
    inherit(child.client_header_timeout_ms, parent.client_header_timeout_ms);
    inherit(child.header_limits, parent.header_limits);
}

void merge_location(const ModuleConf& p, ModuleConf& c) {
    const auto& parent = static_cast<const HttpCoreLocConf&>(p);
    auto& child = static_cast<HttpCoreLocConf&>(c);
    inherit(child.client_max_body_size, parent.client_max_body_size);
    inherit(child.client_body_timeout_ms, parent.client_body_timeout_ms);
    inherit(child.send_timeout_ms, parent.send_timeout_ms);
    inherit(child.keepalive_timeout_ms, parent.keepalive_timeout_ms);
    inherit(child.keepalive_requests, parent.keepalive_requests);
    inherit(child.error_pages, parent.error_pages);
    inherit(child.default_type, parent.default_type);
    inherit(child.server_tokens, parent.server_tokens);
    inherit(child.satisfy_any, parent.satisfy_any);
    if (!child.types) child.types = parent.types;
}

// Builds the listen table: which servers each address reaches, and its default server.
void check(GenerationBuilder& b) {
    HttpConfig& h = *b.http();
    size_t idx = http_core_index();
    for (auto& server : h.servers) {
        auto& sc = static_cast<HttpCoreServerConf&>(*server->srv_confs[idx]);
        if (sc.listens.empty()) {
            ListenSpec spec;
            std::string error;
            parse_listen_address(b.options().running_as_root ? "80" : "8000", spec, error);
            sc.listens.push_back(spec);
        }
        for (const std::string& name : sc.names) {
            if (name[0] == '~') {
                std::string error;
                auto re = Regex::compile(std::string_view(name).substr(1), true, error);
                if (!re) {
                    throw conf::ConfigError(server->file, server->line,
                                            "invalid server_name regex \"" + name + "\": " + error);
                }
                server->regex_names.push_back(std::move(re));
            } else if (name.rfind("*.", 0) == 0) {
                server->leading_wildcards.push_back(name.substr(1));
            } else if (name.size() > 2 && name.compare(name.size() - 2, 2, ".*") == 0) {
                server->trailing_wildcards.push_back(name.substr(0, name.size() - 1));
            } else {
                server->exact_names.push_back(name);
            }
        }
        for (const ListenSpec& spec : sc.listens) {
            auto it = std::find_if(h.listens.begin(), h.listens.end(),
                                   [&](const Listen& l) { return l.spec.text == spec.text; });
            if (it == h.listens.end()) {
                h.listens.push_back(Listen{spec, {}, nullptr});
                it = h.listens.end() - 1;
            } else if (spec.backlog != 511 && it->spec.backlog != 511 &&
                       spec.backlog != it->spec.backlog) {
                throw conf::ConfigError(spec.file, spec.line,
                                        "duplicate listen options for " + spec.text);
            }
            if (spec.backlog != 511) it->spec.backlog = spec.backlog;
            if (spec.ssl) it->spec.ssl = true;  // as nginx: ssl on any listen of an address
            it->servers.push_back(server.get());
            if (spec.default_server) {
                if (it->default_server != nullptr && it->spec.default_server) {
                    throw conf::ConfigError(spec.file, spec.line,
                                            "a duplicate default server for " + spec.text);
                }
                it->spec.default_server = true;
                it->default_server = server.get();
            } else if (it->default_server == nullptr) {
                it->default_server = server.get();
            }
        }
    }
}

constexpr uint32_t kHttpServerLocation = kHttpContext | kServerContext | kLocationContext;
constexpr uint32_t kHttpServer = kHttpContext | kServerContext;

constexpr Directive kDirectives[] = {
    {"http", kMainContext, 0, 0, true, ConfScope::None, http_block},
    {"server", kHttpContext, 0, 0, true, ConfScope::None, server_block},
    {"location", kServerContext, 1, 2, true, ConfScope::None, location_block},
    {"listen", kServerContext, 1, 8, false, ConfScope::Server, listen},
    {"server_name", kServerContext, 1, kUnlimitedArgs, false, ConfScope::Server, server_name},
    {"client_header_timeout", kHttpServer, 1, 1, false, ConfScope::Server, client_header_timeout},
    {"large_client_header_buffers", kHttpServer, 2, 2, false, ConfScope::Server,
     large_client_header_buffers},
    {"client_max_body_size", kHttpServerLocation, 1, 1, false, ConfScope::Location,
     client_max_body_size},
    {"client_body_timeout", kHttpServerLocation, 1, 1, false, ConfScope::Location,
     client_body_timeout},
    {"send_timeout", kHttpServerLocation, 1, 1, false, ConfScope::Location, send_timeout},
    {"keepalive_timeout", kHttpServerLocation, 1, 1, false, ConfScope::Location, keepalive_timeout},
    {"satisfy", kHttpServerLocation, 1, 1, false, ConfScope::Location, satisfy},
    {"internal", kLocationContext, 0, 0, false, ConfScope::Location, internal},
    {"keepalive_requests", kHttpServerLocation, 1, 1, false, ConfScope::Location,
     keepalive_requests},
    {"error_page", kHttpServerLocation, 2, kUnlimitedArgs, false, ConfScope::Location, error_page},
    {"types", kHttpServerLocation, 0, 0, true, ConfScope::Location, types_block},
    {"default_type", kHttpServerLocation, 1, 1, false, ConfScope::Location, default_type},
    {"server_tokens", kHttpServerLocation, 1, 1, false, ConfScope::Location, server_tokens},
    {"sendfile", kHttpServerLocation, 1, 1, false, ConfScope::None, compat_flag},
    {"tcp_nopush", kHttpServerLocation, 1, 1, false, ConfScope::None, compat_flag},
    {"tcp_nodelay", kHttpServerLocation, 1, 1, false, ConfScope::None, compat_flag},
    {"types_hash_max_size", kHttpServerLocation, 1, 1, false, ConfScope::None, compat_size},
    {"types_hash_bucket_size", kHttpServerLocation, 1, 1, false, ConfScope::None, compat_size},
    {"server_names_hash_max_size", kHttpContext, 1, 1, false, ConfScope::None, compat_size},
    {"server_names_hash_bucket_size", kHttpContext, 1, 1, false, ConfScope::None, compat_size},
    {"client_header_buffer_size", kHttpServer, 1, 1, false, ConfScope::None, compat_size},
};

}  // namespace

std::string_view HttpCoreLocConf::type_for(std::string_view filename) const {
    size_t slash = filename.rfind('/');
    size_t dot = filename.rfind('.');
    if (types && dot != std::string_view::npos &&
        (slash == std::string_view::npos || dot > slash)) {
        std::string ext(filename.substr(dot + 1));
        std::transform(ext.begin(), ext.end(), ext.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        auto it = types->find(ext);
        if (it != types->end()) return it->second;
    }
    return default_type ? std::string_view(*default_type) : std::string_view("text/plain");
}

const ErrorPage* HttpCoreLocConf::error_page_for(int status) const {
    if (!error_pages) return nullptr;
    for (const auto& page : *error_pages) {
        if (std::find(page.codes.begin(), page.codes.end(), status) != page.codes.end()) {
            return &page;
        }
    }
    return nullptr;
}

uint64_t client_header_timeout_ms(const HttpCoreServerConf& c) {
    return c.client_header_timeout_ms.value_or(60000);
}
HeadLimits header_limits(const HttpCoreServerConf& c) {
    return c.header_limits.value_or(HeadLimits{8192, 32768, 100});
}

}  // namespace tollgate::http

namespace tollgate {
using namespace tollgate::http;

const Module http_core_module = {
    .name = "http_core",
    .directives = kDirectives,
    .create_server = [] { return std::unique_ptr<ModuleConf>(new HttpCoreServerConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new HttpCoreLocConf()); },
    .merge_server = merge_server,
    .merge_location = merge_location,
    .register_variables = register_http_variables,
    .check = check,
};

}  // namespace tollgate
