// The "auth_key" module: API-key authentication against a store of hashed keys.
//   auth_key_store FILE | lmdb:FILE;              http                      (load, and each reload)
//   auth_key on | off | optional;                 http, server, location    phase: Access
//   auth_key_source header:NAME | bearer | query:NAME ...;   http, server, location
//   auth_key_forward_header NAME VALUE | off;     http, server, location
//   auth_key_hide_credentials on | off;           http, server, location
//   auth_key_allow FIELD VALUE ... | all;         http, server, location
//   auth_key_deny FIELD VALUE ... | all;          http, server, location
// Variables (computed when first used, so limit_req/limit_quota keys in PreAccess can use them):
//   $consumer_id $consumer_tier $consumer_NAME (a record's attribute) $auth_key_status
//   ("ok", "missing", "unknown", "revoked") $auth_key_hash (the first 12 hex digits of the
//   presented key's SHA-256, for logs).
//
// The store (key_store.hpp; or an LMDB file, key_store_lmdb.hpp, whose entry N counts as line N)
// is read in the master at load: a reload (HUP) re-reads it, a broken
// store fails `tollgate -t` and the reload at STOREFILE:LINE. Keys are looked up by the SHA-256 of
// the presented key (hash table on its first 8 bytes, then CRYPTO_memcmp of all 32) and are never
// logged; failures are logged with their reason and a 12-digit hash prefix at most.
//
// In every location of an http block that has a store, client copies of the identity headers
// (X-Consumer-Id, X-Consumer-Tier and every name given to auth_key_forward_header anywhere in the
// block) are removed from the request in the rewrite phase, whether or not a key was
// required or valid, and whatever that location forwards;
// then, for an authenticated consumer, the configured headers are added. With
// auth_key_hide_credentials on (the default) every configured key source (its headers, a Bearer
// Authorization header, its query arguments) is removed too, whatever the outcome, so neither
// upstreams nor a log_format naming its header ever see a raw credential. A 401 carries
// WWW-Authenticate: "Bearer" when the first source is bearer, else "ApiKey" (no standard scheme
// exists for key headers), with error="invalid_token" and error_description as RFC 6750 (none when
// no key was sent, RFC 6750 3.1), and the JSON body of Request::respond_error.
//
// auth_key_allow / auth_key_deny authorize consumers as nginx's allow / deny authorize addresses:
// the rules of a level are checked in order and the first that matches decides; a level with no
// rules inherits its parent's; no match allows. FIELD is "id", "tier" or a record attribute;
// a rule matches when the consumer's FIELD equals one of the VALUEs. "all" matches every caller,
// the anonymous one of "auth_key optional" too (who matches no other rule). A denied consumer
// gets 403 (JSON body), logged at warn with the consumer id.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "core/config/error.hpp"
#include "core/generation.hpp"
#include "core/http/http_token.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/auth_key/key_command.hpp"
#include "modules/auth_key/key_store.hpp"
#include "modules/auth_key/key_store_lmdb.hpp"

