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
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <vector>

#include "core/config/error.hpp"
#include "core/generation.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/auth_jwt/jwt.hpp"

namespace tollgate {
namespace {

using http::token::iequals;

struct AuthJwtMainConf : ModuleConf {
    bool cache_set = false;
    size_t cache_max = 1024;
    int64_t cache_valid = 300;  // seconds
};

struct AuthJwtLocConf : ModuleConf {
    std::optional<std::string> realm;  // set and empty: off
    bool has_token = false;
    ComplexValue token;
    std::string realm_file;
    int realm_line = 0;
    std::shared_ptr<jwt::KeySet> keys;
    std::optional<jwt::AlgSet> algs;
    std::optional<int64_t> leeway;
    std::optional<std::string> issuer;
    std::optional<std::vector<std::string>> audience;
    std::optional<std::vector<jwt::Requirement>> require;
    jwt::ClaimRules rules;  // built at merge from the three above
};

size_t auth_jwt_index();

// ---- per-worker state -------------------------------------------------------------------------

struct Counters {
    uint64_t ok = 0, missing = 0, invalid = 0, forbidden = 0, cache_hits = 0;
};
Counters g_counters;
std::unique_ptr<jwt::VerifyCache> g_cache;

// ---- the per-request verification ------------------------------------------------------------

struct AuthJwtRequestCtx {
    bool resolved = false;
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
    *ctx = AuthJwtRequestCtx();
    ctx->resolved = true;
    ctx->location = r.location;
    if (r.location == nullptr) return *ctx;
    const auto& conf = r.loc_conf<AuthJwtLocConf>(idx);
    if (!conf.realm || conf.realm->empty() || !conf.keys) return *ctx;
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
    if (hashed && g_cache) ctx->token = g_cache->find(d, keys, now);
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
        ctx->error = jwt::verify_token(token, *keys, algs, *t);
        if (ctx->error != jwt::Error::None) return *ctx;
        ctx->token = t;
        if (hashed && g_cache) {
            auto& main = r.generation.main_conf<AuthJwtMainConf>(idx);
            int64_t expires = now + main.cache_valid;
            if (t->has_exp && t->exp < expires) expires = t->exp;
            if (expires > now) g_cache->insert(d, keys, std::move(t), expires);
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

Verdict access_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const AuthJwtLocConf*>(data);
    AuthJwtRequestCtx& ctx = resolve(r);
    if (!ctx.applies) return Verdict::Next;
    bool first = !ctx.handled;
    ctx.handled = true;
    if (!ctx.missing && ctx.error == jwt::Error::None) {
        if (first) ++g_counters.ok;
        return Verdict::Allow;
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
    if (ctx.arg(0) == "off") {
        if (ctx.nargs() > 1) ctx.invalid_value(1);
        conf.cache_max = 0;
        return;
    }
    bool have_max = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.rfind("max=", 0) == 0) {
            std::string n(a.substr(4));
            char* end = nullptr;
            errno = 0;
            unsigned long long v = std::strtoull(n.c_str(), &end, 10);
            if (n.empty() || *end != '\0' || errno != 0 || v == 0 || v > 1000000) {
                ctx.invalid_value(i, "max must be 1 to 1000000");
            }
            conf.cache_max = static_cast<size_t>(v);
            have_max = true;
        } else if (a.rfind("valid=", 0) == 0) {
            // nginx time units s, m, h (a bare number is seconds).
            std::string_view t = a.substr(6);
            int64_t unit = 1;
            if (!t.empty() && (t.back() == 's' || t.back() == 'm' || t.back() == 'h')) {
                unit = t.back() == 's' ? 1 : t.back() == 'm' ? 60 : 3600;
                t.remove_suffix(1);
            }
            int64_t n = 0;
            if (t.empty() || t.size() > 7) ctx.invalid_value(i, "valid must be 1s to 1000h");
            for (char c : t) {
                if (c < '0' || c > '9') ctx.invalid_value(i, "valid must be 1s to 1000h");
                n = n * 10 + (c - '0');
            }
            int64_t ms = n * unit * 1000;
            if (ms < 1000 || ms > 3600000000LL) ctx.invalid_value(i, "valid must be 1s to 1000h");
            conf.cache_valid = static_cast<int64_t>(ms / 1000);
        } else {
            ctx.invalid_value(i);
        }
    }
    if (!have_max) ctx.fail("\"auth_jwt_cache\" needs max=N or off");
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
    if (!child.algs) child.algs = parent.algs;
    if (!child.leeway) child.leeway = parent.leeway;
    if (!child.issuer) child.issuer = parent.issuer;
    if (!child.audience) child.audience = parent.audience;
    if (!child.require) child.require = parent.require;
    child.rules.issuer = child.issuer.value_or("");
    child.rules.audience = child.audience.value_or(std::vector<std::string>());
    child.rules.require = child.require.value_or(std::vector<jwt::Requirement>());
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<AuthJwtLocConf>(auth_jwt_index());
    if (!conf.realm || conf.realm->empty()) return;
    if (!conf.keys || conf.keys->empty()) {
        throw conf::ConfigError(conf.realm_file, conf.realm_line,
                                "\"auth_jwt\" requires \"auth_jwt_key_file\" or "
                                "\"auth_jwt_secret\"");
    }
    lb.add(Phase::Access, access_handler, &conf);
}

void init_worker(const ConfigGeneration& generation, EventLoop&) {
    const auto& main = generation.main_conf<AuthJwtMainConf>(auth_jwt_index());
    g_cache = main.cache_max > 0 ? std::make_unique<jwt::VerifyCache>(main.cache_max) : nullptr;
}

void exit_worker(const ConfigGeneration&) {
    g_cache.reset();
    const Counters& c = g_counters;
    if (c.ok + c.missing + c.invalid + c.forbidden == 0) return;
    LOG_INFO("auth_jwt: %llu accepted, %llu missing, %llu invalid, %llu forbidden, %llu cache hits",
             static_cast<unsigned long long>(c.ok), static_cast<unsigned long long>(c.missing),
             static_cast<unsigned long long>(c.invalid),
             static_cast<unsigned long long>(c.forbidden),
             static_cast<unsigned long long>(c.cache_hits));
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
