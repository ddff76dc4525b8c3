// TLS to upstreams: proxy_pass https://..., with nginx's proxy_ssl_* directives. The client
// SSL_CTX is built per location at load, in the master (client keys are read as root); the
// worker connects through EventLoop::connect_tls and resumes sessions per peer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/event_loop.hpp"
#include "core/module.hpp"

namespace tollgate::proxy {

struct ProxyLocConf;

// A client context, freed with the generation.
struct ClientTlsContext {
    ~ClientTlsContext();
    void* ctx = nullptr;  // SSL_CTX*
};

struct ProxySslSettings {
    std::optional<bool> verify;                  // proxy_ssl_verify (off)
    std::optional<std::string> trusted;          // proxy_ssl_trusted_certificate
    std::optional<bool> server_name;             // proxy_ssl_server_name (off)
    std::optional<std::string> name;             // proxy_ssl_name ($proxy_host)
    std::optional<uint32_t> protocols;           // proxy_ssl_protocols (TLSv1.2 TLSv1.3)
    std::optional<std::string> ciphers;          // proxy_ssl_ciphers (DEFAULT)
    std::optional<std::string> certificate;      // proxy_ssl_certificate
    std::optional<std::string> certificate_key;  // proxy_ssl_certificate_key
    std::optional<bool> session_reuse;           // proxy_ssl_session_reuse (on)
    std::optional<int> verify_depth;             // proxy_ssl_verify_depth (1)
    std::string file;                            // where the settings were last written
    int line = 0;
    std::shared_ptr<ClientTlsContext> built;  // made in check for https locations
};

void proxy_ssl_verify(DirectiveContext& ctx);
void proxy_ssl_trusted_certificate(DirectiveContext& ctx);
void proxy_ssl_server_name(DirectiveContext& ctx);
void proxy_ssl_name(DirectiveContext& ctx);
void proxy_ssl_protocols(DirectiveContext& ctx);
void proxy_ssl_ciphers(DirectiveContext& ctx);
void proxy_ssl_certificate(DirectiveContext& ctx);
void proxy_ssl_certificate_key(DirectiveContext& ctx);
void proxy_ssl_session_reuse(DirectiveContext& ctx);
void proxy_ssl_verify_depth(DirectiveContext& ctx);

// Fills the child's unset settings from the parent.
void merge_ssl(const ProxySslSettings& parent, ProxySslSettings& child);
// Builds the client context of an https location (throws conf::ConfigError at the proxy_pass
// or the directive at fault).
void build_ssl(ProxyLocConf& c);
// How a request of this location connects (valid while the generation lives). For a
// proxy_pass with variables, `host` is the host of the request's URL (the SNI and the name
// verified when there is no proxy_ssl_name); it must live as long as the connect.
TlsClientOptions tls_options(const ProxyLocConf& c, std::string_view host = {});

}  // namespace tollgate::proxy
