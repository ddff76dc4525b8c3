// The "auth_request" module: access decided by a subrequest, as nginx's auth_request.
//   auth_request URI | off;                 http, server, location    (off)    phase: Access
//   auth_request_set $VARIABLE VALUE;       http, server, location    (several; a level with
//                                           any replaces the parent's, as nginx)
//   auth_request_cache KEY [valid=TIME] [max=N] | off;   http, server, location   (off;
//                                           valid=10s max=10000)
// Variables: each auth_request_set $VARIABLE (settable, core/variables.hpp; empty until set),
// $auth_request_cache_status (HIT, MISS, BYPASS when the key is empty, "" without a cache).
//
// The handler starts an awaited subrequest (core/http/subrequest.hpp) to the location matching
// URI (usually `internal` and proxying to an auth server) with the request's method and headers
// and no body (as nginx with proxy_pass_request_body off; Content-Length and Transfer-Encoding
// are not sent), and suspends; the worker serves others meanwhile. The subrequest's status
// decides: 2xx allows (Verdict::Allow, which satisfy any counts), 401 answers 401 with the
// subrequest's WWW-Authenticate copied, 403 answers 403, anything else (a 5xx, the proxy's
// 502/504 for a refused or timed-out auth server) answers 500 (logged "auth request unexpected
// status"). The wait is bounded by the auth location's own timeouts (proxy_connect_timeout,
// proxy_read_timeout ...). The subrequest's response body is discarded, never buffered.
// auth_request_set values are evaluated in the subrequest (so $upstream_http_NAME is the auth
// server's response header NAME) for every outcome, and copied into the request: other
// directives read them (proxy_set_header X-User $auth_user). A client that leaves while the
// subrequest runs cancels it. Subrequests skip the Access phase, so the auth location is never
// itself checked.
//
// auth_request_cache: outcomes (2xx with the auth_request_set values, 401 with its challenge,
// 403; never 5xx, errors or timeouts) are kept per worker (each worker fills its own; no shared
// zone; a reload starts empty) for `valid`, at most `max` entries (least recently used evicted),
// keyed by the SHA-256 of URI and the evaluated KEY (e.g. $http_authorization): the credential
// itself is never stored. An empty KEY is not cached (BYPASS). Hits and misses are counted per
// worker and logged at worker exit.
#include <chrono>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"
#include "core/http/subrequest.hpp"
#include "core/log.hpp"
#include "core/variables.hpp"
#include "modules/auth_request/result_cache.hpp"

