#include "modules/proxy/proxy_config.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <strings.h>
#include <algorithm>
#include <cstring>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/http_config.hpp"
#include "core/log.hpp"
#include "modules/proxy/balancer.hpp"

namespace tollgate::proxy {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// Resolves host:port at load (the master may block here) into every address it names.
bool resolve(const std::string& host, uint16_t port, std::vector<UpstreamServer>& out,
             std::string& error) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    addrinfo* res = nullptr;
    std::string h = host;
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    int rc = getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
        error = "host not found in upstream \"" + host + "\"";
        return false;
    }
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        UpstreamServer s;
        std::memcpy(&s.addr, ai->ai_addr, ai->ai_addrlen);
        s.addr_len = ai->ai_addrlen;
        char buf[INET6_ADDRSTRLEN];
        if (ai->ai_family == AF_INET6) {
            inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf,
                      sizeof(buf));
            s.addr_text = "[" + std::string(buf) + "]:" + std::to_string(port);
        } else {
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf,
                      sizeof(buf));
            s.addr_text = std::string(buf) + ":" + std::to_string(port);
        }
        bool dup = std::any_of(out.begin(), out.end(),
                               [&](const UpstreamServer& o) { return o.addr_text == s.addr_text; });
        if (!dup) out.push_back(s);
    }
    freeaddrinfo(res);
    return !out.empty();
}

// Splits "host[:port]" (IPv6 in brackets). Returns false on a bad port.
bool split_host_port(std::string_view text, std::string& host, uint16_t& port, bool& port_given) {
    port_given = false;
    size_t colon = std::string_view::npos;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return false;
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return false;
            colon = close + 1;
        }
    } else {
        colon = text.rfind(':');
    }
    host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
        auto p = conf::parse_int(text.substr(colon + 1));
        if (!p || *p < 1 || *p > 65535) return false;
        port = static_cast<uint16_t>(*p);
        port_given = true;
    }
    return !host.empty();
}

ProxyMainConf& mutable_main(GenerationBuilder& b) {
    return static_cast<ProxyMainConf&>(*b.generation().main_confs[proxy_index()]);
}

// ---- upstream { } ----------------------------------------------------------------------------

// Maps (or, on a reload, reuses) the shared zone holding the state of `up`'s servers
// (peer_state.hpp). The layout tag names the servers in order, so a reload that keeps them keeps
// their counts, breakers and health; one that changes them starts afresh.
void attach_zone(GenerationBuilder& b, Upstream& up, const conf::Node& where) {
    std::string name = (up.implicit ? "proxy_pass " : "upstream ") + up.name;
    std::string layout = "upstream/1/" + std::to_string(sizeof(PeerShm));
    for (const UpstreamServer& s : up.servers) layout += "/" + s.addr_text;
    size_t bytes = 64 + UpstreamShm::bytes_for(up.servers.size());  // 64: the core's header
    size_t size = std::max<size_t>(8192, (bytes + 4095) / 4096 * 4096);
    up.zone = b.shared_zone(where, name, size, "upstream", zone_key(layout).lo);
    auto n = static_cast<uint32_t>(up.servers.size());
    UpstreamShm* shm = up.zone->reused() ? UpstreamShm::attach(up.zone->data(), n)
                                         : UpstreamShm::format(up.zone->data(), n);
    if (shm == nullptr) where.fail("the state zone of upstream \"" + up.name + "\" is unusable");
}

