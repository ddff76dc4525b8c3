// The "proxy" module: reverse proxying to upstream servers over HTTP/1.1.
//   upstream NAME { server ADDR[:PORT] [weight=N] [max_fails=N] [fail_timeout=T] [max_conns=N]
//                   [backup] [down]; keepalive N; keepalive_timeout T; keepalive_requests N;
//                   least_conn | hash KEY [consistent] | ip_hash | random [two [least_conn]];
//                   circuit_breaker [failures=N] [cooldown=T] [probes=N] [successes=N];
//                   health_check [uri=URI] [interval=T] [timeout=T] [fails=N] [passes=N]
//                   [status=LO-HI]; }                                                    http
//   (balancer.cpp, peer_state.cpp, health_check.cpp: server state shared by all workers)
//   proxy_pass http://HOST[:PORT][/URI] | http://UPSTREAM[/URI]                         location
//   (or https://, with variables too: TLS to the upstream, with proxy_ssl_verify,
//   proxy_ssl_trusted_certificate, proxy_ssl_verify_depth, proxy_ssl_server_name,
//   proxy_ssl_name, proxy_ssl_protocols, proxy_ssl_ciphers, proxy_ssl_certificate(_key),
//   proxy_ssl_session_reuse: proxy_ssl.cpp)
//   proxy_set_header NAME VALUE; proxy_hide_header NAME; proxy_pass_header NAME;
//   proxy_http_version 1.0|1.1 (1.1); proxy_connect_timeout, proxy_send_timeout,
//   proxy_read_timeout T (60s); proxy_buffering on|off; proxy_buffer_size SIZE (8k: the
//   largest response head); proxy_buffers N SIZE (8 8k: read-ahead per request);
//   proxy_request_buffering off (the only value: bodies always stream, see proxy_config.cpp);
//   resolver ADDR ... [valid=T] [ipv6=on|off]; resolver_timeout T (30s)      http, server, location
//   proxy_next_upstream COND ... (error timeout); proxy_next_upstream_tries N (0);
//   proxy_next_upstream_timeout T (0); proxy_next_upstream_backoff base=T [cap=T]
//   [jitter=full|none] (off)                                                 http, server, location
//   retry_budget ratio=R [min=N/s] [window=T] (off)                                  upstream
//   (retries: retry.hpp)
// Phase: Content (where proxy_pass is set). Bodies stream both ways with backpressure; nothing
// is buffered whole. Variables: $upstream_addr $upstream_status $upstream_response_time
// $upstream_connect_time $upstream_header_time $upstream_http_NAME $proxy_host
// $proxy_add_x_forwarded_for.
// Where nginx differs: proxy_http_version defaults to 1.1 (keepalive pools work without extra
// directives) and X-Forwarded-For/-Proto/-Host are sent by default (proxy_set_header overrides).
#include "core/generation.hpp"
#include "modules/proxy/proxy.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate {

namespace {

void attach(LocationBuilder& lb) {
    const auto& c = lb.conf<proxy::ProxyLocConf>(proxy::proxy_index());
    if (c.pass) lb.add(Phase::Content, proxy::proxy_handler, &c);
}

}  // namespace

extern const Module proxy_module = {
    .name = "proxy",
    .directives = proxy::directives(),
    .create_main = [] { return std::unique_ptr<ModuleConf>(new proxy::ProxyMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new proxy::ProxyLocConf()); },
    .merge_location = proxy::merge_location,
    .register_variables = proxy::register_variables,
    .check = proxy::check,
    .attach_location = attach,
    .init_worker = proxy::init_worker,
    .exit_worker = proxy::exit_worker,
};

size_t proxy::proxy_index() {
    static const size_t index = module_index(proxy_module);
    return index;
}

}  // namespace tollgate
