// The "auth_jwt" module: JSON Web Token validation (names as nginx Plus's
// ngx_http_auth_jwt_module).
//   auth_jwt REALM [token=VALUE] | off;            http, server, location    phase: Access
//   auth_jwt_key_file FILE [KID];                  http, server, location    (read at load)
//   auth_jwt_secret FILE [KID];                    http, server, location    (read at load)
//   auth_jwt_algorithms ALG ...;                   http, server, location
//   auth_jwt_leeway TIME;                          http, server, location    (default 0s)
//   auth_jwt_issuer STRING;                        http, server, location
//   auth_jwt_audience STRING ...;                  http, server, location
//   auth_jwt_require CLAIM [VALUE ...];            http, server, location    (403 when unmet)
//   auth_jwt_cache off | max=N [valid=TIME];       http                      (default max=1024
//                                                                             valid=300s)
//   auth_jwt_claim_header NAME CLAIM | off;        http, server, location
//   auth_jwt_jwks_uri URL [refresh=TIME] [min_refresh=TIME] [timeout=TIME]
//                     [ssl_verify=on|off] [ssl_trusted_certificate=FILE];
//                                                  http, server, location    (fetched by workers)
// Variables (computed when first used, so a limit_req key in PreAccess can name them):
//   $jwt_claim_NAME (NAME may be a dotted path: ${jwt_claim_org.team}; arrays joined with ",",
//   objects as JSON), $jwt_header_NAME, $jwt_status ("ok", "missing" or the failure reason).
//
// The token comes from "Authorization: Bearer" unless token=VALUE names another source
// ($cookie_NAME, $http_NAME, $arg_NAME). auth_jwt_key_file reads a JWKS (a file whose first
// non-blank byte is '{') or a PEM public or private key; auth_jwt_secret reads an HMAC secret
// (the file's bytes without a trailing newline). Keys accumulate within a level; a level with no
// key directives inherits its parent's. Keys are matched by the algorithm's key type first (an HS
// token is never checked against an RSA/EC/OKP key), then by "kid" when the token has one (a key
// loaded without a kid serves any kid).
//
// Failures: no token -> 401 `WWW-Authenticate: Bearer realm="REALM"`; a bad token -> 401 with
// error="invalid_token" and error_description; a valid token failing auth_jwt_require -> 403
// with error="insufficient_scope". Logged with their reason and the first 12 hex digits of the
// token's SHA-256, never the token. Verified tokens are cached per worker (LRU, keyed by SHA-256,
// never past exp); claims and times are re-checked on every request.
//
// auth_jwt_claim_header forwards claim CLAIM (a dotted path; rendered as $jwt_claim_CLAIM) of a
// valid token to the upstream as request header NAME. A level with any of them replaces its
// parent's list. In every location of an http block that names a header anywhere, client copies
// of all those names are removed in the rewrite phase, before any access check, whether or not the
// location checks tokens, so an upstream never sees a forged identity.
//
// auth_jwt_jwks_uri: each worker fetches the JWKS at start (core/http/fetch.hpp) and again every
// `refresh` (5m); a failed fetch keeps the keys it had and logs why, and is retried after
// `min_refresh`. A token that none of the keys match (unknown kid) starts an early fetch, at
// most once per `min_refresh` (10s), and waits for it (Suspend, bounded by `timeout`, 10s),
// then is checked again: still unknown -> 401. Until a first fetch succeeded, a token that
// needs those keys gets 503 with Retry-After. Keys from the URI are tried after the key files.
// The host is resolved when the config is read (as proxy_pass); https verifies the peer
// against ssl_trusted_certificate (or the system's CAs) unless ssl_verify=off.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <vector>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/fetch.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/auth_jwt/jwt.hpp"