void upstream_block(DirectiveContext& ctx) {
    auto& main = ctx.conf<ProxyMainConf>();
    for (const auto& u : main.upstreams) {
        if (!u->implicit && u->name == ctx.arg(0)) {
            ctx.fail("duplicate upstream \"" + ctx.arg(0) + "\"");
        }
    }
    auto up = std::make_unique<Upstream>();
    up->name = ctx.arg(0);
    up->index = main.upstreams.size();
    up->file = *ctx.node.file;
    up->line = ctx.node.line;
    main.upstreams.push_back(std::move(up));
    ConfSlots slots{&ctx.builder.generation().main_confs, nullptr, nullptr};
    ctx.builder.parse_block(ctx.node, kUpstreamContext, slots);
    Upstream& u = *main.upstreams.back();
    if (u.servers.empty()) {
        ctx.fail("no servers are inside upstream \"" + ctx.arg(0) + "\"");
    }
    if (u.method == BalanceMethod::Hash && u.hash_consistent) {
        u.ring = std::make_shared<const KetamaRing>(u.servers);
    }
    attach_zone(ctx.builder, u, ctx.node);
}

// True when the upstream's method allows `backup` servers (nginx: round robin and least_conn).
bool allows_backup(BalanceMethod m) {
    return m == BalanceMethod::RoundRobin || m == BalanceMethod::LeastConn;
}

// Sets the balancing method of the current upstream, as nginx: a second method is a warning
// and wins; a method that has no backup servers refuses the backup servers already listed.
void set_method(DirectiveContext& ctx, BalanceMethod m) {
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    if (up.method_set) {
        LOG_WARN("%s:%d: load balancing method redefined", ctx.node.file->c_str(), ctx.node.line);
    }
    up.method_set = true;
    up.method = m;
    up.hash_consistent = false;
    up.random_two = false;
    if (!allows_backup(m)) {
        for (const UpstreamServer& s : up.servers) {
            if (s.backup) ctx.fail("balancing method does not support parameter \"backup\"");
        }
    }
}

void upstream_least_conn(DirectiveContext& ctx) {
    set_method(ctx, BalanceMethod::LeastConn);
}

void upstream_ip_hash(DirectiveContext& ctx) {
    set_method(ctx, BalanceMethod::IpHash);
}

// hash KEY [consistent]
void upstream_hash(DirectiveContext& ctx) {
    set_method(ctx, BalanceMethod::Hash);
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    up.hash_key = ComplexValue::compile(ctx.arg(0), ctx.builder.variables(), ctx.node);
    if (ctx.nargs() == 2) {
        if (ctx.arg(1) != "consistent") ctx.invalid_value(1);
        up.hash_consistent = true;
    }
}

// random [two [least_conn]]
void upstream_random(DirectiveContext& ctx) {
    set_method(ctx, BalanceMethod::Random);
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    if (ctx.nargs() >= 1) {
        if (ctx.arg(0) != "two") ctx.invalid_value(0);
        up.random_two = true;
    }
    if (ctx.nargs() == 2 && ctx.arg(1) != "least_conn") ctx.invalid_value(1);
}

// A KEY=VALUE argument's value, or nothing when `a` is not KEY=...
std::optional<std::string_view> param(std::string_view a, std::string_view key) {
    if (a.size() > key.size() && a.substr(0, key.size()) == key && a[key.size()] == '=') {
        return a.substr(key.size() + 1);
    }
    return std::nullopt;
}

int count_param(DirectiveContext& ctx, size_t i, std::string_view v) {
    auto n = conf::parse_int(v);
    if (!n || *n < 1 || *n > 1000) ctx.invalid_value(i, "must be between 1 and 1000");
    return static_cast<int>(*n);
}

uint64_t time_param(DirectiveContext& ctx, size_t i, std::string_view v) {
    auto t = conf::parse_time_ms(v);
    if (!t || *t == 0) ctx.invalid_value(i);
    return *t;
}

