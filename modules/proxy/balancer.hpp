// Choosing an upstream server for a request: smooth weighted round robin (the default),
// least_conn, hash KEY [consistent] (a ketama ring), ip_hash and random [two [least_conn]], as
// nginx has them, over the servers' shared state (peer_state.hpp): a server is skipped while it
// is `down`, already tried by this request, marked down by the health check, failed (max_fails
// within fail_timeout), at max_conns, or while its circuit breaker is open.
//
// A PeerSet is one worker's view of one upstream: the config, the shared state and what is per
// worker (the round-robin weights, a random generator). A pick counts the request on its server
// (conns + 1, and a half-open probe slot when it takes one); release() gives both back and tells
// the breaker how the request went.
#pragma once

#include <cstdint>
#include <memory_resource>
#include <string_view>
#include <vector>

#include "modules/proxy/peer_state.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate::http {
class Request;
}

namespace tollgate::proxy {

// nginx's consistent hash: each server owns kPointsPerWeight * weight points on a ring of 64-bit
// hashes; a key goes to the server of the first point at or after its hash. A server's points
// depend only on its address and weight, so removing one of N servers moves only the keys it
// owned (about 1/N) and every other key stays where it was.
class KetamaRing {
  public:
    static constexpr int kPointsPerWeight = 160;
    // Points for every server of `servers` (a ring has no backup servers).
    explicit KetamaRing(const std::vector<UpstreamServer>& servers);
    bool empty() const { return points_.empty(); }
    size_t size() const { return points_.size(); }
    // The position of the first point at or after `hash` (wrapping to 0).
    size_t find(uint64_t hash) const;
    // The server owning the point `pos` positions on (wrapping).
    uint32_t server_at(size_t pos) const { return points_[pos % points_.size()].server; }

  private:
    struct Point {
        uint64_t hash;
        uint32_t server;
    };
    std::vector<Point> points_;
};

// The 64-bit hash of a key, as the hash balancers use it.
uint64_t balancer_hash(std::string_view key);

// What one pick is given besides the state.
struct PickInput {
    std::string_view key;           // hash: the evaluated key (empty: round robin, as nginx)
    const uint8_t* addr = nullptr;  // ip_hash: the client address bytes used (3 for IPv4, 16
    size_t addr_len = 0;            // for IPv6); none: round robin
};

enum class NoPeer : uint8_t { None, NoLive, AllOpen };

struct PickResult {
    int peer = -1;
    bool probe = false;          // holds a half-open probe slot of its server
    NoPeer why = NoPeer::None;   // peer < 0: why
    int64_t retry_after_ms = 0;  // AllOpen: until the first breaker half-opens
};

// How a request that went to a server ended, for its breaker.
enum class Outcome : uint8_t { Neutral, Success, Failure };

class PeerSet {
  public:
    PeerSet() = default;
    PeerSet(PeerSet&&) = default;
    PeerSet& operator=(PeerSet&&) = default;

    // Binds to `up` and its state `shm` (the zone's, or a PrivatePeerState's); `seed` seeds the
    // random balancer.
    void bind(const Upstream& up, UpstreamShm* shm, uint64_t seed);
    bool bound() const { return up_ != nullptr; }
    // Counts this worker's requests in `row` too (UpstreamShm::claim_row), so they can be taken
    // back if the worker dies; nullptr for none (private state, or no row free).
    void set_ledger(LedgerRow* row) { row_ = row; }

    // Chooses a server not in `tried` (indexed like up.servers) and counts the request on it.
    PickResult pick(const PickInput& in, const std::pmr::vector<bool>& tried, int64_t now);
    // As above with the input taken from the request (hash key, client address).
    PickResult pick(http::Request& r, const std::pmr::vector<bool>& tried);
    // The request counted by `p` is done with its server; `o` is how it went (breaker).
    void release(const PickResult& p, Outcome o, int64_t now);
    // Passive failure accounting (max_fails / fail_timeout) of server `i`.
    void failed(size_t i, int64_t now);
    void succeeded(size_t i);

    const Upstream& upstream() const { return *up_; }
    UpstreamShm* shm() const { return shm_; }
    PeerShm& state(size_t i) const { return shm_->peers()[i]; }

  private:
    enum class Avail : uint8_t { Yes, No, Open };
    Avail avail(size_t i, const std::pmr::vector<bool>& tried, int64_t now) const;
    bool ok(size_t i, const std::pmr::vector<bool>& tried, int64_t now) const {
        return avail(i, tried, now) == Avail::Yes;
    }
    int choose(const PickInput& in, const std::pmr::vector<bool>& tried, int64_t now);
    int round_robin(const std::pmr::vector<bool>& tried, int64_t now);
    int least_conn(const std::pmr::vector<bool>& tried, int64_t now);
    int by_weight(uint64_t value) const;  // the server whose weight range holds value % total
    int hash(std::string_view key, const std::pmr::vector<bool>& tried, int64_t now);
    int consistent(std::string_view key, const std::pmr::vector<bool>& tried, int64_t now);
    int ip_hash(const uint8_t* addr, size_t len, const std::pmr::vector<bool>& tried, int64_t now);
    int random(const std::pmr::vector<bool>& tried, int64_t now);
    // Takes server `i` for a request: a breaker probe slot if it needs one, then a count (within
    // max_conns). False when another worker took the last slot meanwhile.
    bool admit(size_t i, int64_t now, PickResult& res);
    bool all_open(int64_t now, int64_t& retry_after_ms) const;
    uint64_t next_random();
    void log_breaker(size_t i, BreakerEvent e) const;

    const Upstream* up_ = nullptr;
    UpstreamShm* shm_ = nullptr;
    std::vector<int> current_weight_;  // smooth weighted round robin, per worker (as nginx)
    std::vector<uint8_t> refused_;     // servers that refused an admit during this pick
    bool refused_dirty_ = false;
    int total_weight_ = 0;  // of the non-backup servers
    uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
    LedgerRow* row_ = nullptr;
};

}  // namespace tollgate::proxy
