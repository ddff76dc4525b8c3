// The "ssl" module: TLS termination (nginx's ngx_http_ssl_module).
//   ssl_certificate FILE;            http, server (repeatable: RSA and ECDSA side by side)
//   ssl_certificate_key FILE;        http, server (one per ssl_certificate, same order)
//   ssl_protocols P...;              http, server   default TLSv1.2 TLSv1.3
//   ssl_ciphers LIST;                http, server   default ECDHE/DHE AEAD suites (TLS 1.2)
//   ssl_conf_command NAME VALUE;     http, server (repeatable; OpenSSL SSL_CONF_cmd)
//   ssl_prefer_server_ciphers on|off http, server   default off
//   ssl_ecdh_curve auto|LIST;        http, server   default auto (OpenSSL's groups)
//   ssl_session_cache off|none|[builtin[:N]] [shared:NAME:SIZE];  http, server  default none
//   ssl_session_timeout TIME;        http, server   default 5m
//   ssl_session_tickets on|off;      http, server   default on
//   ssl_session_ticket_key FILE;     http, server (repeatable; the first encrypts)
//   ssl_client_certificate FILE;     http, server
//   ssl_trusted_certificate FILE;    http, server
//   ssl_verify_client off|on|optional|optional_no_ca;  http, server  default off
//   ssl_verify_depth N;              http, server   default 1
//   ssl_crl FILE;                    http, server
//   ssl_handshake_timeout TIME;      http, server   default 60s (nginx 1.25.5)
// Variables: $ssl_protocol $ssl_cipher $ssl_server_name $ssl_session_reused $ssl_session_id
//   $ssl_client_verify $ssl_client_s_dn $ssl_client_i_dn $ssl_client_serial
//   $ssl_client_fingerprint
// Phase: PostRead (client certificate verdict for ssl_verify_client, as nginx: a bad or
// missing certificate is answered 400 after the handshake, not refused in it; a request whose
// Host names a server with another TLS context than SNI chose is answered 421).
//
// The SSL_CTXs are built in `check`, in the master, for every server reachable through a
// `listen ... ssl` address; each Listen gets its default server's context (Listen::tls_ctx) and
// the worker starts handshakes with it. The SNI callback picks the server by server_name.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/http_config.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/ssl/ssl_config.hpp"

namespace tollgate {

namespace ssl {
SslServerConf::~SslServerConf() {
    if (ctx != nullptr) SSL_CTX_free(ctx);
}
}  // namespace ssl

namespace {

using namespace ssl;

size_t ssl_index();

SslServerConf& conf(DirectiveContext& ctx) {
    return ctx.conf<SslServerConf>();
}

Where where(DirectiveContext& ctx) {
    return Where{*ctx.node.file, ctx.node.line};
}

[[noreturn]] void fail_at(const Where& w, const std::string& message) {
    throw conf::ConfigError(w.file, w.line, message);
}

// The OpenSSL reason for the last failure, and the error queue cleared.
std::string openssl_reason() {
    unsigned long e = ERR_peek_last_error();
    std::string out;
    if (e == 0) {
        out = "unknown error";
    } else {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        out = buf;
    }
    ERR_clear_error();
    return out;
}

// ---- directives ------------------------------------------------------------------------------

PathAt path_arg(DirectiveContext& ctx, size_t i) {
    return PathAt{ctx.builder.conf_dir_path(ctx.arg(i)), where(ctx)};
}

void d_certificate(DirectiveContext& ctx) {
    conf(ctx).certificates.push_back(path_arg(ctx, 0));
}

void d_certificate_key(DirectiveContext& ctx) {
    conf(ctx).keys.push_back(path_arg(ctx, 0));
}

void d_protocols(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.protocols) ctx.duplicate();
    uint32_t mask = 0;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        const std::string& p = ctx.arg(i);
        if (p == "SSLv2") {
            continue;  // gone from OpenSSL; accepted as nginx does
        } else if (p == "SSLv3") {
            mask |= kProtoSSLv3;
        } else if (p == "TLSv1") {
            mask |= kProtoTLSv1;
        } else if (p == "TLSv1.1") {
            mask |= kProtoTLSv1_1;
        } else if (p == "TLSv1.2") {
            mask |= kProtoTLSv1_2;
        } else if (p == "TLSv1.3") {
            mask |= kProtoTLSv1_3;
        } else {
            ctx.invalid_value(i);
        }
    }
    if (mask == 0) ctx.fail("no usable protocol in \"ssl_protocols\" directive");
    c.protocols = mask;
}

void d_ciphers(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.ciphers) ctx.duplicate();
    c.ciphers = ctx.arg(0);
    c.ciphers_where = where(ctx);
}

void d_conf_command(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    c.conf_commands.emplace_back(ctx.arg(0), ctx.arg(1));
    c.conf_command_where.push_back(where(ctx));
}