namespace tollgate {
namespace {

using auth_key::Digest;
using auth_key::KeyRecord;
using auth_key::KeyStore;
using http::token::iequals;

enum class Mode : uint8_t { Off, On, Optional };

struct Source {
    enum Kind : uint8_t { Header, Bearer, Query } kind = Header;
    std::string name;  // header or argument name
};

struct ForwardHeader {
    std::string name;
    enum Field : uint8_t { Value, Id, Tier } field = Value;
    ComplexValue value;
};

struct AuthKeyMainConf : ModuleConf {
    std::shared_ptr<const KeyStore> store;
    std::string store_path;
    // Every identity header name used anywhere in the http block (and the defaults): client
    // copies of all of them are removed in every location, whatever that location forwards.
    std::vector<std::string> identity_headers{"X-Consumer-Id", "X-Consumer-Tier"};
};

// One auth_key_allow / auth_key_deny rule.
struct AccessRule {
    bool allow = false;
    enum Field : uint8_t { All, Id, Tier, Attr } field = All;
    std::string attr;  // for Attr
    std::vector<std::string> values;
};

struct AuthKeyLocConf : ModuleConf {
    std::optional<Mode> mode;
    std::string mode_file;
    int mode_line = 0;
    std::optional<std::vector<Source>> sources;
    std::optional<std::vector<ForwardHeader>> forward;  // empty: forwarding off
    std::optional<bool> hide_credentials;
    std::optional<std::vector<AccessRule>> rules;
};

const std::vector<Source>& default_sources() {
    static const std::vector<Source> s{{Source::Header, "X-API-Key"}};
    return s;
}

const std::vector<ForwardHeader>& default_forward() {
    static const std::vector<ForwardHeader> f = [] {
        std::vector<ForwardHeader> v(2);
        v[0].name = "X-Consumer-Id";
        v[0].field = ForwardHeader::Id;
        v[1].name = "X-Consumer-Tier";
        v[1].field = ForwardHeader::Tier;
        return v;
    }();
    return f;
}

size_t auth_key_index();

// ---- per-worker counters ----------------------------------------------------------------------

struct Counters {
    uint64_t ok = 0, missing = 0, unknown = 0, revoked = 0, denied = 0;
};
Counters g_counters;

// ---- the lookup -------------------------------------------------------------------------------

enum class Status : uint8_t { Unresolved, NotApplicable, Ok, Missing, Unknown, Revoked };

struct AuthKeyRequestCtx {
    const http::Location* location = nullptr;  // the location it was resolved for
    Status status = Status::Unresolved;
    bool handled = false;  // the Access handler has logged and counted this request
    const KeyRecord* record = nullptr;
    const Source* source = nullptr;  // where the key came from
    char hash_prefix[13] = {};       // first 12 hex digits of the presented key's SHA-256
};

// The SHA-256 of `key`, with a digest context kept per worker (no allocation per request).
bool sha256(std::string_view key, Digest& out) {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    static EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    return md != nullptr && ctx != nullptr && EVP_DigestInit_ex2(ctx, md, nullptr) == 1 &&
           EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
           EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == out.size();
}

// The value of query argument `name` in `args`, or false.
bool find_arg(std::string_view args, std::string_view name, std::string_view& out) {
    while (!args.empty()) {
        size_t amp = args.find('&');
        std::string_view pair = args.substr(0, amp);
        args = amp == std::string_view::npos ? std::string_view() : args.substr(amp + 1);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            out = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
            return true;
        }
    }
    return false;
}

// The credential `s` carries in `r`, or empty.
std::string_view credential(http::Request& r, const Source& s) {
    std::string_view v;
    switch (s.kind) {
        case Source::Header:
            if (const http::Header* h = r.head.find(s.name)) v = h->value;
            break;
        case Source::Bearer:
            if (const http::Header* h = r.head.find("authorization")) {
                std::string_view a = h->value;
                if (a.size() > 7 && iequals(a.substr(0, 7), "bearer ")) {
                    v = http::token::trim_ows(a.substr(7));
                }
            }
            break;
        case Source::Query:
            find_arg(r.args, s.name, v);
            break;
    }
    return v;
}

// Resolves (once per request) who the caller is for the request's location.
AuthKeyRequestCtx& resolve(http::Request& r) {
    size_t idx = auth_key_index();
    auto* ctx = static_cast<AuthKeyRequestCtx*>(r.module_ctx(idx));
    // Resolved for this location already. After an internal redirect (error_page, try_files)
    // a key already judged keeps its verdict (it may have been hidden from the request since);
    // otherwise the new location's settings apply: a location that requires a key never
    // inherits an "off" from the location the request came from.
    if (ctx != nullptr && ctx->location != r.location &&
        (ctx->status == Status::Ok || ctx->status == Status::Unknown ||
         ctx->status == Status::Revoked)) {
        ctx->location = r.location;
    }
    if (ctx != nullptr && ctx->location == r.location) return *ctx;
    if (ctx == nullptr) {
        void* mem = r.arena->allocate(sizeof(AuthKeyRequestCtx), alignof(AuthKeyRequestCtx));
        ctx = new (mem) AuthKeyRequestCtx();
        r.set_module_ctx(idx, ctx);
    } else {
        *ctx = AuthKeyRequestCtx();
    }
    ctx->location = r.location;
    ctx->status = Status::NotApplicable;
    if (r.location == nullptr) return *ctx;
    const auto& main = r.generation.main_conf<AuthKeyMainConf>(idx);
    const auto& conf = r.loc_conf<AuthKeyLocConf>(idx);
    if (!main.store || conf.mode.value_or(Mode::Off) == Mode::Off) return *ctx;

    const auto& sources = conf.sources ? *conf.sources : default_sources();
    std::string_view key;
    for (const Source& s : sources) {
        key = credential(r, s);
        if (!key.empty()) {
            ctx->source = &s;
            break;
        }
    }
    if (key.empty()) {
        ctx->status = Status::Missing;
        return *ctx;
    }
    Digest d;
    if (!sha256(key, d)) {
        ctx->status = Status::Unknown;
        return *ctx;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < 6; ++i) {
        ctx->hash_prefix[2 * i] = kHex[d[i] >> 4];
        ctx->hash_prefix[2 * i + 1] = kHex[d[i] & 15];
    }
    ctx->status = Status::Unknown;
    auto [first, last] = main.store->candidates(d);
    for (const uint32_t* p = first; p != last; ++p) {
        const KeyRecord& rec = main.store->records()[*p];
        if (CRYPTO_memcmp(rec.hash.data(), d.data(), d.size()) == 0) {
            ctx->record = &rec;
            ctx->status = rec.revoked ? Status::Revoked : Status::Ok;
            break;
        }
    }
    return *ctx;
}

// ---- variables --------------------------------------------------------------------------------

bool v_consumer(http::Request& r, std::string_view suffix, uintptr_t data, std::string_view& out) {
    AuthKeyRequestCtx& ctx = resolve(r);
    if (ctx.status != Status::Ok) return false;
    if (data == 1) {
        out = ctx.record->consumer;
    } else if (data == 2) {
        out = ctx.record->tier;
    } else {
        const std::string* v = ctx.record->attr(suffix);
        if (v == nullptr) return false;
        out = *v;
    }
    return true;
}

std::string_view status_text(Status s) {
    switch (s) {
        case Status::Ok:
            return "ok";
        case Status::Missing:
            return "missing";
        case Status::Unknown:
            return "unknown";
        case Status::Revoked:
            return "revoked";
        default:
            return {};
    }
}

bool v_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    out = status_text(resolve(r).status);
    return !out.empty();
}

