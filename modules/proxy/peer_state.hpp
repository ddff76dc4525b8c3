// The state of an upstream's servers that must be exact across workers, in one shared zone per
// upstream (core/shared_zone.hpp): requests in flight (least_conn, max_conns), passive failures
// (max_fails / fail_timeout), the circuit breaker and the active health state.
//
// The master maps the zone while the config is read, before the workers fork; a reload whose
// upstream lists the same servers in the same order (weights and other parameters may change)
// reuses it, so counts, breakers and health survive a HUP. Hot-path reads are relaxed atomics;
// counts are atomic adds; transitions that touch several fields (a fail window, a breaker or
// health state change) take the zone's robust mutex. The transition functions below are pure
// (the caller passes `now` and logs), so they are unit-tested without a zone.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/shared_zone.hpp"

namespace tollgate::proxy {

struct UpstreamServer;

// circuit_breaker failures=N cooldown=T probes=N successes=N (upstream level).
struct BreakerConf {
    bool enabled = false;
    int failures = 5;              // consecutive failures that open it
    uint64_t cooldown_ms = 30000;  // open this long, then half-open
    int probes = 1;                // requests let through at once while half-open
    int successes = 3;             // successes while half-open that close it
};

// health_check uri=... interval=T timeout=T fails=N passes=N status=LO-HI (upstream level).
struct HealthCheckConf {
    bool enabled = false;
    std::string uri = "/";
    uint64_t interval_ms = 5000;
    uint64_t timeout_ms = 2000;
    int fails = 1;   // consecutive failed probes that mark a server down
    int passes = 1;  // consecutive passed probes that bring it back
    int status_min = 200;
    int status_max = 399;
};

enum class BreakerState : uint32_t { Closed = 0, Open = 1, HalfOpen = 2 };

const char* breaker_state_name(BreakerState s);

// One server's shared state. Zeroed memory is the initial state (closed, healthy, no counts).
struct PeerShm {
    std::atomic<uint32_t> conns;          // requests in flight to it, all workers
    std::atomic<int32_t> fails;           // passive failures in the current window
    std::atomic<int64_t> down_until_ms;   // passive: skipped until (monotonic ms)
    std::atomic<uint32_t> breaker;        // BreakerState
    std::atomic<int32_t> probes;          // half-open requests in flight
    std::atomic<int64_t> open_until_ms;   // open: half-open from then on
    std::atomic<uint32_t> health_down;    // 1: the active health check says down
    std::atomic<uint64_t> health_probes;  // probes sent (tests, status)
    int32_t consecutive_failures;         // breaker, closed: under the mutex
    int32_t half_open_successes;          // breaker, half-open: under the mutex
    int32_t health_fails;                 // consecutive failed probes: under the mutex
    int32_t health_passes;                // consecutive passed probes: under the mutex
};
static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                  std::atomic<int64_t>::is_always_lock_free &&
                  std::atomic<uint64_t>::is_always_lock_free,
              "shared peer state needs lock-free atomics");

// One worker's share of the servers' counts (PeerShm::conns and ::probes): a row of the zone
// per live worker, claimed at start and given back at exit. A worker killed mid-request leaves
// its row claimed by a dead pid; the next worker to start takes those counts off the servers
// and frees the row, so a crash never leaves max_conns, least_conn or a half-open breaker
// counting requests that no longer exist.
struct LedgerRow {
    std::atomic<int32_t> pid;  // the owner; 0: free
    uint32_t pad;
    // conns[servers] then probes[servers] follow the row header.
    std::atomic<uint32_t>* conns() { return reinterpret_cast<std::atomic<uint32_t>*>(this + 1); }
    std::atomic<uint32_t>* probes(uint32_t servers) { return conns() + servers; }
    static constexpr size_t bytes_for(size_t servers) {
        return (sizeof(LedgerRow) + 2 * servers * sizeof(std::atomic<uint32_t>) + 7) / 8 * 8;
    }
};
inline constexpr uint32_t kLedgerRows = 64;  // live workers per upstream, old generations included