void d_prefer_server_ciphers(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.prefer_server_ciphers) ctx.duplicate();
    c.prefer_server_ciphers = ctx.flag_arg(0);
}

void d_ecdh_curve(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.ecdh_curve) ctx.duplicate();
    c.ecdh_curve = ctx.arg(0);
    c.ecdh_where = where(ctx);
}

void d_session_cache(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.session_cache) ctx.duplicate();
    SessionCacheSpec spec;
    bool have_builtin = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a == "off" || a == "none") {
            if (ctx.nargs() != 1) ctx.invalid_value(i);
            spec.kind = a == "off" ? SessionCacheSpec::Kind::Off : SessionCacheSpec::Kind::None;
        } else if (a == "builtin" || a.rfind("builtin:", 0) == 0) {
            // A per-worker cache: resumes only on the worker that made the session.
            have_builtin = true;
            if (a.size() > 8) {
                auto n = conf::parse_int(a.substr(8));
                if (!n || *n < 1 || *n > (1 << 24)) ctx.invalid_value(i);
                spec.builtin_size = static_cast<long>(*n);
            }
            if (spec.kind != SessionCacheSpec::Kind::Shared)
                spec.kind = SessionCacheSpec::Kind::Builtin;
        } else if (a.rfind("shared:", 0) == 0) {
            std::string_view rest = a.substr(7);
            size_t colon = rest.rfind(':');
            if (colon == std::string_view::npos || colon == 0) ctx.invalid_value(i);
            std::string name(rest.substr(0, colon));
            auto size = conf::parse_size(rest.substr(colon + 1));
            if (!size || *size < 8192) {
                ctx.fail("session cache \"" + std::string(a) + "\" is too small");
            }
            auto cache = std::make_shared<SessionCache>();
            cache->zone = ctx.builder.shared_zone(ctx.node, name, *size, "ssl_session_cache",
                                                  sizeof(SessionRecord));
            spec.shared = cache;
            spec.kind = SessionCacheSpec::Kind::Shared;
        } else {
            ctx.invalid_value(i);
        }
    }
    (void)have_builtin;
    c.session_cache = std::move(spec);
}

void d_session_timeout(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.session_timeout_ms) ctx.duplicate();
    c.session_timeout_ms = ctx.time_ms_arg(0);
}

void d_session_tickets(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.session_tickets) ctx.duplicate();
    c.session_tickets = ctx.flag_arg(0);
}

void d_session_ticket_key(DirectiveContext& ctx) {
    conf(ctx).ticket_key_files.push_back(path_arg(ctx, 0));
}

void d_client_certificate(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.client_certificate) ctx.duplicate();
    c.client_certificate = path_arg(ctx, 0);
}

void d_trusted_certificate(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.trusted_certificate) ctx.duplicate();
    c.trusted_certificate = path_arg(ctx, 0);
}

void d_crl(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.crl) ctx.duplicate();
    c.crl = path_arg(ctx, 0);
}

void d_verify_client(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.verify_client) ctx.duplicate();
    const std::string& a = ctx.arg(0);
    if (a == "off") {
        c.verify_client = VerifyClient::Off;
    } else if (a == "on") {
        c.verify_client = VerifyClient::On;
    } else if (a == "optional") {
        c.verify_client = VerifyClient::Optional;
    } else if (a == "optional_no_ca") {
        c.verify_client = VerifyClient::OptionalNoCa;
    } else {
        ctx.invalid_value(0);
    }
    c.verify_where = where(ctx);
}

void d_verify_depth(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.verify_depth) ctx.duplicate();
    c.verify_depth = static_cast<int>(ctx.int_arg(0, 0, 100));
}

void d_handshake_timeout(DirectiveContext& ctx) {
    auto& c = conf(ctx);
    if (c.handshake_timeout_ms) ctx.duplicate();
    c.handshake_timeout_ms = ctx.time_ms_arg(0);
    if (*c.handshake_timeout_ms == 0) ctx.invalid_value(0);
}

template <class T>
void inherit(std::optional<T>& child, const std::optional<T>& parent) {
    if (!child && parent) child = parent;
}
template <class T>
void inherit(std::vector<T>& child, const std::vector<T>& parent) {
    if (child.empty()) child = parent;
}