bool v_hash(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    AuthKeyRequestCtx& ctx = resolve(r);
    if (ctx.hash_prefix[0] == 0) return false;
    out = std::string_view(ctx.hash_prefix, 12);
    return true;
}

void register_variables(VariableRegistry& reg) {
    reg.add("consumer_id", v_consumer, 1);
    reg.add("consumer_tier", v_consumer, 2);
    reg.add_prefix("consumer_", v_consumer, 0);
    reg.add("auth_key_status", v_status);
    reg.add("auth_key_hash", v_hash);
}

// ---- the Access handler -----------------------------------------------------------------------

void remove_headers(http::Request& r, std::string_view name) {
    auto& hs = r.head.headers;
    std::erase_if(hs, [&](const http::Header& h) { return iequals(h.name, name); });
}

// Removes argument `name` from the query string the proxy forwards.
void remove_arg(http::Request& r, std::string_view name) {
    auto strip = [&](std::string_view args) {
        std::pmr::string out(r.arena);
        while (!args.empty()) {
            size_t amp = args.find('&');
            std::string_view pair = args.substr(0, amp);
            args = amp == std::string_view::npos ? std::string_view() : args.substr(amp + 1);
            if (pair.substr(0, pair.find('=')) == name) continue;
            if (!out.empty()) out += '&';
            out += pair;
        }
        return r.copy(out);
    };
    r.args = strip(r.args);
    r.head.query = strip(r.head.query);
    if (r.head.query.empty()) {
        r.head.target = r.head.target.substr(0, r.head.target.find('?'));
    }
}

