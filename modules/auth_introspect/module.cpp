// The "auth_introspect" module: OAuth 2.0 token introspection (RFC 7662) in the Access phase.
//   auth_introspect URL [ssl_verify=on|off] [ssl_trusted_certificate=FILE] | off;
//                                                  http, server, location    phase: Access
//   auth_introspect_token VALUE;                   http, server, location    (default: the
//                                                                             Bearer token)
//   auth_introspect_client_id ID;                  http, server, location
//   auth_introspect_client_secret FILE;            http, server, location    (read at load)
//   auth_introspect_require CLAIM [VALUE ...];     http, server, location    (403 when unmet)
//   auth_introspect_cache off | max=N [valid=TIME];  http                    (default max=1024
//                                                                             valid=60s)
//   auth_introspect_timeout TIME;                  http, server, location    (default 5s)
// Variables: $introspect_NAME, a member of the endpoint's answer (a dotted path for nested
// members: ${introspect_ext.org}; arrays joined with ",", objects as JSON), and
// $introspect_status ("active", "inactive", "missing", "error").
//
// The worker POSTs application/x-www-form-urlencoded "token=...&token_type_hint=access_token"
// to URL (core/http/fetch.hpp, bounded by auth_introspect_timeout) with HTTP Basic client
// authentication when a client id is set (RFC 7662 2.1, RFC 6749 2.3.1), and the request waits
// (Suspend) meanwhile; requests of a worker with the same token share one introspection.
// The reply is parsed with nlohmann-json. Outcomes:
//   "active": true (and "exp", if present, not past)     -> allowed; auth_introspect_require
//                                                           unmet -> 403 insufficient_scope
//   "active": false, or an "exp" in the past             -> 401 invalid_token
//   no token                                             -> 401 (Bearer challenge, no error)
//   endpoint unreachable, timeout, status other than 200, a reply that is not a JSON object
//   with a boolean "active"                              -> 503 JSON, Retry-After: 5
// Answers are cached per worker (LRU of max=N, keyed by the SHA-256 of the token and the
// endpoint): active ones until min(now + valid, exp), inactive ones for min(valid, 10s) so a
// flood of bad tokens does not reach the endpoint while a newly issued token is soon seen.
// Failures (endpoint errors) are not cached. Logs name a token by the first 12 hex digits of
// its SHA-256, never the token; the client secret is never logged.
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/fetch.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"
#include "core/json_claims.hpp"
#include "core/log.hpp"
#include "core/variables.hpp"

namespace tollgate {
namespace {

using Json = nlohmann::json;
using Digest = std::array<uint8_t, 32>;

constexpr std::string_view kRetryAfter = "5";  // seconds, on a 503
constexpr int64_t kInactiveTtl = 10;           // seconds an inactive answer is cached at most
constexpr size_t kMaxReply = 64 * 1024;        // bytes of an introspection reply
constexpr size_t kMaxToken = 16 * 1024;

// One auth_introspect URL; the locations that inherit it share it (and its cache entries).
using Endpoint = http::FetchTarget;

struct Requirement {
    std::string claim;  // dotted path
    std::vector<std::string> values;
};

struct IntrospectMainConf : ModuleConf {
    bool cache_set = false;
    size_t cache_max = 1024;
    int64_t cache_valid = 60;  // seconds
};

struct IntrospectLocConf : ModuleConf {
    std::optional<std::shared_ptr<const Endpoint>> endpoint;  // set and null: off
    std::optional<ComplexValue> token;
    std::optional<std::string> client_id;
    std::optional<std::string> client_secret;
    std::optional<std::vector<Requirement>> require;
    std::optional<uint64_t> timeout_ms;
    std::string authorization;  // "Basic ..." built at merge, or empty
};

size_t introspect_index();

// ---- helpers ----------------------------------------------------------------------------------

bool sha256(std::string_view data, Digest& out) {
    unsigned int len = 0;
    return EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
           len == out.size();
}

// application/x-www-form-urlencoded (as RFC 6749 2.3.1 asks for the client credentials too).
void form_encode(std::string_view in, std::string& out) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : in) {
        auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '*') {
            out += c;
        } else if (c == ' ') {
            out += '+';
        } else {
            out += '%';
            out += kHex[u >> 4];
            out += kHex[u & 15];
        }
    }
}