namespace tollgate {
namespace {

using http::token::iequals;

// One auth_jwt_jwks_uri directive; the locations that inherit it share it (and its keys).
struct JwksSource : http::FetchTarget {
    uint64_t refresh_ms = 300000;
    uint64_t min_refresh_ms = 10000;
    uint64_t timeout_ms = 10000;
    size_t index = 0;  // in AuthJwtMainConf::sources and the worker's state
};

struct AuthJwtMainConf : ModuleConf {
    // Every auth_jwt_claim_header name in the http block; client copies are always removed.
    std::vector<std::string> identity_headers;
    bool cache_set = false;
    size_t cache_max = 1024;
    int64_t cache_valid = 300;  // seconds
    std::vector<std::shared_ptr<JwksSource>> sources;
};

struct ClaimHeader {
    std::string name;
    std::string claim;  // a dotted path
};

struct AuthJwtLocConf : ModuleConf {
    std::optional<std::string> realm;  // set and empty: off
    bool has_token = false;
    ComplexValue token;
    std::string realm_file;
    int realm_line = 0;
    std::shared_ptr<jwt::KeySet> keys;
    std::shared_ptr<const JwksSource> jwks;
    std::optional<jwt::AlgSet> algs;
    std::optional<int64_t> leeway;
    std::optional<std::string> issuer;
    std::optional<std::vector<std::string>> audience;
    std::optional<std::vector<jwt::Requirement>> require;
    jwt::ClaimRules rules;                                  // built at merge from the three above
    std::optional<std::vector<ClaimHeader>> claim_headers;  // empty: off
};

size_t auth_jwt_index();

// ---- per-worker state -------------------------------------------------------------------------

struct Counters {
    uint64_t ok = 0, missing = 0, invalid = 0, forbidden = 0, unavailable = 0, cache_hits = 0;
};
Counters g_counters;
std::unique_ptr<jwt::VerifyCache> g_cache;
EventLoop* g_loop = nullptr;

class JwksWait;

// A worker's view of one JWKS URI: the keys of the last good fetch and the fetch under way.
struct WorkerJwks {
    const JwksSource* src = nullptr;
    std::shared_ptr<const jwt::KeySet> keys;  // null until a fetch succeeded
    std::string body;                         // the document those keys came from
    std::unique_ptr<http::Fetch> inflight;
    std::unique_ptr<Timer> timer;  // the next refresh
    bool started = false;
    uint64_t last_start_ms = 0;
    std::vector<JwksWait*> waiters;  // requests suspended until the fetch under way ends
};
std::vector<WorkerJwks> g_jwks;

uint64_t mono_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void start_fetch(WorkerJwks& w, const char* why);

// ---- the per-request verification ------------------------------------------------------------

// A request suspended until its JWKS fetch ends (the worker aborts it if the client goes).
class JwksWait final : public http::RequestTask {
  public:
    http::Request* r = nullptr;
    size_t source = 0;
    void abort() override;
};

struct AuthJwtRequestCtx {
    bool resolved = false;
    bool waited = false;        // this request already waited for a JWKS fetch (once at most)
    bool jwks_unknown = false;  // no key matched and the location has a jwks_uri
    size_t jwks_source = 0;
    JwksWait wait;
    const void* location = nullptr;  // resolved for this location (an internal redirect re-checks)
    bool applies = false;            // auth_jwt is on in the request's location
    bool missing = false;
    bool handled = false;
    jwt::Error error = jwt::Error::None;
    std::shared_ptr<const jwt::Token> token;
    char hash_prefix[13] = {};
};

std::string_view bearer_token(http::Request& r) {
    const http::Header* h = r.head.find("authorization");
    if (h == nullptr) return {};
    std::string_view a = h->value;
    if (a.size() > 7 && iequals(a.substr(0, 7), "bearer "))
        return http::token::trim_ows(a.substr(7));
    return {};
}

AuthJwtRequestCtx& resolve(http::Request& r) {
    size_t idx = auth_jwt_index();
    auto* ctx = static_cast<AuthJwtRequestCtx*>(r.module_ctx(idx));
    if (ctx != nullptr && ctx->resolved && ctx->location == r.location) return *ctx;
    if (ctx == nullptr) {
        void* mem = r.arena->allocate(sizeof(AuthJwtRequestCtx), alignof(AuthJwtRequestCtx));
        ctx = new (mem) AuthJwtRequestCtx();
        r.add_cleanup([](void* p) { static_cast<AuthJwtRequestCtx*>(p)->~AuthJwtRequestCtx(); },
                      ctx);
        r.set_module_ctx(idx, ctx);
    }
    bool waited = ctx->waited;
    *ctx = AuthJwtRequestCtx();
    ctx->waited = waited;
    ctx->resolved = true;
    ctx->location = r.location;
    if (r.location == nullptr) return *ctx;
    const auto& conf = r.loc_conf<AuthJwtLocConf>(idx);
    if (!conf.realm || conf.realm->empty() || (!conf.keys && !conf.jwks)) return *ctx;
    ctx->applies = true;

    std::string_view token = conf.has_token ? conf.token.evaluate(r) : bearer_token(r);
    if (token.empty()) {
        ctx->missing = true;
        return *ctx;
    }
    jwt::Digest d{};
    bool hashed = jwt::sha256(token, d);
    if (hashed) {
        static constexpr char kHex[] = "0123456789abcdef";
        for (size_t i = 0; i < 6; ++i) {
            ctx->hash_prefix[2 * i] = kHex[d[i] >> 4];
            ctx->hash_prefix[2 * i + 1] = kHex[d[i] & 15];
        }
    }
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    jwt::AlgSet algs = conf.algs.value_or(jwt::kAllAlgs);
    const jwt::KeySet* keys = conf.keys.get();
    // Keys fetched from auth_jwt_jwks_uri (this worker's latest), tried after the files.
    std::shared_ptr<const jwt::KeySet> fetched;
    if (conf.jwks && conf.jwks->index < g_jwks.size()) fetched = g_jwks[conf.jwks->index].keys;
    if (hashed && g_cache) {
        if (keys != nullptr) ctx->token = g_cache->find(d, keys, now);
        if (!ctx->token && fetched) ctx->token = g_cache->find(d, fetched.get(), now);
    }
    if (ctx->token) {
        ++g_counters.cache_hits;
        // Cached under another location's list, perhaps: the allowlist is this location's.
        if ((algs & (1u << static_cast<unsigned>(ctx->token->alg))) == 0) {
            ctx->error = jwt::Error::AlgNotAllowed;
            ctx->token.reset();
            return *ctx;
        }
    } else {
        auto t = std::make_shared<jwt::Token>();
        const jwt::KeySet* used = keys;
        ctx->error = jwt::Error::NoKey;
        if (keys != nullptr && !keys->empty())
            ctx->error = jwt::verify_token(token, *keys, algs, *t);
        if (fetched &&
            (ctx->error == jwt::Error::NoKey || ctx->error == jwt::Error::BadSignature)) {
            auto t2 = std::make_shared<jwt::Token>();
            jwt::Error e2 = jwt::verify_token(token, *fetched, algs, *t2);
            if (e2 == jwt::Error::None || ctx->error == jwt::Error::NoKey) {
                ctx->error = e2;
                t = std::move(t2);
                used = fetched.get();
            }
        }
        if (ctx->error == jwt::Error::NoKey && conf.jwks) {
            ctx->jwks_unknown = true;
            ctx->jwks_source = conf.jwks->index;
        }
        if (ctx->error != jwt::Error::None) return *ctx;
        ctx->token = t;
        if (hashed && g_cache) {
            auto& main = r.generation.main_conf<AuthJwtMainConf>(idx);
            int64_t expires = now + main.cache_valid;
            if (t->has_exp && t->exp < expires) expires = t->exp;
            if (expires > now) g_cache->insert(d, used, std::move(t), expires);
        }
    }
    ctx->error = jwt::check_times(*ctx->token, now, conf.leeway.value_or(0));
    if (ctx->error == jwt::Error::None) ctx->error = jwt::check_claims(*ctx->token, conf.rules);
    return *ctx;
}

// ---- variables --------------------------------------------------------------------------------

bool v_claim(http::Request& r, std::string_view suffix, uintptr_t data, std::string_view& out) {
    AuthJwtRequestCtx& ctx = resolve(r);
    if (!ctx.token || ctx.error != jwt::Error::None) return false;
    const jwt::Json* v =
        jwt::find_claim(data == 0 ? ctx.token->payload : ctx.token->header, suffix);
    if (v == nullptr || v->is_null()) return false;
    if (v->is_string()) {  // copied: an internal redirect may drop the token the claim lives in
        out = r.copy(v->get_ref<const std::string&>());
        return true;
    }
    std::string s;
    jwt::render_claim(*v, s);
    out = r.copy(s);
    return true;
}

bool v_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    AuthJwtRequestCtx& ctx = resolve(r);
    if (!ctx.applies) return false;
    out = ctx.missing ? std::string_view("missing") : jwt::describe(ctx.error);
    return true;
}

void register_variables(VariableRegistry& reg) {
    reg.add_prefix("jwt_claim_", v_claim, 0);
    reg.add_prefix("jwt_header_", v_claim, 1);
    reg.add("jwt_status", v_status);
}

// ---- the Access handler -----------------------------------------------------------------------

void log_failure(http::Request& r, const AuthJwtRequestCtx& ctx) {
    auto level =
        ctx.missing || ctx.error == jwt::Error::Expired ? log::Level::Info : log::Level::Warn;
    TG_LOG(level, "auth_jwt: %.*s (sha256 %s...), client: %.*s, request: \"%.*s %.*s\"",
           static_cast<int>(ctx.missing ? 8 : jwt::describe(ctx.error).size()),
           ctx.missing ? "no token" : jwt::describe(ctx.error).data(),
           ctx.hash_prefix[0] != 0 ? ctx.hash_prefix : "-",
           static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
           static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
           static_cast<int>(r.uri.size()), r.uri.data());
}

// Rewrite phase, in every location of a block that forwards claims: client copies go first.
Verdict strip_identity_headers(http::Request& r, const void* data) {
    const auto& main = *static_cast<const AuthJwtMainConf*>(data);
    for (const std::string& name : main.identity_headers) {
        std::erase_if(r.head.headers, [&](const http::Header& h) { return iequals(h.name, name); });
    }
    return Verdict::Next;
}

// Adds the auth_jwt_claim_header headers of a valid `token` to the request.
void forward_claims(http::Request& r, const std::vector<ClaimHeader>& headers,
                    const jwt::Token& token) {
    for (const ClaimHeader& h : headers) {
        const jwt::Json* v = jwt::find_claim(token.payload, h.claim);
        if (v == nullptr || v->is_null()) continue;
        std::string_view value;
        if (v->is_string()) {
            value = r.copy(v->get_ref<const std::string&>());
        } else {
            std::string text;
            jwt::render_claim(*v, text);
            value = r.copy(text);
        }
        // A claim may hold CR, LF or NUL: such a value is never sent.
        if (value.empty() ||
            value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
            continue;
        }
        r.head.headers.push_back({h.name, value});
    }
}

// The one place a request passes auth_jwt: its claim headers are added.
Verdict allowed(http::Request& r, const AuthJwtLocConf& conf, const jwt::Token& token) {
    if (conf.claim_headers) forward_claims(r, *conf.claim_headers, token);
    return Verdict::Allow;
}

// The verdict for a resolved request: allowed, or the error response set.
Verdict decide(http::Request& r, const AuthJwtLocConf& conf, AuthJwtRequestCtx& ctx) {
    bool first = !ctx.handled;
    ctx.handled = true;
    if (!ctx.missing && ctx.error == jwt::Error::None) {
        if (first) ++g_counters.ok;
        return allowed(r, conf, *ctx.token);
    }
    if (ctx.jwks_unknown && ctx.jwks_source < g_jwks.size() && !g_jwks[ctx.jwks_source].keys) {
        // The keys this token needs were never fetched: the gateway, not the token, is at fault.
        const WorkerJwks& w = g_jwks[ctx.jwks_source];
        ++g_counters.unavailable;
        TG_LOG(log::Level::Warn, "auth_jwt: no keys from \"%s\" yet (sha256 %s...), client: %.*s",
               w.src->url_text.c_str(), ctx.hash_prefix[0] != 0 ? ctx.hash_prefix : "-",
               static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
        uint64_t secs = (w.src->min_refresh_ms + 999) / 1000;
        Verdict v = r.respond_error(503, "signing keys are not available yet");
        r.add_header("Retry-After", r.copy(std::to_string(secs < 1 ? 1 : secs)));
        return v;
    }
    if (first) {
        ++(ctx.missing                              ? g_counters.missing
           : jwt::is_authorization_error(ctx.error) ? g_counters.forbidden
                                                    : g_counters.invalid);
        log_failure(r, ctx);
    }
    std::pmr::string challenge(r.arena);
    challenge += "Bearer realm=\"";
    for (char c : *conf.realm) {  // a quoted-string
        if (c == '"' || c == '\\') challenge += '\\';
        challenge += c;
    }
    challenge += '"';
    int status = 401;
    std::string_view description = "token required";
    if (!ctx.missing) {  // RFC 6750 3.1: no error code when no credentials were sent
        description = jwt::describe(ctx.error);
        status = jwt::is_authorization_error(ctx.error) ? 403 : 401;
        challenge += status == 403 ? ", error=\"insufficient_scope\"" : ", error=\"invalid_token\"";
        challenge += ", error_description=\"";
        challenge += description;
        challenge += '"';
    }
    Verdict v = r.respond_error(status, description);
    r.add_header("WWW-Authenticate", r.copy(challenge));
    return v;
}

void JwksWait::abort() {
    r->task = nullptr;
    if (source >= g_jwks.size()) return;
    auto& w = g_jwks[source].waiters;
    w.erase(std::remove(w.begin(), w.end(), this), w.end());
}

// A JWKS fetch ended: check the waiting requests again against the keys there are now.
void wake_waiters(WorkerJwks& w) {
    std::vector<JwksWait*> waiters = std::move(w.waiters);
    w.waiters.clear();
    for (JwksWait* wait : waiters) {
        http::Request& r = *wait->r;
        r.task = nullptr;
        auto* ctx = static_cast<AuthJwtRequestCtx*>(r.module_ctx(auth_jwt_index()));
        ctx->resolved = false;  // verify again
        AuthJwtRequestCtx& again = resolve(r);
        const auto& conf = r.loc_conf<AuthJwtLocConf>(auth_jwt_index());
        r.resume(decide(r, conf, again));
    }
}

Verdict access_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const AuthJwtLocConf*>(data);
    AuthJwtRequestCtx& ctx = resolve(r);
    if (!ctx.applies) return Verdict::Next;
    if (ctx.jwks_unknown && !ctx.waited && !ctx.missing && ctx.jwks_source < g_jwks.size()) {
        // No key for this token (an unknown kid, or none fetched yet): fetch the JWKS early,
        // at most once per min_refresh, and wait for that fetch (or the one under way).
        WorkerJwks& w = g_jwks[ctx.jwks_source];
        if (!w.inflight && (!w.started || mono_ms() - w.last_start_ms >= w.src->min_refresh_ms)) {
            start_fetch(w, w.keys ? "unknown key" : "no keys yet");
        }
        if (w.inflight) {
            ctx.waited = true;
            ctx.wait.r = &r;
            ctx.wait.source = ctx.jwks_source;
            r.task = &ctx.wait;
            w.waiters.push_back(&ctx.wait);
            return Verdict::Suspend;
        }
    }
    return decide(r, conf, ctx);
}

// ---- fetching auth_jwt_jwks_uri (per worker) --------------------------------------------------

void fetched(WorkerJwks& w, http::FetchResult& res) {
    const JwksSource& src = *w.src;
    std::string error;
    if (!res.ok) {
        error = res.error;
    } else if (res.status != 200) {
        error = "status " + std::to_string(res.status);
    } else if (res.body == w.body && w.keys) {
        LOG_DEBUG("auth_jwt: JWKS from \"%s\" unchanged", src.url_text.c_str());
    } else {
        auto ks = std::make_shared<jwt::KeySet>();
        if (!ks->add_jwks(res.body, error)) {
            error = "invalid JWKS: " + error;
        } else if (ks->empty()) {
            error = "the JWKS has no signing keys";
        } else {
            LOG_INFO("auth_jwt: %zu keys from \"%s\"", ks->keys().size(), src.url_text.c_str());
            w.keys = std::move(ks);
            w.body = std::move(res.body);
            // Tokens verified with keys that may be gone must be verified again.
            if (g_cache) g_cache = std::make_unique<jwt::VerifyCache>(g_cache->capacity());
        }
    }
    uint64_t next = src.refresh_ms;
    if (!error.empty()) {
        LOG_ERROR("auth_jwt: fetching JWKS from \"%s\" failed: %s; %s", src.url_text.c_str(),
                  error.c_str(), w.keys ? "keeping the previous keys" : "no keys yet");
        next = std::min(src.refresh_ms, std::max<uint64_t>(src.min_refresh_ms, 1000));
    }
    w.timer->start(next);
}

void start_fetch(WorkerJwks& w, const char* why) {
    const JwksSource& src = *w.src;
    w.started = true;
    w.last_start_ms = mono_ms();
    LOG_DEBUG("auth_jwt: fetching JWKS from \"%s\" (%s)", src.url_text.c_str(), why);
    http::FetchRequest req = src.request();
    req.headers.emplace_back("Accept", "application/jwk-set+json, application/json");
    req.timeout_ms = src.timeout_ms;
    req.max_body = 1 << 20;
    WorkerJwks* wp = &w;
    w.inflight = http::fetch(*g_loop, std::move(req), [wp](http::FetchResult& res) {
        std::unique_ptr<http::Fetch> done = std::move(wp->inflight);
        fetched(*wp, res);
        wake_waiters(*wp);
    });
}

// ---- directives -------------------------------------------------------------------------------

std::string read_file(DirectiveContext& ctx, const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) ctx.fail("open() \"" + path + "\" failed (" + std::strerror(errno) + ")");
    std::string text;
    char buf[16384];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        text.append(buf, n);
        if (text.size() > (1u << 20)) {
            std::fclose(f);
            ctx.fail("\"" + path + "\" is larger than 1 MiB");
        }
    }
    bool err = std::ferror(f) != 0;
    std::fclose(f);
    if (err) ctx.fail("read() \"" + path + "\" failed");
    return text;
}