Verdict reject(http::Request& r, const AuthKeyLocConf& conf, std::string_view description) {
    const auto& sources = conf.sources ? *conf.sources : default_sources();
    bool bearer = sources.front().kind == Source::Bearer;
    std::pmr::string challenge(r.arena);
    challenge += bearer ? "Bearer realm=\"tollgate\"" : "ApiKey realm=\"tollgate\"";
    AuthKeyRequestCtx& ctx = resolve(r);
    if (ctx.status != Status::Missing) {  // RFC 6750 3.1: no error code without credentials
        challenge += ", error=\"invalid_token\", error_description=\"";
        challenge += description;
        challenge += '"';
    }
    Verdict v = r.respond_error(401, description);
    r.add_header("WWW-Authenticate", r.copy(challenge));
    return v;
}

// Whether `rules` let `consumer` (null: an anonymous caller) in: the first matching rule decides.
bool allowed(const std::vector<AccessRule>& rules, const KeyRecord* consumer) {
    for (const AccessRule& rule : rules) {
        bool match = rule.field == AccessRule::All;
        if (!match && consumer != nullptr) {
            const std::string* v = rule.field == AccessRule::Id     ? &consumer->consumer
                                   : rule.field == AccessRule::Tier ? &consumer->tier
                                                                    : consumer->attr(rule.attr);
            match = v != nullptr &&
                    std::find(rule.values.begin(), rule.values.end(), *v) != rule.values.end();
        }
        if (match) return rule.allow;
    }
    return true;
}

Verdict deny(http::Request& r, const AuthKeyRequestCtx& ctx) {
    ++g_counters.denied;
    const char* who = ctx.record != nullptr ? ctx.record->consumer.c_str() : "-";
    LOG_WARN(
        "auth_key: consumer \"%s\" denied by auth_key_allow/deny, client: %.*s, request: "
        "\"%.*s %.*s\"",
        who, static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
        static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
        static_cast<int>(r.uri.size()), r.uri.data());
    return r.respond_error(403, "consumer not allowed");
}

// Rewrite phase, in every location of a block with a store: client copies of identity headers
// go, before any access check runs (one that "satisfy any" skips must not let them through).
Verdict strip_identity_headers(http::Request& r, const void* data) {
    const auto& main = *static_cast<const AuthKeyMainConf*>(data);
    for (const std::string& name : main.identity_headers) remove_headers(r, name);
    return Verdict::Next;
}