void merge_server(const ModuleConf& p, ModuleConf& ch) {
    const auto& parent = static_cast<const SslServerConf&>(p);
    auto& child = static_cast<SslServerConf&>(ch);
    if (child.certificates.empty() && child.keys.empty()) {
        child.certificates = parent.certificates;
        child.keys = parent.keys;
    }
    inherit(child.protocols, parent.protocols);
    if (!child.ciphers && parent.ciphers) {
        child.ciphers = parent.ciphers;
        child.ciphers_where = parent.ciphers_where;
    }
    if (child.conf_commands.empty()) {
        child.conf_commands = parent.conf_commands;
        child.conf_command_where = parent.conf_command_where;
    }
    inherit(child.prefer_server_ciphers, parent.prefer_server_ciphers);
    if (!child.ecdh_curve && parent.ecdh_curve) {
        child.ecdh_curve = parent.ecdh_curve;
        child.ecdh_where = parent.ecdh_where;
    }
    inherit(child.session_cache, parent.session_cache);
    inherit(child.session_timeout_ms, parent.session_timeout_ms);
    inherit(child.session_tickets, parent.session_tickets);
    inherit(child.ticket_key_files, parent.ticket_key_files);
    inherit(child.client_certificate, parent.client_certificate);
    inherit(child.trusted_certificate, parent.trusted_certificate);
    inherit(child.crl, parent.crl);
    if (!child.verify_client && parent.verify_client) {
        child.verify_client = parent.verify_client;
        child.verify_where = parent.verify_where;
    }
    inherit(child.verify_depth, parent.verify_depth);
    inherit(child.handshake_timeout_ms, parent.handshake_timeout_ms);
}

// ---- the context -----------------------------------------------------------------------------

int conf_ex_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

const SslServerConf* conf_of(const SSL_CTX* ctx) {
    return static_cast<const SslServerConf*>(SSL_CTX_get_ex_data(ctx, conf_ex_index()));
}

// Keys generated by the master for generations without ticket key files: each load adds a
// fresh one in front and keeps the two before it for decryption (rotation on reload).
TicketKeyRing& generated_ring() {
    static TicketKeyRing ring;
    return ring;
}

// Accept every chain during the handshake; the verdict is given per request (as nginx).
int verify_accept(int, X509_STORE_CTX*) {
    return 1;
}

int on_servername(SSL* ssl, int*, void*) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr || name[0] == '\0') return SSL_TLSEXT_ERR_NOACK;
    const auto* listen = static_cast<const http::Listen*>(SSL_get_app_data(ssl));
    if (listen == nullptr) return SSL_TLSEXT_ERR_OK;
    char host[256];
    size_t n = 0;
    for (; name[n] != '\0' && n < sizeof(host); ++n) {
        host[n] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[n])));
    }
    if (n > 0 && host[n - 1] == '.') --n;
    const http::Server* server = listen->find_server(std::string_view(host, n));
    const auto& sc = server->srv_conf<SslServerConf>(ssl_index());
    if (sc.ctx == nullptr || sc.ctx == SSL_get_SSL_CTX(ssl)) return SSL_TLSEXT_ERR_OK;
    SSL_set_SSL_CTX(ssl, sc.ctx);
    // SSL_set_SSL_CTX switches the certificates only: take the server's verify settings and
    // options too (as nginx does).
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(sc.ctx), SSL_CTX_get_verify_callback(sc.ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(sc.ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(sc.ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(sc.ctx));
    return SSL_TLSEXT_ERR_OK;
}

int set_ticket_mac(EVP_MAC_CTX* hctx, const TicketKey& key) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(
        OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key.hmac_key.data()), key.key_length());
    params[1] =
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

int on_ticket_key(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* ectx,
                  EVP_MAC_CTX* hctx, int enc) {
    const SslServerConf* sc = conf_of(SSL_get_SSL_CTX(ssl));
    if (sc == nullptr || sc->ticket_keys.empty()) return 0;
    const auto& keys = sc->ticket_keys;
    if (enc == 1) {
        const TicketKey& k = keys.front();
        if (RAND_bytes(iv, 16) != 1) return -1;
        const EVP_CIPHER* cipher = k.size == 48 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
        if (EVP_EncryptInit_ex(ectx, cipher, nullptr, k.aes_key.data(), iv) != 1) return -1;
        if (set_ticket_mac(hctx, k) != 1) return -1;
        std::memcpy(name, k.name.data(), 16);
        return 1;
    }
    for (size_t i = 0; i < keys.size(); ++i) {
        const TicketKey& k = keys[i];
        if (std::memcmp(name, k.name.data(), 16) != 0) continue;
        const EVP_CIPHER* cipher = k.size == 48 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
        if (set_ticket_mac(hctx, k) != 1) return -1;
        if (EVP_DecryptInit_ex(ectx, cipher, nullptr, k.aes_key.data(), iv) != 1) return -1;
        return i == 0 ? 1 : 2;  // 2: an older key; issue a new ticket
    }
    return 0;  // unknown key: a full handshake
}

// ---- the shared session cache ----------------------------------------------------------------

int cache_ex_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

SessionCache* cache_of(SSL_CTX* ctx) {
    auto* c = static_cast<SessionCache*>(SSL_CTX_get_ex_data(ctx, cache_ex_index()));
    return c != nullptr && c->usable ? c : nullptr;
}