std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()),
                            static_cast<int>(in.size()));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
}

// ---- per-worker state -------------------------------------------------------------------------

struct Answer {
    bool active = false;
    std::string_view reason;  // why not active (static text)
    std::shared_ptr<const Json> claims;
};

// Cache and in-flight entries are per endpoint and token digest.
struct Key {
    const void* endpoint = nullptr;
    Digest digest{};
    bool operator==(const Key& o) const = default;
};
struct KeyHash {
    size_t operator()(const Key& k) const {
        size_t h;
        std::memcpy(&h, k.digest.data(), sizeof(h));  // already uniformly distributed
        return h ^ reinterpret_cast<uintptr_t>(k.endpoint);
    }
};

struct Counters {
    uint64_t active = 0, inactive = 0, missing = 0, forbidden = 0, unavailable = 0, cache_hits = 0,
             introspections = 0;
};
Counters g_counters;
EventLoop* g_loop = nullptr;

// An LRU of answers keyed by endpoint and token digest.
class AnswerCache {
  public:
    explicit AnswerCache(size_t capacity) : capacity_(capacity) {}
    const Answer* find(const Key& key, int64_t now) {
        auto it = map_.find(key);
        if (it == map_.end()) return nullptr;
        if (it->second->expires <= now) {
            lru_.erase(it->second);
            map_.erase(it);
            return nullptr;
        }
        lru_.splice(lru_.begin(), lru_, it->second);
        return &it->second->answer;
    }
    void insert(const Key& key, const Answer& a, int64_t expires) {
        auto it = map_.find(key);
        if (it != map_.end()) {
            lru_.erase(it->second);
            map_.erase(it);
        }
        if (map_.size() >= capacity_ && !lru_.empty()) {
            map_.erase(lru_.back().key);
            lru_.pop_back();
        }
        lru_.push_front(Entry{key, a, expires});
        map_[key] = lru_.begin();
    }

  private:
    struct Entry {
        Key key;
        Answer answer;
        int64_t expires;
    };
    size_t capacity_;
    std::list<Entry> lru_;
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> map_;
};
std::unique_ptr<AnswerCache> g_cache;

class Waiter;

// One introspection under way and the requests waiting for it.
struct InFlight {
    std::unique_ptr<http::Fetch> fetch;
    std::vector<Waiter*> waiters;
};
std::unordered_map<Key, InFlight, KeyHash> g_inflight;

// ---- the per-request state --------------------------------------------------------------------

enum class State : uint8_t { Unknown, Missing, Waiting, Done, Unavailable };

class Waiter final : public http::RequestTask {
  public:
    http::Request* r = nullptr;
    Key key;  // the in-flight entry it waits on
    void abort() override;
};

struct IntrospectRequestCtx {
    State state = State::Unknown;
    Answer answer;
    Key key;
    char hash_prefix[13] = {};
    std::string unavailable;  // why the endpoint gave no answer (only set on failures)
    Waiter waiter;
};

IntrospectRequestCtx& request_ctx(http::Request& r) {
    size_t idx = introspect_index();
    auto* ctx = static_cast<IntrospectRequestCtx*>(r.module_ctx(idx));
    if (ctx != nullptr) return *ctx;
    void* mem = r.arena->allocate(sizeof(IntrospectRequestCtx), alignof(IntrospectRequestCtx));
    ctx = new (mem) IntrospectRequestCtx();
    r.add_cleanup([](void* p) { static_cast<IntrospectRequestCtx*>(p)->~IntrospectRequestCtx(); },
                  ctx);
    r.set_module_ctx(idx, ctx);
    return *ctx;
}