Verdict access_handler(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const AuthKeyLocConf*>(data);
    const auto& forward = conf.forward ? *conf.forward : default_forward();
    if (conf.mode.value_or(Mode::Off) == Mode::Off) return Verdict::Next;

    AuthKeyRequestCtx& ctx = resolve(r);
    if (!ctx.handled) {
        ctx.handled = true;
        switch (ctx.status) {
            case Status::Ok:
                ++g_counters.ok;
                break;
            case Status::Missing:
                ++g_counters.missing;
                if (conf.mode == Mode::On) {
                    LOG_INFO("auth_key: no API key, client: %.*s, request: \"%.*s %.*s\"",
                             static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
                             static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
                             static_cast<int>(r.uri.size()), r.uri.data());
                }
                break;
            case Status::Unknown:
            case Status::Revoked:
                ++(ctx.status == Status::Unknown ? g_counters.unknown : g_counters.revoked);
                LOG_WARN(
                    "auth_key: %s API key (sha256 %s...)%s%s, client: %.*s, request: "
                    "\"%.*s %.*s\"",
                    ctx.status == Status::Unknown ? "unknown" : "revoked", ctx.hash_prefix,
                    ctx.record != nullptr ? " of consumer " : "",
                    ctx.record != nullptr ? ctx.record->consumer.c_str() : "",
                    static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data(),
                    static_cast<int>(r.head.method_name.size()), r.head.method_name.data(),
                    static_cast<int>(r.uri.size()), r.uri.data());
                break;
            default:
                break;
        }
    }
    // The credential goes no further, whatever the outcome: not to the upstream, not to a
    // log_format that names its header. Every configured source is cleared, not only the one
    // that was used, so a second copy elsewhere cannot slip through either.
    if (conf.hide_credentials.value_or(true) && ctx.status != Status::NotApplicable) {
        for (const Source& s : conf.sources ? *conf.sources : default_sources()) {
            switch (s.kind) {
                case Source::Header:
                    remove_headers(r, s.name);
                    break;
                case Source::Bearer:
                    std::erase_if(r.head.headers, [](const http::Header& h) {
                        return iequals(h.name, "authorization") && h.value.size() > 7 &&
                               iequals(h.value.substr(0, 7), "bearer ");
                    });
                    break;
                case Source::Query: {
                    std::string_view v;
                    if (find_arg(r.args, s.name, v) || find_arg(r.head.query, s.name, v)) {
                        remove_arg(r, s.name);
                    }
                    break;
                }
            }
        }
    }
    switch (ctx.status) {
        case Status::Missing:
            if (conf.mode != Mode::Optional) return reject(r, conf, "API key required");
            if (conf.rules && !allowed(*conf.rules, nullptr)) return deny(r, ctx);
            return Verdict::Next;
        case Status::Unknown:
            return reject(r, conf, "invalid API key");
        case Status::Revoked:
            return reject(r, conf, "API key revoked");
        case Status::Ok:
            break;
        default:
            return Verdict::Next;
    }
    if (conf.rules && !allowed(*conf.rules, ctx.record)) return deny(r, ctx);
    for (const ForwardHeader& f : forward) {
        std::string_view v;
        if (f.field == ForwardHeader::Id) {
            v = ctx.record->consumer;
        } else if (f.field == ForwardHeader::Tier) {
            v = ctx.record->tier;
        } else {
            v = f.value.evaluate(r);
        }
        // A value built from request data may hold CR, LF or NUL: never send it.
        if (v.empty() || v.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
            continue;
        }
        r.head.headers.push_back({f.name, v});
    }
    return Verdict::Allow;
}

// ---- directives -------------------------------------------------------------------------------

void set_store(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyMainConf>();
    if (conf.store) ctx.duplicate();
    bool lmdb = ctx.arg(0).rfind("lmdb:", 0) == 0;
    std::string path = ctx.builder.conf_dir_path(lmdb ? ctx.arg(0).substr(5) : ctx.arg(0));
    std::string text;
    if (lmdb) {
        std::string error;
        if (!auth_key::lmdb_read_lines(path, true, text, error)) ctx.fail(error);
    } else {
        std::FILE* f = std::fopen(path.c_str(), "rb");
        if (f == nullptr) {
            ctx.fail("open() \"" + path + "\" failed (" + std::strerror(errno) + ")");
        }
        constexpr size_t kMaxFile = 256u << 20;
        char buf[65536];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
            text.append(buf, n);
            if (text.size() > kMaxFile) {
                std::fclose(f);
                ctx.fail("API key store \"" + path + "\" is larger than 256 MiB");
            }
        }
        bool read_error = std::ferror(f) != 0;
        std::fclose(f);
        if (read_error) ctx.fail("read() \"" + path + "\" failed");
    }
    auto store = std::make_shared<KeyStore>();
    int line = 0;
    std::string error;
    if (!auth_key::parse_key_store(text, *store, line, error)) {
        throw conf::ConfigError(path, line,
                                error + " (API key store of \"auth_key_store\" in " +
                                    (ctx.node.file ? *ctx.node.file : std::string()) + ":" +
                                    std::to_string(ctx.node.line) + ")");
    }
    conf.store = std::move(store);
    conf.store_path = std::move(path);
}