void set_auth_jwt(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.realm) ctx.duplicate();
    conf.realm_file = ctx.node.file ? *ctx.node.file : std::string();
    conf.realm_line = ctx.node.line;
    if (ctx.arg(0) == "off") {
        if (ctx.nargs() > 1) ctx.invalid_value(1);
        conf.realm = std::string();
        return;
    }
    if (ctx.arg(0).empty()) ctx.invalid_value(0, "empty realm");
    conf.realm = ctx.arg(0);
    if (ctx.nargs() == 2) {
        std::string_view a = ctx.arg(1);
        if (a.rfind("token=", 0) != 0 || a.size() == 6) ctx.invalid_value(1);
        conf.token = ComplexValue::compile(a.substr(6), ctx.builder.variables(), ctx.node);
        conf.has_token = true;
    }
}

void set_key_file(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    std::string path = ctx.builder.conf_dir_path(ctx.arg(0));
    std::string text = read_file(ctx, path);
    if (!conf.keys) conf.keys = std::make_shared<jwt::KeySet>();
    std::string error;
    size_t start = text.find_first_not_of(" \t\r\n");
    if (start != std::string::npos && text[start] == '{') {
        if (ctx.nargs() == 2) ctx.fail("a JWKS file \"" + path + "\" takes its kids from the file");
        if (!conf.keys->add_jwks(text, error)) ctx.fail("JWKS \"" + path + "\": " + error);
    } else if (!conf.keys->add_pem(text, ctx.nargs() == 2 ? ctx.arg(1) : "", error)) {
        ctx.fail("key file \"" + path + "\": " + error);
    }
}