void Waiter::abort() {
    r->task = nullptr;
    auto it = g_inflight.find(key);
    if (it == g_inflight.end()) return;
    auto& w = it->second.waiters;
    w.erase(std::remove(w.begin(), w.end(), this), w.end());
}

std::string_view bearer_token(http::Request& r) {
    const http::Header* h = r.head.find("authorization");
    if (h == nullptr) return {};
    std::string_view a = h->value;
    if (a.size() > 7 && http::token::iequals(a.substr(0, 7), "bearer ")) {
        return http::token::trim_ows(a.substr(7));
    }
    return {};
}

// ---- variables --------------------------------------------------------------------------------

bool v_claim(http::Request& r, std::string_view suffix, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<IntrospectRequestCtx*>(r.module_ctx(introspect_index()));
    if (ctx == nullptr || ctx->state != State::Done || !ctx->answer.active || !ctx->answer.claims) {
        return false;
    }
    const Json* v = claims::find_claim(*ctx->answer.claims, suffix);
    if (v == nullptr || v->is_null()) return false;
    if (v->is_string()) {
        out = r.copy(v->get_ref<const std::string&>());
        return true;
    }
    std::string s;
    claims::render_claim(*v, s);
    out = r.copy(s);
    return true;
}

bool v_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<IntrospectRequestCtx*>(r.module_ctx(introspect_index()));
    if (ctx == nullptr) return false;
    switch (ctx->state) {
        case State::Missing:
            out = "missing";
            return true;
        case State::Done:
            out = ctx->answer.active ? "active" : "inactive";
            return true;
        case State::Unavailable:
            out = "error";
            return true;
        default:
            return false;
    }
}

void register_variables(VariableRegistry& reg) {
    reg.add("introspect_status", v_status);
    reg.add_prefix("introspect_", v_claim);
}

// ---- deciding ---------------------------------------------------------------------------------

// The one place a request passes auth_introspect.
Verdict allowed(http::Request&) {
    return Verdict::Allow;
}

void log_failure(http::Request& r, const IntrospectRequestCtx& ctx, log::Level level,
                 std::string_view reason) {
    TG_LOG(level, "auth_introspect: %.*s (sha256 %s...), client: %.*s, request: \"%.*s %.*s\"",
           static_cast<int>(reason.size()), reason.data(),
           ctx.hash_prefix[0] != 0 ? ctx.hash_prefix : "-",
           static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
           static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
           static_cast<int>(r.uri.size()), r.uri.data());
}

Verdict challenge(http::Request& r, int status, std::string_view error,
                  std::string_view description) {
    Verdict v = r.respond_error(status, description);
    std::string c = "Bearer";
    if (!error.empty()) {
        c += " error=\"";
        c += error;
        c += "\", error_description=\"";
        c += description;
        c += '"';
    }
    r.add_header("WWW-Authenticate", r.copy(c));
    return v;
}

// The verdict once the request's answer (or failure) is known.
Verdict decide(http::Request& r, const IntrospectLocConf& conf, IntrospectRequestCtx& ctx) {
    if (ctx.state == State::Missing) {
        ++g_counters.missing;
        log_failure(r, ctx, log::Level::Info, "no token");
        return challenge(r, 401, {}, "token required");
    }
    if (ctx.state == State::Unavailable) {
        ++g_counters.unavailable;
        std::string reason = "introspection failed: " + ctx.unavailable;
        log_failure(r, ctx, log::Level::Error, reason);
        Verdict v = r.respond_error(503, "token introspection is unavailable");
        r.add_header("Retry-After", kRetryAfter);
        return v;
    }
    const Answer& a = ctx.answer;
    if (!a.active) {
        ++g_counters.inactive;
        log_failure(r, ctx, log::Level::Info, a.reason);
        return challenge(r, 401, "invalid_token", a.reason);
    }
    static const std::vector<Requirement> kNone;
    for (const Requirement& req : conf.require ? *conf.require : kNone) {
        const Json* v = a.claims ? claims::find_claim(*a.claims, req.claim) : nullptr;
        std::string_view why;
        if (v == nullptr || v->is_null()) {
            why = "required claim missing";
        } else {
            for (const std::string& want : req.values) {
                if (!claims::contains(*v, want)) {
                    why = "required claim value missing";
                    break;
                }
            }
        }
        if (!why.empty()) {
            ++g_counters.forbidden;
            log_failure(r, ctx, log::Level::Warn, why);
            return challenge(r, 403, "insufficient_scope", why);
        }
    }
    ++g_counters.active;
    return allowed(r);
}

