#include "modules/proxy/proxy_ssl.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/config/error.hpp"
#include "core/generation.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate::proxy {

namespace {

ProxySslSettings& settings(DirectiveContext& ctx) {
    auto& s = ctx.conf<ProxyLocConf>().ssl;
    s.file = *ctx.node.file;
    s.line = ctx.node.line;
    return s;
}

template <class T>
void set_once(DirectiveContext& ctx, std::optional<T>& field, T value) {
    if (field) ctx.duplicate();
    field = std::move(value);
}

std::string openssl_reason() {
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown error";
    if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

constexpr uint32_t kTLSv1 = 1, kTLSv1_1 = 2, kTLSv1_2 = 4, kTLSv1_3 = 8;

}  // namespace

ClientTlsContext::~ClientTlsContext() {
    if (ctx != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx));
}

void proxy_ssl_verify(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).verify, ctx.flag_arg(0));
}
void proxy_ssl_trusted_certificate(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).trusted, ctx.builder.conf_dir_path(ctx.arg(0)));
}
void proxy_ssl_server_name(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).server_name, ctx.flag_arg(0));
}
void proxy_ssl_name(DirectiveContext& ctx) {
    if (ctx.arg(0).find('$') != std::string::npos) {
        ctx.fail("variables in \"proxy_ssl_name\" are not supported");
    }
    set_once(ctx, settings(ctx).name, ctx.arg(0));
}
void proxy_ssl_protocols(DirectiveContext& ctx) {
    uint32_t mask = 0;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        const std::string& p = ctx.arg(i);
        if (p == "TLSv1") {
            mask |= kTLSv1;
        } else if (p == "TLSv1.1") {
            mask |= kTLSv1_1;
        } else if (p == "TLSv1.2") {
            mask |= kTLSv1_2;
        } else if (p == "TLSv1.3") {
            mask |= kTLSv1_3;
        } else if (p != "SSLv2" && p != "SSLv3") {
            ctx.invalid_value(i);
        }
    }
    if (mask == 0) ctx.fail("no usable protocol in \"proxy_ssl_protocols\" directive");
    set_once(ctx, settings(ctx).protocols, mask);
}
void proxy_ssl_ciphers(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).ciphers, ctx.arg(0));
}
void proxy_ssl_certificate(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).certificate, ctx.builder.conf_dir_path(ctx.arg(0)));
}
void proxy_ssl_certificate_key(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).certificate_key, ctx.builder.conf_dir_path(ctx.arg(0)));
}
void proxy_ssl_session_reuse(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).session_reuse, ctx.flag_arg(0));
}
void proxy_ssl_verify_depth(DirectiveContext& ctx) {
    set_once(ctx, settings(ctx).verify_depth, static_cast<int>(ctx.int_arg(0, 0, 100)));
}

void merge_ssl(const ProxySslSettings& parent, ProxySslSettings& child) {
    auto inherit = [](auto& c, const auto& p) {
        if (!c && p) c = p;
    };
    inherit(child.verify, parent.verify);
    inherit(child.trusted, parent.trusted);
    inherit(child.server_name, parent.server_name);
    inherit(child.name, parent.name);
    inherit(child.protocols, parent.protocols);
    inherit(child.ciphers, parent.ciphers);
    inherit(child.certificate, parent.certificate);
    inherit(child.certificate_key, parent.certificate_key);
    inherit(child.session_reuse, parent.session_reuse);
    inherit(child.verify_depth, parent.verify_depth);
    if (child.file.empty()) {
        child.file = parent.file;
        child.line = parent.line;
    }
}

void build_ssl(ProxyLocConf& c) {
    ProxySslSettings& s = c.ssl;
    auto fail = [&](const std::string& message) {
        // Errors point at the proxy_pass that needs the context.
        throw conf::ConfigError(c.pass_file, c.pass_line, message);
    };
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) fail("SSL_CTX_new() failed: " + openssl_reason());
    s.built = std::make_shared<ClientTlsContext>();
    s.built->ctx = ctx;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    uint32_t protos = s.protocols.value_or(kTLSv1_2 | kTLSv1_3);
    int lo = (protos & kTLSv1)     ? TLS1_VERSION
             : (protos & kTLSv1_1) ? TLS1_1_VERSION
             : (protos & kTLSv1_2) ? TLS1_2_VERSION
                                   : TLS1_3_VERSION;
    int hi = (protos & kTLSv1_3)   ? TLS1_3_VERSION
             : (protos & kTLSv1_2) ? TLS1_2_VERSION
             : (protos & kTLSv1_1) ? TLS1_1_VERSION
                                   : TLS1_VERSION;
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    if (s.ciphers && SSL_CTX_set_cipher_list(ctx, s.ciphers->c_str()) != 1) {
        fail("SSL_CTX_set_cipher_list(\"" + *s.ciphers + "\") failed: " + openssl_reason());
    }
    if (s.certificate || s.certificate_key) {
        if (!s.certificate || !s.certificate_key) {
            fail("\"proxy_ssl_certificate\" and \"proxy_ssl_certificate_key\" go together");
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, s.certificate->c_str()) != 1) {
            fail("cannot load certificate \"" + *s.certificate + "\": " + openssl_reason());
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, s.certificate_key->c_str(), SSL_FILETYPE_PEM) != 1) {
            fail("cannot load certificate key \"" + *s.certificate_key + "\": " + openssl_reason());
        }
    }
    if (s.verify.value_or(false)) {
        if (!s.trusted) fail("no proxy_ssl_trusted_certificate for proxy_ssl_verify");
        if (SSL_CTX_load_verify_locations(ctx, s.trusted->c_str(), nullptr) != 1) {
            fail("cannot load trusted certificate \"" + *s.trusted + "\": " + openssl_reason());
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_verify_depth(ctx, s.verify_depth.value_or(1));
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    // nginx: $proxy_host without the port; with variables, the host of each request's URL.
    if (!s.name && !c.pass_dynamic) s.name = c.pass_host;
    ERR_clear_error();
}

TlsClientOptions tls_options(const ProxyLocConf& c, std::string_view host) {
    TlsClientOptions o;
    o.ssl_ctx = c.ssl.built ? c.ssl.built->ctx : nullptr;
    std::string_view name = c.ssl.name       ? std::string_view(*c.ssl.name)
                            : c.pass_dynamic ? host
                                             : std::string_view(c.pass_host);
    if (c.ssl.server_name.value_or(false)) o.server_name = name;
    if (c.ssl.verify.value_or(false)) o.verify_name = name;
    o.reuse_session = c.ssl.session_reuse.value_or(true);
    return o;
}

}  // namespace tollgate::proxy