void set_mode(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyLocConf>();
    if (conf.mode) ctx.duplicate();
    const std::string& a = ctx.arg(0);
    if (a == "on") {
        conf.mode = Mode::On;
    } else if (a == "off") {
        conf.mode = Mode::Off;
    } else if (a == "optional") {
        conf.mode = Mode::Optional;
    } else {
        ctx.fail("invalid value \"" + a +
                 "\" in \"auth_key\" directive, it must be \"on\", \"off\" or \"optional\"");
    }
    conf.mode_file = ctx.node.file ? *ctx.node.file : std::string();
    conf.mode_line = ctx.node.line;
}

bool valid_header_name(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (!http::token::is_tchar(c)) return false;
    }
    return true;
}

void set_source(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyLocConf>();
    if (conf.sources) ctx.duplicate();
    std::vector<Source> sources;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        Source s;
        if (a == "bearer") {
            s.kind = Source::Bearer;
        } else if (a.rfind("header:", 0) == 0 && valid_header_name(a.substr(7))) {
            s.kind = Source::Header;
            s.name = a.substr(7);
        } else if (a.rfind("query:", 0) == 0 && a.size() > 6 &&
                   a.find_first_of("&=# ") == std::string_view::npos) {
            s.kind = Source::Query;
            s.name = a.substr(6);
        } else {
            ctx.invalid_value(i, "it must be \"header:NAME\", \"bearer\" or \"query:NAME\"");
        }
        sources.push_back(std::move(s));
    }
    conf.sources = std::move(sources);
}

void set_forward(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyLocConf>();
    if (ctx.nargs() == 1) {
        if (ctx.arg(0) != "off")
            ctx.fail("invalid number of arguments in \"" + ctx.node.name + "\" directive");
        if (conf.forward) ctx.duplicate();
        conf.forward.emplace();
        return;
    }
    if (conf.forward && conf.forward->empty()) ctx.fail("\"auth_key_forward_header off\" is set");
    if (!valid_header_name(ctx.arg(0))) ctx.invalid_value(0, "not a header name");
    if (!conf.forward) conf.forward.emplace();
    for (const ForwardHeader& f : *conf.forward) {
        if (iequals(f.name, ctx.arg(0))) ctx.fail("header \"" + ctx.arg(0) + "\" is duplicate");
    }
    auto& main =
        static_cast<AuthKeyMainConf&>(*ctx.builder.generation().main_confs[auth_key_index()]);
    bool known = false;
    for (const std::string& n : main.identity_headers) known |= iequals(n, ctx.arg(0));
    if (!known) main.identity_headers.push_back(ctx.arg(0));
    ForwardHeader f;
    f.name = ctx.arg(0);
    f.field = ForwardHeader::Value;
    f.value = ComplexValue::compile(ctx.arg(1), ctx.builder.variables(), ctx.node);
    conf.forward->push_back(std::move(f));
}

void set_hide(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyLocConf>();
    if (conf.hide_credentials) ctx.duplicate();
    conf.hide_credentials = ctx.flag_arg(0);
}