// Turns an endpoint's reply into an answer; false (with `why`) when it is not usable.
bool parse_reply(http::FetchResult& res, int64_t now, Answer& out, int64_t& exp, std::string& why) {
    if (!res.ok) {
        why = res.error;
        return false;
    }
    if (res.status != 200) {
        why = "status " + std::to_string(res.status);
        return false;
    }
    auto j = std::make_shared<Json>(Json::parse(res.body, nullptr, false));
    if (j->is_discarded() || !j->is_object()) {
        why = "the reply is not a JSON object";
        return false;
    }
    auto active = j->find("active");
    if (active == j->end() || !active->is_boolean()) {
        why = "the reply has no boolean \"active\"";
        return false;
    }
    exp = 0;
    out = Answer();
    if (!active->get<bool>()) {
        out.reason = "token is not active";
        return true;
    }
    auto e = j->find("exp");
    if (e != j->end() && !e->is_null()) {
        if (!e->is_number()) {
            why = "\"exp\" is not a number";
            return false;
        }
        double d = e->get<double>();
        exp = d > 4e18 ? INT64_MAX : d < 0 ? 0 : static_cast<int64_t>(d);
        if (exp <= now) {
            out.reason = "token expired";
            return true;
        }
    }
    out.active = true;
    out.claims = std::move(j);
    return true;
}

void introspected(const Key& key, const IntrospectMainConf& main, http::FetchResult& res) {
    auto it = g_inflight.find(key);
    if (it == g_inflight.end()) return;
    std::vector<Waiter*> waiters = std::move(it->second.waiters);
    std::unique_ptr<http::Fetch> done = std::move(it->second.fetch);
    g_inflight.erase(it);

    int64_t now = static_cast<int64_t>(std::time(nullptr));
    Answer a;
    int64_t exp = 0;
    std::string why;
    bool ok = parse_reply(res, now, a, exp, why);
    if (ok && g_cache) {
        int64_t expires =
            now + (a.active ? main.cache_valid : std::min(main.cache_valid, kInactiveTtl));
        if (exp > 0 && exp < expires) expires = exp;
        if (expires > now) g_cache->insert(key, a, expires);
    }
    for (Waiter* w : waiters) {
        http::Request& r = *w->r;
        r.task = nullptr;
        IntrospectRequestCtx& ctx = request_ctx(r);
        if (ok) {
            ctx.state = State::Done;
            ctx.answer = a;
        } else {
            ctx.state = State::Unavailable;
            ctx.unavailable = why;
        }
        r.resume(decide(r, r.loc_conf<IntrospectLocConf>(introspect_index()), ctx));
    }
}