void set_secret(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    std::string path = ctx.builder.conf_dir_path(ctx.arg(0));
    std::string text = read_file(ctx, path);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (!conf.keys) conf.keys = std::make_shared<jwt::KeySet>();
    std::string error;
    if (!conf.keys->add_secret(text, ctx.nargs() == 2 ? ctx.arg(1) : "", error)) {
        ctx.fail("secret file \"" + path + "\": " + error);
    }
}

void set_algorithms(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.algs) ctx.duplicate();
    jwt::AlgSet set = 0;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        jwt::Alg a;
        if (!jwt::parse_alg(ctx.arg(i), a)) ctx.invalid_value(i, "unsupported algorithm");
        set |= 1u << static_cast<unsigned>(a);
    }
    conf.algs = set;
}

void set_leeway(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.leeway) ctx.duplicate();
    conf.leeway = static_cast<int64_t>(ctx.time_ms_arg(0) / 1000);
}

void set_issuer(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.issuer) ctx.duplicate();
    conf.issuer = ctx.arg(0);
}

void set_audience(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.audience) ctx.duplicate();
    conf.audience.emplace();
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        if (ctx.arg(i).empty()) ctx.invalid_value(i);
        conf.audience->push_back(ctx.arg(i));
    }
}

void set_require(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    jwt::Requirement req;
    req.claim = ctx.arg(0);
    if (req.claim.empty() || req.claim.front() == '$') {
        ctx.invalid_value(0, "a claim name (a dotted path), not a variable");
    }
    for (size_t i = 1; i < ctx.nargs(); ++i) req.values.push_back(ctx.arg(i));
    if (!conf.require) conf.require.emplace();
    conf.require->push_back(std::move(req));
}