namespace tollgate {

extern const Module auth_request_module;

namespace {

using auth_request::CachedResult;
using auth_request::Digest;
using auth_request::ResultCache;

constexpr uint64_t kDefaultValidMs = 10'000;
constexpr size_t kDefaultMax = 10'000;

size_t auth_request_index() {
    static const size_t index = module_index(auth_request_module);
    return index;
}

struct SetVariable {
    uint32_t index = 0;
    ComplexValue value;
};

struct CacheConf {
    ComplexValue key;
    uint64_t valid_ms = kDefaultValidMs;
    size_t max = kDefaultMax;
    // Each worker's own (the config is copied into workers by fork); made on first use.
    mutable std::unique_ptr<ResultCache> cache;
};

struct AuthRequestLocConf : ModuleConf {
    std::optional<std::string> uri;                         // empty: off
    std::optional<std::vector<SetVariable>> variables;      // inherited as a whole
    std::optional<std::shared_ptr<const CacheConf>> cache;  // null: off
};

struct Counters {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t errors = 0;
};
Counters g_counters;

// Per request, in the arena.
struct AuthRequestCtx {
    const http::Location* location = nullptr;  // where the check ran (or runs)
    const AuthRequestLocConf* conf = nullptr;
    std::string_view cache_status;
    Digest digest{};
    bool cacheable = false;  // digest is set
};

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The verdict for an auth status, with its response.
Verdict decide(http::Request& r, int status, std::string_view www_authenticate) {
    if (status >= 200 && status < 300) return Verdict::Allow;
    if (status == 401) {
        Verdict v = r.respond_error(401);
        if (!www_authenticate.empty()) r.add_header("WWW-Authenticate", www_authenticate);
        return v;
    }
    if (status == 403) return r.respond_error(403);
    ++g_counters.errors;
    LOG_ERROR("auth request unexpected status: %d, client: %.*s, request: \"%.*s %.*s\"", status,
              static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
              static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
              static_cast<int>(r.uri.size()), r.uri.data());
    return r.respond_error(500);
}

void on_done(http::Request& r, http::Request& sub, void* data) {
    auto& ctx = *static_cast<AuthRequestCtx*>(data);
    const AuthRequestLocConf& conf = *ctx.conf;
    int status = sub.status;
    std::string_view www;
    if (status == 401) {
        for (const http::ResponseHeader& h : sub.out_headers) {
            if (http::token::iequals(h.name, "www-authenticate")) {
                www = r.copy(h.value);
                break;
            }
        }
    }
    bool cache =
        ctx.cacheable && ((status >= 200 && status < 300) || status == 401 || status == 403);
    CachedResult result;
    if (conf.variables) {
        for (const SetVariable& v : *conf.variables) {
            std::string_view value = r.copy(v.value.evaluate(sub));
            set_variable(r, v.index, value);
            if (cache) result.values.emplace_back(v.index, std::string(value));
        }
    }
    if (cache) {
        const CacheConf& cc = **conf.cache;
        if (!cc.cache) cc.cache = std::make_unique<ResultCache>(cc.valid_ms, cc.max);
        result.status = status;
        result.www_authenticate = std::string(www);
        cc.cache->insert(ctx.digest, std::move(result), now_ms());
    }
    r.resume(decide(r, status, www));
}

// A cached outcome for this location, or null. Entries missing one of this location's
// auth_request_set variables (filled by another location) count as misses.
const CachedResult* cached(http::Request& r, AuthRequestCtx& ctx) {
    const AuthRequestLocConf& conf = *ctx.conf;
    if (!conf.cache || !*conf.cache) return nullptr;
    const CacheConf& cc = **conf.cache;
    std::string_view key = cc.key.evaluate(r);
    if (key.empty()) {
        ctx.cache_status = "BYPASS";
        return nullptr;
    }
    ctx.cacheable = auth_request::cache_digest(*conf.uri, key, ctx.digest);
    const CachedResult* hit =
        ctx.cacheable && cc.cache ? cc.cache->find(ctx.digest, now_ms()) : nullptr;
    if (hit != nullptr && conf.variables) {
        for (const SetVariable& v : *conf.variables) {
            bool found = false;
            for (const auto& [index, value] : hit->values) found = found || index == v.index;
            if (!found) hit = nullptr;
            if (hit == nullptr) break;
        }
    }
    ctx.cache_status = hit != nullptr ? "HIT" : "MISS";
    ++(hit != nullptr ? g_counters.hits : g_counters.misses);
    return hit;
}

Verdict access_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const AuthRequestLocConf*>(data);
    auto* ctx = static_cast<AuthRequestCtx*>(r.module_ctx(auth_request_index()));
    if (ctx == nullptr) {
        void* p = r.arena->allocate(sizeof(AuthRequestCtx), alignof(AuthRequestCtx));
        ctx = new (p) AuthRequestCtx();
        r.set_module_ctx(auth_request_index(), ctx);
    }
    *ctx = AuthRequestCtx{};  // a new check (the first, or after an internal redirect)
    ctx->location = r.location;
    ctx->conf = &conf;
    if (const CachedResult* hit = cached(r, *ctx)) {
        for (const auto& [index, value] : hit->values) set_variable(r, index, r.copy(value));
        return decide(r, hit->status, r.copy(hit->www_authenticate));
    }
    if (!http::start_awaited_subrequest(r, *conf.uri, on_done, ctx)) {
        ++g_counters.errors;
        LOG_ERROR("auth request to \"%s\" could not start", conf.uri->c_str());
        return r.respond_error(500);
    }
    return Verdict::Suspend;
}

bool v_cache_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    const auto* ctx = static_cast<const AuthRequestCtx*>(r.module_ctx(auth_request_index()));
    if (ctx == nullptr || ctx->cache_status.empty()) return false;
    out = ctx->cache_status;
    return true;
}

// ---- directives -------------------------------------------------------------------------------