Verdict access_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const IntrospectLocConf*>(data);
    IntrospectRequestCtx& ctx = request_ctx(r);
    const Endpoint* ep = conf.endpoint->get();
    if (ctx.state == State::Done && ctx.key.endpoint == ep) {
        return decide(r, conf, ctx);  // again after an internal redirect
    }
    std::string_view token = conf.token ? conf.token->evaluate(r) : bearer_token(r);
    if (token.empty()) {
        ctx.state = State::Missing;
        return decide(r, conf, ctx);
    }
    Digest d{};
    if (token.size() > kMaxToken || !sha256(token, d)) {
        ctx.state = State::Done;
        ctx.answer = Answer();
        ctx.answer.reason = "token too large";
        return decide(r, conf, ctx);
    }
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < 6; ++i) {
        ctx.hash_prefix[2 * i] = kHex[d[i] >> 4];
        ctx.hash_prefix[2 * i + 1] = kHex[d[i] & 15];
    }
    ctx.key.endpoint = ep;
    ctx.key.digest = d;
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    if (g_cache) {
        if (const Answer* a = g_cache->find(ctx.key, now)) {
            ++g_counters.cache_hits;
            ctx.state = State::Done;
            ctx.answer = *a;
            return decide(r, conf, ctx);
        }
    }
    ctx.state = State::Waiting;
    ctx.waiter.r = &r;
    auto [it, fresh] = g_inflight.try_emplace(ctx.key);
    ctx.waiter.key = ctx.key;
    it->second.waiters.push_back(&ctx.waiter);
    r.task = &ctx.waiter;
    if (!fresh) return Verdict::Suspend;  // joins the introspection of the same token

    ++g_counters.introspections;
    http::FetchRequest req = ep->request();
    req.method = "POST";
    req.timeout_ms = conf.timeout_ms.value_or(5000);
    req.max_body = kMaxReply;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.headers.emplace_back("Accept", "application/json");
    if (!conf.authorization.empty()) req.headers.emplace_back("Authorization", conf.authorization);
    req.body.reserve(token.size() + 40);
    req.body = "token=";
    form_encode(token, req.body);
    req.body += "&token_type_hint=access_token";
    const auto* main = &r.generation.main_conf<IntrospectMainConf>(introspect_index());
    Key key = ctx.key;
    it->second.fetch = http::fetch(*g_loop, std::move(req), [key, main](http::FetchResult& res) {
        introspected(key, *main, res);
    });
    return Verdict::Suspend;
}

// ---- directives -------------------------------------------------------------------------------

void set_introspect(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    if (conf.endpoint) ctx.duplicate();
    if (ctx.arg(0) == "off") {
        if (ctx.nargs() > 1) ctx.invalid_value(1);
        conf.endpoint = nullptr;
        return;
    }
    auto ep = std::make_shared<Endpoint>();
    http::read_fetch_target(ctx, *ep, nullptr);
    conf.endpoint = std::move(ep);
}

void set_token(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    if (conf.token) ctx.duplicate();
    if (ctx.arg(0).empty()) ctx.invalid_value(0);
    conf.token = ComplexValue::compile(ctx.arg(0), ctx.builder.variables(), ctx.node);
}

void set_client_id(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    if (conf.client_id) ctx.duplicate();
    if (ctx.arg(0).empty()) ctx.invalid_value(0);
    conf.client_id = ctx.arg(0);
}

void set_client_secret(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    if (conf.client_secret) ctx.duplicate();
    std::string path = ctx.builder.conf_dir_path(ctx.arg(0));
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) ctx.fail("open() \"" + path + "\" failed (" + std::strerror(errno) + ")");
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0 && text.size() <= 65536) {
        text.append(buf, n);
    }
    std::fclose(f);
    if (text.size() > 65536) ctx.fail("\"" + path + "\" is larger than 64 KiB");
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.empty()) ctx.fail("secret file \"" + path + "\" is empty");
    conf.client_secret = std::move(text);
}

void set_require(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    Requirement req;
    req.claim = ctx.arg(0);
    if (req.claim.empty() || req.claim.front() == '$') {
        ctx.invalid_value(0, "a claim name (a dotted path), not a variable");
    }
    for (size_t i = 1; i < ctx.nargs(); ++i) req.values.push_back(ctx.arg(i));
    if (!conf.require) conf.require.emplace();
    conf.require->push_back(std::move(req));
}