void set_cache(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtMainConf>();
    if (conf.cache_set) ctx.duplicate();
    conf.cache_set = true;
    ctx.lru_cache_args(conf.cache_max, conf.cache_valid);
}

void set_claim_header(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (ctx.nargs() == 1) {
        if (ctx.arg(0) != "off") {
            ctx.fail("invalid number of arguments in \"" + ctx.node.name + "\" directive");
        }
        if (conf.claim_headers) ctx.duplicate();
        conf.claim_headers.emplace();
        return;
    }
    if (conf.claim_headers && conf.claim_headers->empty()) {
        ctx.fail("\"auth_jwt_claim_header off\" is set");
    }
    const std::string& name = ctx.arg(0);
    bool token = !name.empty();
    for (char c : name) token = token && http::token::is_tchar(c);
    if (!token) ctx.invalid_value(0, "not a header name");
    if (ctx.arg(1).empty() || ctx.arg(1).front() == '$') {
        ctx.invalid_value(1, "a claim name (a dotted path), not a variable");
    }
    if (!conf.claim_headers) conf.claim_headers.emplace();
    for (const ClaimHeader& h : *conf.claim_headers) {
        if (iequals(h.name, name)) ctx.fail("header \"" + name + "\" is duplicate");
    }
    conf.claim_headers->push_back({name, ctx.arg(1)});
    auto& main =
        static_cast<AuthJwtMainConf&>(*ctx.builder.generation().main_confs[auth_jwt_index()]);
    bool known = false;
    for (const std::string& n : main.identity_headers) known |= iequals(n, name);
    if (!known) main.identity_headers.push_back(name);
}

