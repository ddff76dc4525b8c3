// Active health checks (`health_check` in an upstream block): one prober for all workers.
//
// Every worker ticks once per interval for each checked upstream; at each tick it tries to take
// (or renew) the upstream's prober lease in the shared zone (peer_state.hpp: pid + expiry, under
// the zone's mutex). Only the holder probes, so each server gets one probe per interval whatever
// the number of workers. A holder that dies (or hangs past its lease) is replaced at the next
// tick of another worker; a worker that exits gives its lease back. A probe is a plain HTTP/1.1
// GET of `uri` on a fresh connection (Connection: close), passed when the response head parses
// and its status is in the configured range before `timeout`. The verdicts move the shared
// health state (health_result): `fails` failures in a row mark the server down, `passes`
// passes in a row bring it back; every worker's balancer skips a down server at once.
#pragma once

#include <memory>

#include "core/event_loop.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate::proxy {

class HealthChecks {
  public:
    virtual ~HealthChecks() = default;
};

// Starts this worker's health-check timers for every upstream of `main` with `health_check`.
// Returns nullptr when there is none. Destroying the result stops them and gives leases back.
std::unique_ptr<HealthChecks> start_health_checks(const ProxyMainConf& main, EventLoop& loop);

}  // namespace tollgate::proxy