// circuit_breaker [failures=N] [cooldown=TIME] [probes=N] [successes=N]
void upstream_circuit_breaker(DirectiveContext& ctx) {
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    if (up.breaker.enabled) ctx.duplicate();
    BreakerConf c;
    c.enabled = true;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (auto v = param(a, "failures")) {
            c.failures = count_param(ctx, i, *v);
        } else if (auto v = param(a, "cooldown")) {
            c.cooldown_ms = time_param(ctx, i, *v);
        } else if (auto v = param(a, "probes")) {
            c.probes = count_param(ctx, i, *v);
        } else if (auto v = param(a, "successes")) {
            c.successes = count_param(ctx, i, *v);
        } else {
            ctx.fail("invalid parameter \"" + std::string(a) + "\"");
        }
    }
    up.breaker = c;
}

// health_check [uri=URI] [interval=TIME] [timeout=TIME] [fails=N] [passes=N] [status=LO[-HI]]
void upstream_health_check(DirectiveContext& ctx) {
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    if (up.health.enabled) ctx.duplicate();
    HealthCheckConf c;
    c.enabled = true;
    bool timeout_given = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (auto v = param(a, "uri")) {
            if (v->empty() || v->front() != '/' ||
                v->find_first_of(std::string_view(" \t\r\n\0", 5)) != std::string_view::npos) {
                ctx.invalid_value(i, "the URI must start with \"/\" and hold no spaces");
            }
            c.uri = std::string(*v);
        } else if (auto v = param(a, "interval")) {
            c.interval_ms = time_param(ctx, i, *v);
        } else if (auto v = param(a, "timeout")) {
            c.timeout_ms = time_param(ctx, i, *v);
            timeout_given = true;
        } else if (auto v = param(a, "fails")) {
            c.fails = count_param(ctx, i, *v);
        } else if (auto v = param(a, "passes")) {
            c.passes = count_param(ctx, i, *v);
        } else if (auto v = param(a, "status")) {
            size_t dash = v->find('-');
            auto lo = conf::parse_int(v->substr(0, dash));
            auto hi = dash == std::string_view::npos ? lo : conf::parse_int(v->substr(dash + 1));
            if (!lo || !hi || *lo < 100 || *hi > 599 || *lo > *hi) ctx.invalid_value(i);
            c.status_min = static_cast<int>(*lo);
            c.status_max = static_cast<int>(*hi);
        } else {
            ctx.fail("invalid parameter \"" + std::string(a) + "\"");
        }
    }
    if (!timeout_given) c.timeout_ms = std::min(c.timeout_ms, c.interval_ms);
    up.health = c;
}

void upstream_server(DirectiveContext& ctx) {
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    std::string host;
    uint16_t port = 80;
    bool port_given = false;
    if (!split_host_port(ctx.arg(0), host, port, port_given)) ctx.invalid_value(0);
    UpstreamServer params;
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        auto value = [&](std::string_view key) -> std::optional<std::string_view> {
            if (a.substr(0, key.size()) == key) return a.substr(key.size());
            return std::nullopt;
        };
        if (auto v = value("weight=")) {
            auto n = conf::parse_int(*v);
            if (!n || *n < 1 || *n > 1000) ctx.invalid_value(i);
            params.weight = static_cast<int>(*n);
        } else if (auto v = value("max_fails=")) {
            auto n = conf::parse_int(*v);
            if (!n || *n > 1000) ctx.invalid_value(i);
            params.max_fails = static_cast<int>(*n);
        } else if (auto v = value("fail_timeout=")) {
            auto t = conf::parse_time_ms(*v);
            if (!t) ctx.invalid_value(i);
            params.fail_timeout_ms = *t;
        } else if (auto v = value("max_conns=")) {
            auto n = conf::parse_int(*v);
            if (!n || *n > 1000000) ctx.invalid_value(i);
            params.max_conns = static_cast<int>(*n);
        } else if (a == "backup") {
            if (!allows_backup(up.method)) {
                ctx.fail("balancing method does not support parameter \"backup\"");
            }
            params.backup = true;
        } else if (a == "down") {
            params.down = true;
        } else {
            ctx.fail("invalid parameter \"" + std::string(a) + "\"");
        }
    }
    std::vector<UpstreamServer> resolved;
    std::string error;
    if (!resolve(host, port, resolved, error)) ctx.fail(error);
    for (UpstreamServer& s : resolved) {
        s.weight = params.weight;
        s.max_fails = params.max_fails;
        s.fail_timeout_ms = params.fail_timeout_ms;
        s.max_conns = params.max_conns;
        s.backup = params.backup;
        s.down = params.down;
        up.servers.push_back(s);
    }
}