// auth_jwt_jwks_uri URL [refresh=TIME] [min_refresh=TIME] [timeout=TIME] [ssl_verify=on|off]
// [ssl_trusted_certificate=FILE]
void set_jwks_uri(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthJwtLocConf>();
    if (conf.jwks) ctx.duplicate();
    auto src = std::make_shared<JwksSource>();
    auto time_option = [&](size_t i, std::string_view name, uint64_t& out, uint64_t min_ms) {
        std::string_view a = ctx.arg(i);
        if (a.size() <= name.size() || a.substr(0, name.size()) != name || a[name.size()] != '=') {
            return false;
        }
        auto v = conf::parse_time_ms(a.substr(name.size() + 1));
        if (!v || *v < min_ms) ctx.invalid_value(i);
        out = *v;
        return true;
    };
    http::read_fetch_target(ctx, *src, [&](size_t i) {
        return time_option(i, "refresh", src->refresh_ms, 1000) ||
               time_option(i, "min_refresh", src->min_refresh_ms, 0) ||
               time_option(i, "timeout", src->timeout_ms, 1);
    });
    auto& main =
        static_cast<AuthJwtMainConf&>(*ctx.builder.generation().main_confs[auth_jwt_index()]);
    src->index = main.sources.size();
    main.sources.push_back(src);
    conf.jwks = std::move(src);
}

