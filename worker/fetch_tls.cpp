// The TLS client context of core/http/fetch.hpp (OpenSSL lives on this side of the line).
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/http/fetch.hpp"

namespace tollgate::http {

namespace {

std::string openssl_reason() {
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown error";
    if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

}  // namespace

FetchTlsContext::~FetchTlsContext() {
    if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

std::shared_ptr<FetchTlsContext> FetchTlsContext::make(bool verify, const std::string& ca_file,
                                                       std::string& error) {
    std::shared_ptr<FetchTlsContext> c(new FetchTlsContext());
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) {
        error = "SSL_CTX_new() failed: " + openssl_reason();
        return nullptr;
    }
    c->ctx_ = ctx;
    c->verify_ = verify;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (verify) {
        int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                 : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
        if (ok != 1) {
            error = "cannot load trusted certificate \"" + ca_file + "\": " + openssl_reason();
            return nullptr;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_verify_depth(ctx, 9);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    ERR_clear_error();
    return c;
}

}  // namespace tollgate::http