// auth_key_allow / auth_key_deny FIELD VALUE ... | all
void set_rule(DirectiveContext& ctx) {
    auto& conf = ctx.conf<AuthKeyLocConf>();
    AccessRule rule;
    rule.allow = ctx.node.name == "auth_key_allow";
    const std::string& field = ctx.arg(0);
    if (field == "all") {
        if (ctx.nargs() > 1) ctx.invalid_value(1, "\"all\" takes no values");
    } else {
        if (ctx.nargs() < 2) {
            ctx.fail("invalid number of arguments in \"" + ctx.node.name + "\" directive");
        }
        if (field.empty() || field.front() == '$') {
            ctx.invalid_value(0, "it must be \"all\", \"id\", \"tier\" or an attribute name");
        }
        rule.field = field == "id"     ? AccessRule::Id
                     : field == "tier" ? AccessRule::Tier
                                       : AccessRule::Attr;
        rule.attr = field;
        for (size_t i = 1; i < ctx.nargs(); ++i) rule.values.push_back(ctx.arg(i));
    }
    if (!conf.rules) conf.rules.emplace();
    conf.rules->push_back(std::move(rule));
}

void merge_location(const ModuleConf& parent_conf, ModuleConf& child_conf) {
    const auto& parent = static_cast<const AuthKeyLocConf&>(parent_conf);
    auto& child = static_cast<AuthKeyLocConf&>(child_conf);
    if (!child.mode) {
        child.mode = parent.mode;
        child.mode_file = parent.mode_file;
        child.mode_line = parent.mode_line;
    }
    if (!child.sources) child.sources = parent.sources;
    if (!child.forward) child.forward = parent.forward;
    if (!child.hide_credentials) child.hide_credentials = parent.hide_credentials;
    if (!child.rules) child.rules = parent.rules;
}

void attach(LocationBuilder& lb) {
    size_t idx = auth_key_index();
    const auto& main = lb.builder().generation().main_conf<AuthKeyMainConf>(idx);
    const auto& conf = lb.conf<AuthKeyLocConf>(idx);
    if (!main.store) {
        if (conf.mode.value_or(Mode::Off) != Mode::Off) {
            throw conf::ConfigError(conf.mode_file, conf.mode_line,
                                    "\"auth_key\" requires \"auth_key_store\" in the http block");
        }
        return;
    }
    lb.add(Phase::Rewrite, strip_identity_headers, &main);
    lb.add(Phase::Access, access_handler, &conf);
}

void exit_worker(const ConfigGeneration&) {
    const Counters& c = g_counters;
    if (c.ok + c.missing + c.unknown + c.revoked + c.denied == 0) return;
    LOG_INFO("auth_key: %llu accepted, %llu missing, %llu unknown, %llu revoked, %llu denied",
             static_cast<unsigned long long>(c.ok), static_cast<unsigned long long>(c.missing),
             static_cast<unsigned long long>(c.unknown), static_cast<unsigned long long>(c.revoked),
             static_cast<unsigned long long>(c.denied));
}

constexpr uint32_t kHttpAll = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"auth_key_store", kHttpContext, 1, 1, false, ConfScope::Main, set_store},
    {"auth_key", kHttpAll, 1, 1, false, ConfScope::Location, set_mode},
    {"auth_key_source", kHttpAll, 1, 8, false, ConfScope::Location, set_source},
    {"auth_key_forward_header", kHttpAll, 1, 2, false, ConfScope::Location, set_forward},
    {"auth_key_hide_credentials", kHttpAll, 1, 1, false, ConfScope::Location, set_hide},
    {"auth_key_allow", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location, set_rule},
    {"auth_key_deny", kHttpAll, 1, kUnlimitedArgs, false, ConfScope::Location, set_rule},
};

}  // namespace

extern const Module auth_key_module = {
    .name = "auth_key",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new AuthKeyMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new AuthKeyLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .attach_location = attach,
    .exit_worker = exit_worker,
    .command = "key",
    .run_command = auth_key::key_command,
};

namespace {
size_t auth_key_index() {
    static const size_t index = module_index(auth_key_module);
    return index;
}
}  // namespace

}  // namespace tollgate