void merge_location(const ModuleConf& parent_conf, ModuleConf& child_conf) {
    const auto& parent = static_cast<const AuthJwtLocConf&>(parent_conf);
    auto& child = static_cast<AuthJwtLocConf&>(child_conf);
    if (!child.realm) {
        child.realm = parent.realm;
        child.has_token = parent.has_token;
        child.token = parent.token;
        child.realm_file = parent.realm_file;
        child.realm_line = parent.realm_line;
    }
    if (!child.keys) child.keys = parent.keys;
    if (!child.jwks) child.jwks = parent.jwks;
    if (!child.algs) child.algs = parent.algs;
    if (!child.leeway) child.leeway = parent.leeway;
    if (!child.issuer) child.issuer = parent.issuer;
    if (!child.audience) child.audience = parent.audience;
    if (!child.require) child.require = parent.require;
    if (!child.claim_headers) child.claim_headers = parent.claim_headers;
    child.rules.issuer = child.issuer.value_or("");
    child.rules.audience = child.audience.value_or(std::vector<std::string>());
    child.rules.require = child.require.value_or(std::vector<jwt::Requirement>());
}

void attach(LocationBuilder& lb) {
    const auto& main = lb.builder().generation().main_conf<AuthJwtMainConf>(auth_jwt_index());
    if (!main.identity_headers.empty()) lb.add(Phase::Rewrite, strip_identity_headers, &main);
    const auto& conf = lb.conf<AuthJwtLocConf>(auth_jwt_index());
    if (!conf.realm || conf.realm->empty()) return;
    if ((!conf.keys || conf.keys->empty()) && !conf.jwks) {
        throw conf::ConfigError(conf.realm_file, conf.realm_line,
                                "\"auth_jwt\" requires \"auth_jwt_key_file\", "
                                "\"auth_jwt_secret\" or \"auth_jwt_jwks_uri\"");
    }
    lb.add(Phase::Access, access_handler, &conf);
}