void upstream_keepalive(DirectiveContext& ctx) {
    ctx.conf<ProxyMainConf>().upstreams.back()->keepalive =
        static_cast<size_t>(ctx.int_arg(0, 1, 65536));
}
void upstream_keepalive_timeout(DirectiveContext& ctx) {
    ctx.conf<ProxyMainConf>().upstreams.back()->keepalive_timeout_ms = ctx.time_ms_arg(0);
}
void upstream_keepalive_requests(DirectiveContext& ctx) {
    ctx.conf<ProxyMainConf>().upstreams.back()->keepalive_requests =
        static_cast<uint64_t>(ctx.int_arg(0, 1));
}

// ---- location directives -----------------------------------------------------------------

ProxyLocConf& loc(DirectiveContext& ctx) {
    return ctx.conf<ProxyLocConf>();
}

template <class T>
void set_once(DirectiveContext& ctx, std::optional<T>& field, T value) {
    if (field) ctx.duplicate();
    field = std::move(value);
}

void proxy_pass(DirectiveContext& ctx) {
    ProxyLocConf& c = loc(ctx);
    if (c.pass) ctx.duplicate();
    std::string_view url = ctx.arg(0);
    if (url.find('$') != std::string_view::npos) {
        // Evaluated per request (proxy.cpp); a URI part then replaces the whole request URI.
        if (url.substr(0, 7) != "http://" && url.substr(0, 8) != "https://" &&
            url.substr(0, 1) != "$") {
            ctx.fail("invalid URL prefix in \"" + ctx.arg(0) + "\"");
        }
        // https:// (or a scheme from a variable, which may be https): the location gets a
        // client TLS context at load, as a static https:// one.
        c.pass_ssl = url.substr(0, 7) != "http://";
        c.pass_value = ComplexValue::compile(url, ctx.builder.variables(), ctx.node);
        c.pass_dynamic = true;
        c.pass = true;
        c.pass_file = *ctx.node.file;
        c.pass_line = ctx.node.line;
        return;
    }
    if (url.substr(0, 8) == "https://") {
        c.pass_ssl = true;
        c.pass_port = 443;
        url.remove_prefix(8);
    } else if (url.substr(0, 7) == "http://") {
        url.remove_prefix(7);
    } else {
        ctx.fail("invalid URL prefix in \"" + ctx.arg(0) + "\"");
    }
    size_t slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    if (slash != std::string_view::npos) {
        c.has_uri = true;
        c.uri = std::string(url.substr(slash));
    }
    if (!split_host_port(authority, c.pass_host, c.pass_port, c.pass_port_given)) {
        ctx.fail("invalid port in upstream \"" + std::string(authority) + "\"");
    }
    c.proxy_host = std::string(authority);
    c.pass = true;
    c.pass_file = *ctx.node.file;
    c.pass_line = ctx.node.line;
    // nginx: a URI part needs a location whose matched part is known (not a regex or @name).
    const http::Server& server = *ctx.builder.http()->servers.back();
    if (server.locations.empty()) ctx.fail("\"proxy_pass\" directive is not allowed here");
    const http::Location& l = *server.locations.back();
    if (c.has_uri &&
        (l.kind == http::Location::Kind::Regex || l.kind == http::Location::Kind::Named)) {
        ctx.fail(
            "\"proxy_pass\" cannot have URI part in location given by regular expression, "
            "or inside named location");
    }
    c.location_prefix = l.pattern;
}

