// The proxy module's configuration: upstream groups and per-location proxy settings.
// Built once at load; the runtime (proxy.cpp) reads it and never the syntax.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/module.hpp"
#include "core/variables.hpp"
#include "modules/proxy/peer_state.hpp"
#include "modules/proxy/proxy_ssl.hpp"
#include "modules/proxy/retry.hpp"

namespace tollgate::proxy {

struct UpstreamServer {
    std::string addr_text;  // "127.0.0.1:8081": $upstream_addr
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    int weight = 1;
    int max_fails = 1;
    uint64_t fail_timeout_ms = 10000;
    int max_conns = 0;  // requests in flight at once, all workers; 0: no limit
    bool backup = false;
    bool down = false;
};

// The balancing method of an upstream (balancer.hpp).
enum class BalanceMethod : uint8_t { RoundRobin, LeastConn, Hash, IpHash, Random };

class KetamaRing;

struct Upstream {
    std::string name;
    std::vector<UpstreamServer> servers;
    size_t keepalive = 0;  // idle connections kept per worker; 0: none
    uint64_t keepalive_timeout_ms = 60000;
    uint64_t keepalive_requests = 1000;
    RetryBudgetConf retry_budget;  // retry_budget (retry.hpp)
    bool retry_budget_set = false;
    bool implicit = false;  // made for a proxy_pass host:port, not an upstream block
    BalanceMethod method = BalanceMethod::RoundRobin;
    bool method_set = false;
    ComplexValue hash_key;                   // hash KEY
    bool hash_consistent = false;            // hash KEY consistent: the ring below
    std::shared_ptr<const KetamaRing> ring;  // built at the end of the block
    bool random_two = false;                 // random two [least_conn]
    BreakerConf breaker;
    HealthCheckConf health;
    std::shared_ptr<SharedZone> zone;  // the servers' shared state (peer_state.hpp)
    size_t index = 0;                  // position in ProxyMainConf::upstreams
    std::string file;
    int line = 0;
};

struct ProxyMainConf : ModuleConf {
    std::vector<std::unique_ptr<Upstream>> upstreams;
};

// resolver ADDRESS ... [valid=TIME] [ipv6=on|off]
struct ResolverConf {
    std::vector<std::string> servers;
    std::optional<uint64_t> valid_ms;  // overrides the records' TTL
    bool ipv6 = true;
};

struct HeaderSetting {
    std::string name;
    ComplexValue value;
};

struct ProxyLocConf : ModuleConf {
    // proxy_pass (not inherited, as nginx)
    bool pass = false;
    std::string pass_host;  // host or upstream name as written
    uint16_t pass_port = 80;
    bool pass_port_given = false;
    std::string proxy_host;  // $proxy_host: the Host header sent by default
    bool has_uri = false;
    std::string uri;                     // the URI part of proxy_pass
    std::string location_prefix;         // replaced by `uri` in the request's $uri
    const Upstream* upstream = nullptr;  // resolved in check()
    bool pass_dynamic = false;           // the URL has variables: evaluated per request
    ComplexValue pass_value;
    std::string pass_file;
    int pass_line = 0;
    bool pass_ssl = false;  // proxy_pass https://: TLS to the upstream (proxy_ssl.hpp)
    ProxySslSettings ssl;

    std::optional<std::vector<HeaderSetting>> set_headers;
    std::optional<std::vector<std::string>> hide_headers;  // lowercase
    std::optional<std::vector<std::string>> pass_headers;  // lowercase
    std::optional<int> http_version_minor;                 // 1.1 by default
    std::optional<uint64_t> connect_timeout_ms;
    std::optional<uint64_t> send_timeout_ms;
    std::optional<uint64_t> read_timeout_ms;
    std::optional<bool> buffering;
    std::optional<uint64_t> buffer_size;
    std::optional<uint64_t> buffers_total;
    std::shared_ptr<const ResolverConf> resolver;
    std::optional<uint64_t> resolver_timeout_ms;
    RetryLocConf retry;  // proxy_next_upstream* (retry.hpp)

    uint64_t resolver_timeout() const { return resolver_timeout_ms.value_or(30000); }

    uint64_t connect_timeout() const { return connect_timeout_ms.value_or(60000); }
    uint64_t send_timeout() const { return send_timeout_ms.value_or(60000); }
    uint64_t read_timeout() const { return read_timeout_ms.value_or(60000); }
    // The largest response head accepted (nginx: proxy_buffer_size).
    uint64_t head_limit() const { return buffer_size.value_or(8192); }
    // How much of the response body is read ahead of the client (nginx: proxy_buffers when
    // buffering, proxy_buffer_size when not).
    uint64_t read_ahead() const {
        return buffering.value_or(true) ? buffers_total.value_or(8 * 8192) : head_limit();
    }
};

// The module's directives, merge and load-time check (proxy_config.cpp).
std::span<const Directive> directives();
void merge_location(const ModuleConf& parent, ModuleConf& child);
void check(GenerationBuilder& builder);

// The module's index (module.cpp).
size_t proxy_index();

}  // namespace tollgate::proxy
