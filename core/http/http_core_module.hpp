// The "http_core" module: the http/server/location tree and the connection limits.
//   http { }                                  main
//   server { }                                http
//   listen ADDR[:PORT] [default_server] [backlog=N] [ipv6only=on|off]   server
//   server_name NAME ...                      server      (exact, *.wildcard, wildcard.*, ~regex)
//   location [=|^~|~|~*] URI { } | @NAME { }  server
//   client_header_timeout TIME                http, server        (60s)
//   large_client_header_buffers N SIZE        http, server        (4 8k)
//   client_max_body_size SIZE                 http, server, location (1m; 0 = unlimited)
//   client_body_timeout TIME                  http, server, location (60s)
//   send_timeout TIME                         http, server, location (60s)
//   keepalive_timeout TIME                    http, server, location (75s; 0 disables keepalive)
//   keepalive_requests N                      http, server, location (1000)
//   error_page CODE ... [=[CODE]] URI         http, server, location
//   types { TYPE EXT ...; }                   http, server, location
//   default_type TYPE                         http, server, location (text/plain)
//   server_tokens on|off                      http, server, location (on: "Server: tollgate/V")
//   satisfy all | any                         http, server, location (all): how the Access
//                                             checks combine, as nginx (core/http/phases.hpp)
//   internal                                  location (not inherited: a client request
//                                             for it gets 404; internal redirects and
//                                             subrequests may use it)
//   sendfile, tcp_nopush, tcp_nodelay on|off; types_hash_max_size, types_hash_bucket_size,
//   server_names_hash_max_size, server_names_hash_bucket_size, client_header_buffer_size N
//                                             accepted for nginx configs; tollgate always sends
//                                             files with sendfile(), sets TCP_NODELAY, and sizes
//                                             its hashes and header buffers itself
// Phase: none of its own; the worker reads these to drive connections.
// Variables: see core/http/http_variables.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/http/http_config.hpp"
#include "core/http/request_head.hpp"
#include "core/variables.hpp"

namespace tollgate::http {

struct HttpCoreServerConf : ModuleConf {
    std::vector<ListenSpec> listens;
    std::vector<std::string> names;
    std::optional<uint64_t> client_header_timeout_ms;
    std::optional<HeadLimits> header_limits;
};

struct ErrorPage {
    std::vector<int> codes;
    int override_status = -1;  // -1: keep the original status; 0: "=" (the target's status)
    ComplexValue uri;
};

using MimeTypes = std::unordered_map<std::string, std::string>;  // extension -> type

struct HttpCoreLocConf : ModuleConf {
    std::optional<uint64_t> client_max_body_size;
    std::optional<uint64_t> client_body_timeout_ms;
    std::optional<uint64_t> send_timeout_ms;
    std::optional<uint64_t> keepalive_timeout_ms;
    std::optional<uint64_t> keepalive_requests;
    std::optional<std::vector<ErrorPage>> error_pages;
    std::shared_ptr<const MimeTypes> types;
    std::optional<std::string> default_type;
    std::optional<bool> server_tokens;
    std::optional<bool> satisfy_any;  // satisfy any (default all)
    bool internal = false;            // not inherited

    // The Content-Type for a file name, from its extension, else default_type.
    std::string_view type_for(std::string_view filename) const;
    const ErrorPage* error_page_for(int status) const;
};

size_t http_core_index();

// Merged defaults for a server (nginx's values where unset).
uint64_t client_header_timeout_ms(const HttpCoreServerConf& c);
HeadLimits header_limits(const HttpCoreServerConf& c);

}  // namespace tollgate::http

namespace tollgate {
extern const Module http_core_module;
}

inline size_t tollgate::http::http_core_index() {
    static const size_t index = module_index(http_core_module);
    return index;
}