void proxy_set_header(DirectiveContext& ctx) {
    auto& c = loc(ctx);
    if (!c.set_headers) c.set_headers.emplace();
    c.set_headers->push_back(
        {ctx.arg(0), ComplexValue::compile(ctx.arg(1), ctx.builder.variables(), ctx.node)});
}

void proxy_hide_header(DirectiveContext& ctx) {
    auto& c = loc(ctx);
    if (!c.hide_headers) c.hide_headers.emplace();
    c.hide_headers->push_back(lower(ctx.arg(0)));
}

void proxy_pass_header(DirectiveContext& ctx) {
    auto& c = loc(ctx);
    if (!c.pass_headers) c.pass_headers.emplace();
    c.pass_headers->push_back(lower(ctx.arg(0)));
}

void proxy_http_version(DirectiveContext& ctx) {
    if (ctx.arg(0) != "1.0" && ctx.arg(0) != "1.1") ctx.invalid_value(0);
    set_once(ctx, loc(ctx).http_version_minor, ctx.arg(0) == "1.1" ? 1 : 0);
}
void proxy_connect_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).connect_timeout_ms, ctx.time_ms_arg(0));
}
void proxy_send_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).send_timeout_ms, ctx.time_ms_arg(0));
}
void proxy_read_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).read_timeout_ms, ctx.time_ms_arg(0));
}
void proxy_buffering(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).buffering, ctx.flag_arg(0));
}
void proxy_buffer_size(DirectiveContext& ctx) {
    uint64_t size = ctx.size_arg(0);
    if (size < 512 || size > (16u << 20)) ctx.invalid_value(0, "must be between 512 and 16m");
    set_once(ctx, loc(ctx).buffer_size, size);
}
void proxy_buffers(DirectiveContext& ctx) {
    int64_t n = ctx.int_arg(0, 1, 1024);
    uint64_t size = ctx.size_arg(1);
    if (size < 512 || size > (16u << 20)) ctx.invalid_value(1, "must be between 512 and 16m");
    set_once(ctx, loc(ctx).buffers_total, static_cast<uint64_t>(n) * size);
}

// tollgate always streams request bodies to the upstream as they arrive: memory stays flat for
// any upload, and an agent's request reaches the model while the client is still sending. nginx
// spools the body to disk first by default ("on"); that is not offered, so a config asking for it
// says so instead of silently streaming.
void proxy_request_buffering(DirectiveContext& ctx) {
    if (ctx.flag_arg(0)) {
        ctx.fail(
            "\"proxy_request_buffering on\" is not supported: tollgate streams request "
            "bodies (use \"off\")");
    }
}

void resolver(DirectiveContext& ctx) {
    auto& c = loc(ctx);
    if (c.resolver) ctx.duplicate();
    auto r = std::make_shared<ResolverConf>();
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.substr(0, 6) == "valid=") {
            auto t = conf::parse_time_ms(a.substr(6));
            if (!t) ctx.invalid_value(i);
            r->valid_ms = *t;
        } else if (a == "ipv6=on" || a == "ipv6=off") {
            r->ipv6 = a == "ipv6=on";
        } else {
            std::string host;
            uint16_t port = 53;
            bool given = false;
            if (!split_host_port(a, host, port, given)) ctx.invalid_value(i);
            std::string h = host;
            if (h.size() > 2 && h.front() == '[') h = h.substr(1, h.size() - 2);
            in6_addr a6;
            in_addr a4;
            if (inet_pton(AF_INET, h.c_str(), &a4) != 1 &&
                inet_pton(AF_INET6, h.c_str(), &a6) != 1) {
                ctx.fail("invalid resolver address \"" + std::string(a) +
                         "\": an IP address is needed");
            }
            r->servers.push_back(h.find(':') != std::string::npos
                                     ? "[" + h + "]:" + std::to_string(port)
                                     : h + ":" + std::to_string(port));
        }
    }
    if (r->servers.empty()) ctx.fail("no name servers in \"resolver\" directive");
    c.resolver = std::move(r);
}