void auth_request(DirectiveContext& ctx) {
    auto& c = ctx.conf<AuthRequestLocConf>();
    if (c.uri) ctx.duplicate();
    if (ctx.arg(0) == "off") {
        c.uri.emplace();
        return;
    }
    if (ctx.arg(0).empty() || ctx.arg(0)[0] != '/') {
        ctx.invalid_value(0, "an auth_request URI starts with \"/\"");
    }
    c.uri = ctx.arg(0);
}

void auth_request_set(DirectiveContext& ctx) {
    auto& c = ctx.conf<AuthRequestLocConf>();
    const std::string& name = ctx.arg(0);
    if (name.size() < 2 || name[0] != '$') ctx.invalid_value(0, "expected $variable");
    for (char ch : name.substr(1)) {
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_')) {
            ctx.invalid_value(0, "expected $variable");
        }
    }
    VariableRegistry& registry = ctx.builder.variables();
    std::optional<uint32_t> index = registry.add_settable(name.substr(1));
    if (!index) ctx.fail("the duplicate \"" + name.substr(1) + "\" variable");
    SetVariable v;
    v.index = *index;
    v.value = ComplexValue::compile(ctx.arg(1), registry, ctx.node);
    if (!c.variables) c.variables.emplace();
    c.variables->push_back(std::move(v));
}

void auth_request_cache(DirectiveContext& ctx) {
    auto& c = ctx.conf<AuthRequestLocConf>();
    if (c.cache) ctx.duplicate();
    if (ctx.arg(0) == "off") {
        if (ctx.nargs() != 1)
            ctx.fail("invalid number of arguments in \"auth_request_cache\" directive");
        c.cache.emplace();
        return;
    }
    auto cc = std::make_shared<CacheConf>();
    cc->key = ComplexValue::compile(ctx.arg(0), ctx.builder.variables(), ctx.node);
    if (cc->key.is_literal()) ctx.invalid_value(0, "the key must contain variables");
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        const std::string& a = ctx.arg(i);
        if (a.rfind("valid=", 0) == 0) {
            auto ms = conf::parse_time_ms(std::string_view(a).substr(6));
            if (!ms || *ms == 0) ctx.invalid_value(i, "valid= takes a time over 0");
            cc->valid_ms = *ms;
        } else if (a.rfind("max=", 0) == 0) {
            auto n = conf::parse_int(std::string_view(a).substr(4));
            if (!n || *n < 1 || *n > 10'000'000) ctx.invalid_value(i, "max= takes 1 to 10000000");
            cc->max = static_cast<size_t>(*n);
        } else {
            ctx.invalid_value(i, "expected valid=TIME or max=N");
        }
    }
    c.cache = std::move(cc);
}

void merge(const ModuleConf& p, ModuleConf& ch) {
    const auto& parent = static_cast<const AuthRequestLocConf&>(p);
    auto& child = static_cast<AuthRequestLocConf&>(ch);
    if (!child.uri) child.uri = parent.uri;
    if (!child.variables) child.variables = parent.variables;
    if (!child.cache) child.cache = parent.cache;
}

void attach(LocationBuilder& lb) {
    const auto& c = lb.conf<AuthRequestLocConf>(auth_request_index());
    if (c.uri && !c.uri->empty()) lb.add(Phase::Access, access_handler, &c);
}

void register_variables(VariableRegistry& reg) {
    reg.add("auth_request_cache_status", v_cache_status, 0, false);
}

void exit_worker(const ConfigGeneration&) {
    if (g_counters.hits + g_counters.misses + g_counters.errors == 0) return;
    LOG_INFO("auth_request: cache hits %llu, misses %llu; errors %llu",
             static_cast<unsigned long long>(g_counters.hits),
             static_cast<unsigned long long>(g_counters.misses),
             static_cast<unsigned long long>(g_counters.errors));
}

constexpr uint32_t kHSL = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"auth_request", kHSL, 1, 1, false, ConfScope::Location, auth_request},
    {"auth_request_set", kHSL, 2, 2, false, ConfScope::Location, auth_request_set},
    {"auth_request_cache", kHSL, 1, 3, false, ConfScope::Location, auth_request_cache},
};

}  // namespace

extern const Module auth_request_module = {
    .name = "auth_request",
    .directives = kDirectives,
    .create_location = [] { return std::unique_ptr<ModuleConf>(new AuthRequestLocConf()); },
    .merge_location = merge,
    .register_variables = register_variables,
    .attach_location = attach,
    .exit_worker = exit_worker,
};

}  // namespace tollgate