void set_timeout(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectLocConf>();
    if (conf.timeout_ms) ctx.duplicate();
    uint64_t ms = ctx.time_ms_arg(0);
    if (ms == 0) ctx.invalid_value(0);
    conf.timeout_ms = ms;
}

void set_cache(DirectiveContext& ctx) {
    auto& conf = ctx.conf<IntrospectMainConf>();
    if (conf.cache_set) ctx.duplicate();
    conf.cache_set = true;
    ctx.lru_cache_args(conf.cache_max, conf.cache_valid);
}

void merge_location(const ModuleConf& parent_conf, ModuleConf& child_conf) {
    const auto& parent = static_cast<const IntrospectLocConf&>(parent_conf);
    auto& child = static_cast<IntrospectLocConf&>(child_conf);
    if (!child.endpoint) child.endpoint = parent.endpoint;
    if (!child.token) child.token = parent.token;
    if (!child.client_id) child.client_id = parent.client_id;
    if (!child.client_secret) child.client_secret = parent.client_secret;
    if (!child.require) child.require = parent.require;
    if (!child.timeout_ms) child.timeout_ms = parent.timeout_ms;
    child.authorization.clear();
    if (child.client_id) {
        // RFC 6749 2.3.1: both form-encoded, then "id:secret" in base64.
        std::string pair;
        form_encode(*child.client_id, pair);
        pair += ':';
        if (child.client_secret) form_encode(*child.client_secret, pair);
        child.authorization = "Basic " + base64(pair);
    }
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<IntrospectLocConf>(introspect_index());
    if (!conf.endpoint || !*conf.endpoint) return;
    lb.add(Phase::Access, access_handler, &conf);
}

void init_worker(const ConfigGeneration& generation, EventLoop& loop) {
    const auto& main = generation.main_conf<IntrospectMainConf>(introspect_index());
    g_cache = main.cache_max > 0 ? std::make_unique<AnswerCache>(main.cache_max) : nullptr;
    g_loop = &loop;
}

void exit_worker(const ConfigGeneration&) {
    g_inflight.clear();  // cancels the introspections under way
    g_cache.reset();
    g_loop = nullptr;
    const Counters& c = g_counters;
    if (c.active + c.inactive + c.missing + c.forbidden + c.unavailable == 0) return;
    LOG_INFO(
        "auth_introspect: %llu active, %llu inactive, %llu missing, %llu forbidden, "
        "%llu unavailable, %llu introspections, %llu cache hits",
        static_cast<unsigned long long>(c.active), static_cast<unsigned long long>(c.inactive),
        static_cast<unsigned long long>(c.missing), static_cast<unsigned long long>(c.forbidden),
        static_cast<unsigned long long>(c.unavailable),
        static_cast<unsigned long long>(c.introspections),
        static_cast<unsigned long long>(c.cache_hits));
}

constexpr uint32_t kHttpAll = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"auth_introspect", kHttpAll, 1, 3, false, ConfScope::Location, set_introspect},
    {"auth_introspect_token", kHttpAll, 1, 1, false, ConfScope::Location, set_token},
    {"auth_introspect_client_id", kHttpAll, 1, 1, false, ConfScope::Location, set_client_id},
    {"auth_introspect_client_secret", kHttpAll, 1, 1, false, ConfScope::Location,
     set_client_secret},
    {"auth_introspect_require", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location,
     set_require},
    {"auth_introspect_cache", kHttpContext, 1, 2, false, ConfScope::Main, set_cache},
    {"auth_introspect_timeout", kHttpAll, 1, 1, false, ConfScope::Location, set_timeout},
};

}  // namespace

extern const Module auth_introspect_module = {
    .name = "auth_introspect",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new IntrospectMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new IntrospectLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .attach_location = attach,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
};

namespace {
size_t introspect_index() {
    static const size_t index = module_index(auth_introspect_module);
    return index;
}
}  // namespace

}  // namespace tollgate