void resolver_timeout(DirectiveContext& ctx) {
    set_once(ctx, loc(ctx).resolver_timeout_ms, ctx.time_ms_arg(0));
}

template <class T>
void inherit(std::optional<T>& child, const std::optional<T>& parent) {
    if (!child && parent) child = parent;
}

}  // namespace

void merge_location(const ModuleConf& p, ModuleConf& c) {
    const auto& parent = static_cast<const ProxyLocConf&>(p);
    auto& child = static_cast<ProxyLocConf&>(c);
    inherit(child.set_headers, parent.set_headers);
    inherit(child.hide_headers, parent.hide_headers);
    inherit(child.pass_headers, parent.pass_headers);
    inherit(child.http_version_minor, parent.http_version_minor);
    inherit(child.connect_timeout_ms, parent.connect_timeout_ms);
    inherit(child.send_timeout_ms, parent.send_timeout_ms);
    inherit(child.read_timeout_ms, parent.read_timeout_ms);
    inherit(child.buffering, parent.buffering);
    inherit(child.buffer_size, parent.buffer_size);
    inherit(child.buffers_total, parent.buffers_total);
    inherit(child.resolver_timeout_ms, parent.resolver_timeout_ms);
    if (!child.resolver) child.resolver = parent.resolver;
    merge_ssl(parent.ssl, child.ssl);
    merge_retry(parent.retry, child.retry);
}

// Binds each proxy_pass to its upstream block, or makes an implicit upstream for a host:port.
void check(GenerationBuilder& b) {
    ProxyMainConf& main = mutable_main(b);
    auto bind = [&](http::Location& l) {
        auto& c = static_cast<ProxyLocConf&>(*l.confs[proxy_index()]);
        if (c.pass && c.pass_ssl) build_ssl(c);
        if (!c.pass || c.pass_dynamic) return;
        if (!c.pass_port_given) {
            for (const auto& u : main.upstreams) {
                if (!u->implicit && strcasecmp(u->name.c_str(), c.pass_host.c_str()) == 0) {
                    c.upstream = u.get();  // nginx compares upstream names in any case
                }
            }
            if (c.upstream != nullptr) return;
        }
        std::string key = c.pass_host + ":" + std::to_string(c.pass_port);
        for (const auto& u : main.upstreams) {
            if (u->implicit && u->name == key) c.upstream = u.get();
        }
        if (c.upstream != nullptr) return;
        auto up = std::make_unique<Upstream>();
        up->name = key;
        up->implicit = true;
        up->index = main.upstreams.size();
        std::string error;
        if (!resolve(c.pass_host, c.pass_port, up->servers, error)) {
            throw conf::ConfigError(c.pass_file, c.pass_line, error);
        }
        conf::Node where;
        where.file = std::make_shared<const std::string>(c.pass_file);
        where.line = c.pass_line;
        attach_zone(b, *up, where);
        c.upstream = up.get();
        main.upstreams.push_back(std::move(up));
    };
    for (auto& server : b.http()->servers) {
        bind(*server->defaults);
        for (auto& l : server->locations) bind(*l);
    }
}

constexpr uint32_t kHSL = kHttpContext | kServerContext | kLocationContext;