void init_worker(const ConfigGeneration& generation, EventLoop& loop) {
    const auto& main = generation.main_conf<AuthJwtMainConf>(auth_jwt_index());
    g_cache = main.cache_max > 0 ? std::make_unique<jwt::VerifyCache>(main.cache_max) : nullptr;
    g_loop = &loop;
    g_jwks.clear();
    g_jwks.resize(main.sources.size());  // never resized again: fetch callbacks hold pointers
    for (size_t i = 0; i < main.sources.size(); ++i) {
        WorkerJwks& w = g_jwks[i];
        w.src = main.sources[i].get();
        WorkerJwks* wp = &w;
        w.timer = loop.make_timer([wp] {
            if (!wp->inflight) start_fetch(*wp, "refresh");
        });
        start_fetch(w, "start");
    }
}

void exit_worker(const ConfigGeneration&) {
    // Cancels the fetches under way (their callbacks never run) and the refresh timers.
    for (WorkerJwks& w : g_jwks) {
        w.inflight.reset();
        w.timer.reset();
    }
    g_jwks.clear();
    g_loop = nullptr;
    g_cache.reset();
    const Counters& c = g_counters;
    if (c.ok + c.missing + c.invalid + c.forbidden + c.unavailable == 0) return;
    LOG_INFO(
        "auth_jwt: %llu accepted, %llu missing, %llu invalid, %llu forbidden, %llu cache hits, "
        "%llu without keys",
        static_cast<unsigned long long>(c.ok), static_cast<unsigned long long>(c.missing),
        static_cast<unsigned long long>(c.invalid), static_cast<unsigned long long>(c.forbidden),
        static_cast<unsigned long long>(c.cache_hits),
        static_cast<unsigned long long>(c.unavailable));
}

constexpr uint32_t kHttpAll = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"auth_jwt", kHttpAll, 1, 2, false, ConfScope::Location, set_auth_jwt},
    {"auth_jwt_key_file", kHttpAll, 1, 2, false, ConfScope::Location, set_key_file},
    {"auth_jwt_secret", kHttpAll, 1, 2, false, ConfScope::Location, set_secret},
    {"auth_jwt_algorithms", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location,
     set_algorithms},
    {"auth_jwt_leeway", kHttpAll, 1, 1, false, ConfScope::Location, set_leeway},
    {"auth_jwt_issuer", kHttpAll, 1, 1, false, ConfScope::Location, set_issuer},
    {"auth_jwt_audience", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location, set_audience},
    {"auth_jwt_require", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location, set_require},
    {"auth_jwt_cache", kHttpContext, 1, 2, false, ConfScope::Main, set_cache},
    {"auth_jwt_claim_header", kHttpAll, 1, 2, false, ConfScope::Location, set_claim_header},
    {"auth_jwt_jwks_uri", kHttpAll, 1, 6, false, ConfScope::Location, set_jwks_uri},
};

}  // namespace

extern const Module auth_jwt_module = {
    .name = "auth_jwt",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new AuthJwtMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new AuthJwtLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .attach_location = attach,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
};

namespace {
size_t auth_jwt_index() {
    static const size_t index = module_index(auth_jwt_module);
    return index;
}
}  // namespace

}  // namespace tollgate