// The zone's bytes: this header, one PeerShm per server in config order, then kLedgerRows rows.
struct UpstreamShm {
    uint64_t magic;
    uint32_t servers;
    uint32_t pad;
    ShmMutex mutex;
    std::atomic<int32_t> prober_pid;             // the worker running the health checks
    std::atomic<int64_t> prober_lease_until_ms;  // its lease (monotonic ms)

    PeerShm* peers() {
        return reinterpret_cast<PeerShm*>(reinterpret_cast<char*>(this) + offset());
    }
    static constexpr size_t offset() {
        return (sizeof(UpstreamShm) + alignof(PeerShm) - 1) / alignof(PeerShm) * alignof(PeerShm);
    }
    LedgerRow* row(uint32_t k) {
        char* base = reinterpret_cast<char*>(peers()) + servers * sizeof(PeerShm);
        return reinterpret_cast<LedgerRow*>(base + k * LedgerRow::bytes_for(servers));
    }
    static constexpr size_t bytes_for(size_t servers) {
        return offset() + servers * sizeof(PeerShm) + kLedgerRows * LedgerRow::bytes_for(servers);
    }
    // In a worker at start: frees the rows of workers that are gone (their counts are taken off
    // the servers'), then claims a row for this process. Returns it, or nullptr when every row
    // is taken (the worker then counts without one, as before rows existed).
    LedgerRow* claim_row();
    // In a worker at exit: takes what `row` still counts off the servers and frees it.
    void release_row(LedgerRow* row);
    // Lays out fresh memory (zeroed by the caller or not) for `servers` servers.
    static UpstreamShm* format(void* mem, uint32_t servers);
    // The state in `mem` when it was laid out for `servers` servers, else nullptr.
    static UpstreamShm* attach(void* mem, uint32_t servers);
};

// State that lives in ordinary memory instead of a zone (a proxy_pass with variables makes a
// one-off upstream per request: nothing to share).
class PrivatePeerState {
  public:
    explicit PrivatePeerState(uint32_t servers);
    UpstreamShm* get() const { return shm_; }

  private:
    std::unique_ptr<unsigned char[]> mem_;
    UpstreamShm* shm_ = nullptr;
};

// A monotonic clock in milliseconds, the same in every process (CLOCK_MONOTONIC).
int64_t mono_ms();

// ---- transitions (call with the zone's mutex held; the caller logs what they return) --------

enum class BreakerEvent : uint8_t { None, Opened, HalfOpened, Closed, Reopened };

// Whether a request may go to this server now, as far as the breaker is concerned: closed, or
// half-open with a probe slot free (taken: `probe` is set), or open past its cool-down (then
// half-open first, `event` HalfOpened). Open and in cool-down: false. Takes the mutex itself
// only when a transition or a probe slot is needed; `mutex` is the zone's.
bool breaker_admit(PeerShm& p, const BreakerConf& c, int64_t now, ShmMutex& mutex, bool& probe,
                   BreakerEvent& event);
// A request that went to this server ended: `success` (a response under 500) or a failure
// (error, timeout, invalid response, 5xx); `probe` if it held a half-open probe slot. Returns
// the transition it caused.
BreakerEvent breaker_result(PeerShm& p, const BreakerConf& c, int64_t now, bool success,
                            bool probe);

// A passive failure (max_fails within fail_timeout). Returns true when the server has just
// become unavailable for fail_timeout.
bool passive_failure(PeerShm& p, int max_fails, uint64_t fail_timeout_ms, int64_t now);

enum class HealthEvent : uint8_t { None, Down, Up };
// One health probe's verdict. Returns the transition it caused.
HealthEvent health_result(PeerShm& p, const HealthCheckConf& c, bool ok);

}  // namespace tollgate::proxy