const Directive kProxyDirectives[] = {
    {"proxy_ssl_verify", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_verify},
    {"proxy_ssl_trusted_certificate", kHSL, 1, 1, false, ConfScope::Location,
     proxy_ssl_trusted_certificate},
    {"proxy_ssl_server_name", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_server_name},
    {"proxy_ssl_name", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_name},
    {"proxy_ssl_protocols", kHSL, 1, 6, false, ConfScope::Location, proxy_ssl_protocols},
    {"proxy_ssl_ciphers", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_ciphers},
    {"proxy_ssl_certificate", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_certificate},
    {"proxy_ssl_certificate_key", kHSL, 1, 1, false, ConfScope::Location,
     proxy_ssl_certificate_key},
    {"proxy_ssl_session_reuse", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_session_reuse},
    {"proxy_ssl_verify_depth", kHSL, 1, 1, false, ConfScope::Location, proxy_ssl_verify_depth},
    {"upstream", kHttpContext, 1, 1, true, ConfScope::Main, upstream_block},
    {"server", kUpstreamContext, 1, 8, false, ConfScope::Main, upstream_server},
    {"keepalive", kUpstreamContext, 1, 1, false, ConfScope::Main, upstream_keepalive},
    {"least_conn", kUpstreamContext, 0, 0, false, ConfScope::Main, upstream_least_conn},
    {"ip_hash", kUpstreamContext, 0, 0, false, ConfScope::Main, upstream_ip_hash},
    {"hash", kUpstreamContext, 1, 2, false, ConfScope::Main, upstream_hash},
    {"random", kUpstreamContext, 0, 2, false, ConfScope::Main, upstream_random},
    {"circuit_breaker", kUpstreamContext, 0, 4, false, ConfScope::Main, upstream_circuit_breaker},
    {"health_check", kUpstreamContext, 0, 6, false, ConfScope::Main, upstream_health_check},
    {"keepalive_timeout", kUpstreamContext, 1, 1, false, ConfScope::Main,
     upstream_keepalive_timeout},
    {"keepalive_requests", kUpstreamContext, 1, 1, false, ConfScope::Main,
     upstream_keepalive_requests},
    {"proxy_pass", kLocationContext, 1, 1, false, ConfScope::Location, proxy_pass},
    {"proxy_set_header", kHSL, 2, 2, false, ConfScope::Location, proxy_set_header},
    {"proxy_hide_header", kHSL, 1, 1, false, ConfScope::Location, proxy_hide_header},
    {"proxy_pass_header", kHSL, 1, 1, false, ConfScope::Location, proxy_pass_header},
    {"proxy_http_version", kHSL, 1, 1, false, ConfScope::Location, proxy_http_version},
    {"proxy_connect_timeout", kHSL, 1, 1, false, ConfScope::Location, proxy_connect_timeout},
    {"proxy_send_timeout", kHSL, 1, 1, false, ConfScope::Location, proxy_send_timeout},
    {"proxy_read_timeout", kHSL, 1, 1, false, ConfScope::Location, proxy_read_timeout},
    {"proxy_buffering", kHSL, 1, 1, false, ConfScope::Location, proxy_buffering},
    {"proxy_buffer_size", kHSL, 1, 1, false, ConfScope::Location, proxy_buffer_size},
    {"proxy_buffers", kHSL, 2, 2, false, ConfScope::Location, proxy_buffers},
    {"proxy_request_buffering", kHSL, 1, 1, false, ConfScope::None, proxy_request_buffering},
    {"resolver", kHSL, 1, kUnlimitedArgs, false, ConfScope::Location, resolver},
    {"resolver_timeout", kHSL, 1, 1, false, ConfScope::Location, resolver_timeout},
    {"proxy_next_upstream", kHSL, 1, 12, false, ConfScope::Location, proxy_next_upstream},
    {"proxy_next_upstream_tries", kHSL, 1, 1, false, ConfScope::Location,
     proxy_next_upstream_tries},
    {"proxy_next_upstream_timeout", kHSL, 1, 1, false, ConfScope::Location,
     proxy_next_upstream_timeout},
    {"proxy_next_upstream_backoff", kHSL, 1, 3, false, ConfScope::Location,
     proxy_next_upstream_backoff},
    {"retry_budget", kUpstreamContext, 1, 3, false, ConfScope::Main, upstream_retry_budget},
};

std::span<const Directive> directives() {
    return kProxyDirectives;
}

}  // namespace tollgate::proxy