int on_new_session(SSL* ssl, SSL_SESSION* sess) {
    SessionCache* cache = cache_of(SSL_get_SSL_CTX(ssl));
    if (cache == nullptr) {
        // Tickets from SSL_CTX of another server after SNI: use the session context's cache.
        return 0;
    }
    int len = i2d_SSL_SESSION(sess, nullptr);
    if (len <= 0 || static_cast<size_t>(len) > sizeof(SessionRecord::der)) return 0;
    unsigned int id_len = 0;
    const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
    if (id_len == 0) return 0;
    ZoneKey key = zone_key(std::string_view(reinterpret_cast<const char*>(id), id_len));
    int64_t now = time(nullptr);
    ShmLock lock(cache->table.mutex());
    if (lock.owner_died()) cache->table.reset();
    cache->table.expire(2, [now](const SessionRecord& r) { return r.expires <= now; });
    bool inserted = false;
    SessionRecord* rec = cache->table.find_or_insert(key, true, inserted);
    if (rec == nullptr) return 0;
    unsigned char* p = rec->der;
    i2d_SSL_SESSION(sess, &p);
    rec->length = static_cast<uint32_t>(len);
    rec->expires = now + static_cast<int64_t>(SSL_SESSION_get_timeout(sess));
    return 0;  // we keep no reference
}

SSL_SESSION* on_get_session(SSL* ssl, const unsigned char* id, int id_len, int* copy) {
    *copy = 0;
    SessionCache* cache = cache_of(SSL_get_SSL_CTX(ssl));
    if (cache == nullptr || id_len <= 0) return nullptr;
    ZoneKey key = zone_key(std::string_view(reinterpret_cast<const char*>(id), id_len));
    unsigned char der[sizeof(SessionRecord::der)];
    uint32_t len = 0;
    {
        ShmLock lock(cache->table.mutex());
        if (lock.owner_died()) cache->table.reset();
        SessionRecord* rec = cache->table.find(key);
        if (rec == nullptr) return nullptr;
        if (rec->expires <= time(nullptr)) {
            cache->table.erase(key);
            return nullptr;
        }
        len = std::min<uint32_t>(rec->length, sizeof(der));
        std::memcpy(der, rec->der, len);
    }
    const unsigned char* p = der;
    return d2i_SSL_SESSION(nullptr, &p, static_cast<long>(len));
}

void on_remove_session(SSL_CTX* ctx, SSL_SESSION* sess) {
    SessionCache* cache = cache_of(ctx);
    if (cache == nullptr) return;
    unsigned int id_len = 0;
    const unsigned char* id = SSL_SESSION_get_id(sess, &id_len);
    if (id_len == 0) return;
    ZoneKey key = zone_key(std::string_view(reinterpret_cast<const char*>(id), id_len));
    ShmLock lock(cache->table.mutex());
    if (lock.owner_died()) cache->table.reset();
    cache->table.erase(key);
}

// ---- building a context ----------------------------------------------------------------------

std::string read_file(const PathAt& p, const std::string& what) {
    std::ifstream in(p.path, std::ios::binary);
    if (!in)
        fail_at(p.where, "cannot open " + what + " \"" + p.path + "\": " + std::strerror(errno));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void load_certificate(SSL_CTX* ctx, const PathAt& cert, const PathAt& key) {
    BIO* bio = BIO_new_file(cert.path.c_str(), "r");
    if (bio == nullptr) {
        fail_at(cert.where, "cannot load certificate \"" + cert.path + "\": " + openssl_reason());
    }
    X509* x = PEM_read_bio_X509_AUX(bio, nullptr, nullptr, nullptr);
    if (x == nullptr) {
        BIO_free(bio);
        fail_at(cert.where, "cannot load certificate \"" + cert.path + "\": " + openssl_reason());
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
        X509_free(x);
        BIO_free(bio);
        fail_at(cert.where, "cannot use certificate \"" + cert.path + "\": " + openssl_reason());
    }
    X509_free(x);
    // The rest of the file is the chain of this certificate.
    for (;;) {
        X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
        if (ca == nullptr) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                break;
            }
            BIO_free(bio);
            fail_at(cert.where,
                    "cannot load certificate chain \"" + cert.path + "\": " + openssl_reason());
        }
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            BIO_free(bio);
            fail_at(cert.where,
                    "cannot add chain certificate \"" + cert.path + "\": " + openssl_reason());
        }
    }
    BIO_free(bio);
    if (SSL_CTX_use_PrivateKey_file(ctx, key.path.c_str(), SSL_FILETYPE_PEM) != 1) {
        fail_at(key.where, "cannot load certificate key \"" + key.path + "\": " + openssl_reason());
    }
}

