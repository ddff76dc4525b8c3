// limit_req: config objects (built in the master, immutable afterwards) and the PreAccess
// handler. The directives are read in module.cpp; the runtime is limit_req.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "core/module.hpp"
#include "core/redis_url.hpp"
#include "core/shared_zone.hpp"
#include "core/variables.hpp"
#include "modules/limit_req/limit_req_algo.hpp"

namespace tollgate {
class EventLoop;
class RedisClient;
struct ConfigGeneration;
namespace http {
class Request;
}
}  // namespace tollgate

namespace tollgate::limit_req {

// What a Redis zone does with a request while its Redis server is away (not connected, timed
// out, or answering with an error).
enum class RedisFail : uint8_t {
    Open,    // admit (the zone does not limit until Redis is back)
    Closed,  // answer 503 with Retry-After: 1 (the limiter, not the client, is at fault)
    Local,   // decide on this machine's shared-memory counters of the zone (the default)
};

// One limit_req_zone: the key, the rate (fixed, or from a variable per request), the algorithm
// and the shared table its counters live in.
struct Zone {
    std::string name;
    ComplexValue key;
    Algorithm algorithm = Algorithm::LeakyBucket;
    Rate rate;  // when !rate_variable
    bool rate_variable = false;
    ComplexValue rate_value;  // "$tier_rate" yielding "10r/s" / "600r/m" per request
    std::shared_ptr<SharedZone> shm;
    // The shared tables: the config is immutable, the counters they point at are not.
    mutable SharedTable<LeakyState> leaky;    // Algorithm::LeakyBucket
    mutable SharedTable<WindowState> window;  // Algorithm::SlidingWindow
    // Cluster mode (redis=URL): the counters live in Redis under `redis_prefix` + hex of the
    // key's XXH3-128 hash (never the raw key, which may be a secret); the shm table above is
    // the local fallback.
    bool redis = false;
    RedisUrl redis_url;
    std::string redis_prefix;  // "tollgate:limit_req:NAME:lb:" (or ":sw:")
    RedisFail redis_fail = RedisFail::Local;
    uint64_t redis_timeout_ms = 100;
    // This worker's client for redis_url (set by init_worker after the fork; one per URL).
    mutable RedisClient* redis_client = nullptr;
};

// A `limit_req zone=NAME ...` reference; resolved to its zone by the module's check.
struct ZoneRef {
    std::string name;
    const Zone* zone = nullptr;
    std::string file;
    int line = 0;
};

struct Limit {
    std::shared_ptr<ZoneRef> ref;
    uint64_t burst = 0;  // milli-requests
    uint64_t delay = 0;  // milli-requests served without delay
    bool has_burst_or_delay = false;
};

enum class HeadersMode : uint8_t { Off, X, Ietf, Both };

struct MainConf : ModuleConf {
    std::vector<std::unique_ptr<Zone>> zones;
    std::vector<std::shared_ptr<ZoneRef>> refs;
};

struct LocConf : ModuleConf {
    std::optional<std::vector<Limit>> limits;  // inherited only when a level has none (nginx)
    std::optional<int> status;                 // default 429 (nginx: 503)
    std::optional<bool> dry_run;
    std::optional<log::Level> log_level;
    std::optional<HeadersMode> headers;
};

// The $limit_req_status values.
enum class Status : uint8_t { None, Passed, Delayed, Rejected, DelayedDryRun, RejectedDryRun };

// The PreAccess handler; `data` is the location's LocConf.
Verdict handle(http::Request& r, const void* data);
// $limit_req_status.
bool status_variable(http::Request& r, std::string_view, uintptr_t, std::string_view& out);
void init_worker(const ConfigGeneration& generation, EventLoop& loop);
void exit_worker();
size_t module_idx();

}  // namespace tollgate::limit_req