int proto_version(uint32_t bit) {
    switch (bit) {
        case kProtoSSLv3:
            return SSL3_VERSION;
        case kProtoTLSv1:
            return TLS1_VERSION;
        case kProtoTLSv1_1:
            return TLS1_1_VERSION;
        case kProtoTLSv1_2:
            return TLS1_2_VERSION;
        default:
            return TLS1_3_VERSION;
    }
}

constexpr const char* kDefaultCiphers =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS";

void build_context(const http::Server& server, SslServerConf& c, const Where& listen_at,
                   const std::vector<TicketKey>& generated_keys) {
    if (c.certificates.empty()) {
        fail_at(listen_at,
                "no \"ssl_certificate\" is defined for the \"listen ... ssl\" "
                "directive (server at " +
                    server.file + ":" + std::to_string(server.line) + ")");
    }
    if (c.keys.size() != c.certificates.size()) {
        const Where& w = c.keys.size() < c.certificates.size() ? c.certificates.back().where
                                                               : c.keys.back().where;
        fail_at(w, "each \"ssl_certificate\" needs one \"ssl_certificate_key\" (have " +
                       std::to_string(c.certificates.size()) + " and " +
                       std::to_string(c.keys.size()) + ")");
    }
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr)
        fail_at(c.certificates.front().where, "SSL_CTX_new() failed: " + openssl_reason());
    c.ctx = ctx;  // owned by the conf from here on, also when a check below throws
    SSL_CTX_set_ex_data(ctx, conf_ex_index(), &c);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    uint32_t protos = c.protocols.value_or(kProtoTLSv1_2 | kProtoTLSv1_3);
    const uint32_t order[] = {kProtoSSLv3, kProtoTLSv1, kProtoTLSv1_1, kProtoTLSv1_2,
                              kProtoTLSv1_3};
    int lo = 0;
    int hi = 0;
    for (uint32_t bit : order) {
        if ((protos & bit) == 0) continue;
        if (lo == 0) lo = proto_version(bit);
        hi = proto_version(bit);
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    // Holes in the list ("TLSv1 TLSv1.2") are switched off one by one.
    if ((protos & kProtoTLSv1) == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1);
    if ((protos & kProtoTLSv1_1) == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_1);
    if ((protos & kProtoTLSv1_2) == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_2);
    if ((protos & kProtoTLSv1_3) == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TLSv1_3);

    std::string ciphers = c.ciphers.value_or(kDefaultCiphers);
    if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
        fail_at(c.ciphers ? c.ciphers_where : c.certificates.front().where,
                "SSL_CTX_set_cipher_list(\"" + ciphers + "\") failed: " + openssl_reason());
    }
    if (c.prefer_server_ciphers.value_or(false)) {
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    }
    if (c.ecdh_curve && *c.ecdh_curve != "auto") {
        if (SSL_CTX_set1_groups_list(ctx, c.ecdh_curve->c_str()) != 1) {
            fail_at(c.ecdh_where, "SSL_CTX_set1_groups_list(\"" + *c.ecdh_curve +
                                      "\") failed: " + openssl_reason());
        }
    }
    SSL_CTX_set_dh_auto(ctx, 1);

    for (size_t i = 0; i < c.certificates.size(); ++i) {
        load_certificate(ctx, c.certificates[i], c.keys[i]);
    }

    if (!c.conf_commands.empty()) {
        SSL_CONF_CTX* cctx = SSL_CONF_CTX_new();
        SSL_CONF_CTX_set_flags(cctx, SSL_CONF_FLAG_FILE | SSL_CONF_FLAG_SERVER |
                                         SSL_CONF_FLAG_CERTIFICATE | SSL_CONF_FLAG_SHOW_ERRORS);
        SSL_CONF_CTX_set_ssl_ctx(cctx, ctx);
        for (size_t i = 0; i < c.conf_commands.size(); ++i) {
            const auto& [name, value] = c.conf_commands[i];
            if (SSL_CONF_cmd(cctx, name.c_str(), value.c_str()) <= 0) {
                SSL_CONF_CTX_free(cctx);
                fail_at(c.conf_command_where[i], "SSL_CONF_cmd(\"" + name + "\", \"" + value +
                                                     "\") failed: " + openssl_reason());
            }
        }
        SSL_CONF_CTX_finish(cctx);
        SSL_CONF_CTX_free(cctx);
    }

    // A session only resumes in the server (and certificate setup) that made it.
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned int sid_len = 0;
    // The same certificates and client verification make the same context, also in another
    // instance sharing ssl_session_ticket_key files (as nginx, which hashes the certificates).
    std::string sid_src = "tollgate";
    for (const auto& p : c.certificates) sid_src += "|" + p.path;
    if (c.client_certificate) sid_src += "|ca=" + c.client_certificate->path;
    sid_src +=
        "|verify=" + std::to_string(static_cast<int>(c.verify_client.value_or(VerifyClient::Off)));
    EVP_Digest(sid_src.data(), sid_src.size(), sid, &sid_len, EVP_sha256(), nullptr);
    SSL_CTX_set_session_id_context(ctx, sid,
                                   std::min<unsigned int>(sid_len, SSL_MAX_SID_CTX_LENGTH));

    SSL_CTX_set_timeout(ctx, static_cast<long>(c.session_timeout_ms.value_or(300000) / 1000));
    SessionCacheSpec cache = c.session_cache.value_or(SessionCacheSpec{});
    switch (cache.kind) {
        case SessionCacheSpec::Kind::Off:
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            break;
        case SessionCacheSpec::Kind::None:
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            break;
        case SessionCacheSpec::Kind::Builtin:
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
            SSL_CTX_sess_set_cache_size(ctx, cache.builtin_size);
            break;
        case SessionCacheSpec::Kind::Shared: {
            SessionCache& sc = *cache.shared;
            if (!sc.usable) {
                bool fresh = !sc.zone->reused();
                sc.usable = sc.table.attach(sc.zone->data(), sc.zone->data_size(), fresh);
                if (!sc.usable && !fresh) {
                    // A zone whose layout changed under the same tag: start it over.
                    sc.usable = sc.table.attach(sc.zone->data(), sc.zone->data_size(), true);
                }
                if (!sc.usable) {
                    fail_at(c.certificates.front().where,
                            "ssl_session_cache zone \"" + sc.zone->name() + "\" is too small");
                }
            }
            SSL_CTX_set_ex_data(ctx, cache_ex_index(), cache.shared.get());
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
                                                    SSL_SESS_CACHE_NO_AUTO_CLEAR);
            SSL_CTX_sess_set_new_cb(ctx, on_new_session);
            SSL_CTX_sess_set_get_cb(ctx, on_get_session);
            SSL_CTX_sess_set_remove_cb(ctx, on_remove_session);
            break;
        }
    }

    if (!c.session_tickets.value_or(true)) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    } else {
        if (!c.ticket_key_files.empty()) {
            for (const PathAt& p : c.ticket_key_files) {
                std::string bytes = read_file(p, "ssl_session_ticket_key file");
                TicketKey k;
                std::string error;
                if (!parse_ticket_key(bytes, k, error)) {
                    fail_at(p.where, "ssl_session_ticket_key \"" + p.path + "\" " + error);
                }
                c.ticket_keys.push_back(k);
            }
        } else {
            c.ticket_keys = generated_keys;
        }
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    }

    VerifyClient verify = c.verify_client.value_or(VerifyClient::Off);
    if (verify != VerifyClient::Off) {
        if (!c.client_certificate && !c.trusted_certificate &&
            verify != VerifyClient::OptionalNoCa) {
            fail_at(c.verify_where, "no ssl_client_certificate for ssl_verify_client");
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
        SSL_CTX_set_verify_depth(ctx, c.verify_depth.value_or(1));
    }
    if (c.client_certificate) {
        const PathAt& p = *c.client_certificate;
        if (SSL_CTX_load_verify_locations(ctx, p.path.c_str(), nullptr) != 1) {
            fail_at(p.where,
                    "cannot load client certificate \"" + p.path + "\": " + openssl_reason());
        }
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(p.path.c_str());
        if (names == nullptr) {
            fail_at(p.where, "cannot load client CA list \"" + p.path + "\": " + openssl_reason());
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (c.trusted_certificate) {
        const PathAt& p = *c.trusted_certificate;
        if (SSL_CTX_load_verify_locations(ctx, p.path.c_str(), nullptr) != 1) {
            fail_at(p.where,
                    "cannot load trusted certificate \"" + p.path + "\": " + openssl_reason());
        }
    }
    if (c.crl) {
        const PathAt& p = *c.crl;
        X509_STORE* store = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (lookup == nullptr ||
            X509_load_crl_file(lookup, p.path.c_str(), X509_FILETYPE_PEM) <= 0) {
            fail_at(p.where, "cannot load CRL \"" + p.path + "\": " + openssl_reason());
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    ERR_clear_error();
}

void check(GenerationBuilder& b) {
    http::HttpConfig& h = *b.http();
    size_t idx = ssl_index();
    bool any = false;
    for (const http::Listen& l : h.listens) any = any || l.spec.ssl;
    if (!any) return;
    // One fresh key per load; the ring keeps the previous loads' keys for decryption.
    TicketKey fresh;
    if (RAND_bytes(fresh.name.data(), 16) != 1 || RAND_bytes(fresh.hmac_key.data(), 32) != 1 ||
        RAND_bytes(fresh.aes_key.data(), 32) != 1) {
        throw conf::ConfigError(h.listens.front().spec.file, h.listens.front().spec.line,
                                "RAND_bytes() failed: " + openssl_reason());
    }
    generated_ring().rotate(fresh, 3);
    for (http::Listen& l : h.listens) {
        if (!l.spec.ssl) continue;
        Where at{l.spec.file, l.spec.line};
        for (const http::Server* s : l.servers) {
            auto& c = const_cast<SslServerConf&>(s->srv_conf<SslServerConf>(idx));
            if (c.ctx == nullptr) build_context(*s, c, at, generated_ring().keys());
        }
        const auto& dc = l.default_server->srv_conf<SslServerConf>(idx);
        l.tls_ctx = dc.ctx;
        l.tls_handshake_timeout_ms = dc.handshake_timeout_ms.value_or(60000);
    }
}

// ---- the per-request verdict -----------------------------------------------------------------

// Errors optional_no_ca tolerates: the chain just does not lead to a CA we know.
bool ca_error(long rc) {
    return rc == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           rc == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           rc == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

Verdict verify_client(http::Request& r, const void* data) {
    const auto& c = *static_cast<const SslServerConf*>(data);
    auto* ssl = static_cast<SSL*>(r.conn.tls);
    if (ssl == nullptr) return Verdict::Next;
    if (c.ctx != nullptr && SSL_get_SSL_CTX(ssl) != c.ctx &&
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != nullptr) {
        // The handshake was made for another server (SNI) than Host names: its client
        // certificate policy was not applied. As nginx: 421.
        return r.respond_error(421, "Misdirected Request");
    }
    VerifyClient mode = c.verify_client.value_or(VerifyClient::Off);
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr) {
        if (mode == VerifyClient::On) {
            LOG_INFO("client sent no required SSL certificate, client: %.*s",
                     static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
            return r.respond_error(400, "No required SSL certificate was sent");
        }
        return Verdict::Next;
    }
    long rc = SSL_get_verify_result(ssl);
    if (rc != X509_V_OK && !(mode == VerifyClient::OptionalNoCa && ca_error(rc))) {
        LOG_INFO("client SSL certificate verify error: (%ld:%s), client: %.*s", rc,
                 X509_verify_cert_error_string(rc), static_cast<int>(r.conn.remote_addr.size()),
                 r.conn.remote_addr.data());
        return r.respond_error(400, "The SSL certificate error");
    }
    return Verdict::Next;
}

void attach(LocationBuilder& lb) {
    const auto& c = lb.server().srv_conf<SslServerConf>(ssl_index());
    if (c.ctx == nullptr) return;
    // Only where the Host server differs from the SNI one could matter; the check is cheap.
    if (c.verify_client.value_or(VerifyClient::Off) != VerifyClient::Off) {
        lb.add(Phase::PostRead, verify_client, &c);
    }
}

// ---- variables -------------------------------------------------------------------------------

using Out = std::string_view&;

SSL* ssl_of(http::Request& r) {
    return static_cast<SSL*>(r.conn.tls);
}

bool v_protocol(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    if (s == nullptr) return false;
    out = SSL_get_version(s);
    return true;
}

bool v_cipher(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    if (s == nullptr) return false;
    const char* n = SSL_get_cipher_name(s);
    out = n != nullptr ? n : "";
    return true;
}

bool v_server_name(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    if (s == nullptr) return false;
    const char* n = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (n == nullptr) return false;
    out = r.copy(n);
    return true;
}

bool v_session_reused(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    if (s == nullptr) return false;
    out = SSL_session_reused(s) ? "r" : ".";
    return true;
}

std::string_view hex(http::Request& r, const unsigned char* p, size_t n, bool upper) {
    static constexpr char kLower[] = "0123456789abcdef";
    static constexpr char kUpper[] = "0123456789ABCDEF";
    const char* digits = upper ? kUpper : kLower;
    std::pmr::string s(r.arena);
    s.resize(n * 2);
    for (size_t i = 0; i < n; ++i) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    return r.copy(s);
}

bool v_session_id(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    SSL_SESSION* sess = s != nullptr ? SSL_get_session(s) : nullptr;
    if (sess == nullptr) return false;
    unsigned int len = 0;
    const unsigned char* id = SSL_SESSION_get_id(sess, &len);
    out = hex(r, id, len, false);
    return true;
}

bool v_client_verify(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    if (s == nullptr) return false;
    if (SSL_get0_peer_certificate(s) == nullptr) {
        out = "NONE";
        return true;
    }
    long rc = SSL_get_verify_result(s);
    if (rc == X509_V_OK) {
        out = "SUCCESS";
        return true;
    }
    std::pmr::string t(r.arena);
    t = "FAILED:";
    t += X509_verify_cert_error_string(rc);
    out = r.copy(t);
    return true;
}

// RFC 2253 text of a name, as nginx's $ssl_client_s_dn.
bool name_text(http::Request& r, X509_NAME* name, Out out) {
    if (name == nullptr) return false;
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr) return false;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(bio);
        return false;
    }
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    out = r.copy(std::string_view(data, static_cast<size_t>(len)));
    BIO_free(bio);
    return true;
}

bool v_client_s_dn(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    X509* cert = s != nullptr ? SSL_get0_peer_certificate(s) : nullptr;
    return cert != nullptr && name_text(r, X509_get_subject_name(cert), out);
}

bool v_client_i_dn(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    X509* cert = s != nullptr ? SSL_get0_peer_certificate(s) : nullptr;
    return cert != nullptr && name_text(r, X509_get_issuer_name(cert), out);
}

bool v_client_serial(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    X509* cert = s != nullptr ? SSL_get0_peer_certificate(s) : nullptr;
    if (cert == nullptr) return false;
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    if (bn == nullptr) return false;
    char* text = BN_bn2hex(bn);
    BN_free(bn);
    if (text == nullptr) return false;
    out = r.copy(text);
    OPENSSL_free(text);
    return true;
}

bool v_client_fingerprint(http::Request& r, std::string_view, uintptr_t, Out out) {
    SSL* s = ssl_of(r);
    X509* cert = s != nullptr ? SSL_get0_peer_certificate(s) : nullptr;
    if (cert == nullptr) return false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_digest(cert, EVP_sha1(), md, &len) != 1) return false;
    out = hex(r, md, len, false);
    return true;
}

void register_variables(VariableRegistry& reg) {
    reg.add("ssl_protocol", v_protocol);
    reg.add("ssl_cipher", v_cipher);
    reg.add("ssl_server_name", v_server_name);
    reg.add("ssl_session_reused", v_session_reused);
    reg.add("ssl_session_id", v_session_id);
    reg.add("ssl_client_verify", v_client_verify);
    reg.add("ssl_client_s_dn", v_client_s_dn);
    reg.add("ssl_client_i_dn", v_client_i_dn);
    reg.add("ssl_client_serial", v_client_serial);
    reg.add("ssl_client_fingerprint", v_client_fingerprint);
}

constexpr uint32_t kHttpServer = kHttpContext | kServerContext;

constexpr Directive kDirectives[] = {
    {"ssl_certificate", kHttpServer, 1, 1, false, ConfScope::Server, d_certificate},
    {"ssl_certificate_key", kHttpServer, 1, 1, false, ConfScope::Server, d_certificate_key},
    {"ssl_protocols", kHttpServer, 1, 6, false, ConfScope::Server, d_protocols},
    {"ssl_ciphers", kHttpServer, 1, 1, false, ConfScope::Server, d_ciphers},
    {"ssl_conf_command", kHttpServer, 2, 2, false, ConfScope::Server, d_conf_command},
    {"ssl_prefer_server_ciphers", kHttpServer, 1, 1, false, ConfScope::Server,
     d_prefer_server_ciphers},
    {"ssl_ecdh_curve", kHttpServer, 1, 1, false, ConfScope::Server, d_ecdh_curve},
    {"ssl_session_cache", kHttpServer, 1, 2, false, ConfScope::Server, d_session_cache},
    {"ssl_session_timeout", kHttpServer, 1, 1, false, ConfScope::Server, d_session_timeout},
    {"ssl_session_tickets", kHttpServer, 1, 1, false, ConfScope::Server, d_session_tickets},
    {"ssl_session_ticket_key", kHttpServer, 1, 1, false, ConfScope::Server, d_session_ticket_key},
    {"ssl_client_certificate", kHttpServer, 1, 1, false, ConfScope::Server, d_client_certificate},
    {"ssl_trusted_certificate", kHttpServer, 1, 1, false, ConfScope::Server, d_trusted_certificate},
    {"ssl_verify_client", kHttpServer, 1, 1, false, ConfScope::Server, d_verify_client},
    {"ssl_verify_depth", kHttpServer, 1, 1, false, ConfScope::Server, d_verify_depth},
    {"ssl_crl", kHttpServer, 1, 1, false, ConfScope::Server, d_crl},
    {"ssl_handshake_timeout", kHttpServer, 1, 1, false, ConfScope::Server, d_handshake_timeout},
};

}  // namespace

extern const Module ssl_module = {
    .name = "ssl",
    .directives = kDirectives,
    .create_server = [] { return std::unique_ptr<ModuleConf>(new SslServerConf()); },
    .merge_server = merge_server,
    .register_variables = register_variables,
    .check = check,
    .attach_location = attach,
};

namespace {
size_t ssl_index() {
    static const size_t index = module_index(ssl_module);
    return index;
}
}  // namespace

}  // namespace tollgate
