#include "modules/proxy/balancer.hpp"

#include <arpa/inet.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/http/request.hpp"
#include "core/log.hpp"

namespace tollgate::proxy {

namespace {
// How many servers a hash method tries before it falls back to round robin (nginx: 20).
constexpr int kHashTries = 20;
}  // namespace

uint64_t balancer_hash(std::string_view key) {
    return XXH3_64bits(key.data(), key.size());
}

// ---- KetamaRing -------------------------------------------------------------------------------

KetamaRing::KetamaRing(const std::vector<UpstreamServer>& servers) {
    for (size_t i = 0; i < servers.size(); ++i) {
        const UpstreamServer& s = servers[i];
        int n = kPointsPerWeight * s.weight;
        // Point j of a server: the hash of "ADDR" seeded with j, so it depends only on the
        // server itself (nginx chains crc32 over the host and port; any stable hash will do).
        for (int j = 0; j < n; ++j) {
            uint64_t h = XXH3_64bits_withSeed(s.addr_text.data(), s.addr_text.size(),
                                              static_cast<uint64_t>(j));
            points_.push_back(Point{h, static_cast<uint32_t>(i)});
        }
    }
    std::sort(points_.begin(), points_.end(), [](const Point& a, const Point& b) {
        return a.hash != b.hash ? a.hash < b.hash : a.server < b.server;
    });
}

size_t KetamaRing::find(uint64_t hash) const {
    auto it = std::lower_bound(points_.begin(), points_.end(), hash,
                               [](const Point& p, uint64_t h) { return p.hash < h; });
    return it == points_.end() ? 0 : static_cast<size_t>(it - points_.begin());
}

// ---- PeerSet ----------------------------------------------------------------------------------

void PeerSet::bind(const Upstream& up, UpstreamShm* shm, uint64_t seed) {
    up_ = &up;
    shm_ = shm;
    current_weight_.assign(up.servers.size(), 0);
    refused_.assign(up.servers.size(), 0);
    total_weight_ = 0;
    for (const UpstreamServer& s : up.servers) {
        if (!s.backup) total_weight_ += s.weight;
    }
    rng_ = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t PeerSet::next_random() {
    // xorshift64*: enough to spread picks; not for secrets.
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1DULL;
}

PeerSet::Avail PeerSet::avail(size_t i, const std::pmr::vector<bool>& tried, int64_t now) const {
    const UpstreamServer& s = up_->servers[i];
    if (s.down || tried[i] || refused_[i]) return Avail::No;
    const PeerShm& p = shm_->peers()[i];
    if (up_->health.enabled && p.health_down.load(std::memory_order_relaxed) != 0) {
        return Avail::No;
    }
    if (s.max_fails > 0 && p.fails.load(std::memory_order_relaxed) >= s.max_fails &&
        now < p.down_until_ms.load(std::memory_order_relaxed)) {
        return Avail::No;
    }
    if (s.max_conns > 0 &&
        p.conns.load(std::memory_order_relaxed) >= static_cast<uint32_t>(s.max_conns)) {
        return Avail::No;
    }
    if (up_->breaker.enabled) {
        auto st = static_cast<BreakerState>(p.breaker.load(std::memory_order_relaxed));
        if (st == BreakerState::Open && now < p.open_until_ms.load(std::memory_order_relaxed)) {
            return Avail::Open;
        }
        if (st == BreakerState::HalfOpen &&
            p.probes.load(std::memory_order_relaxed) >= up_->breaker.probes) {
            return Avail::Open;
        }
    }
    return Avail::Yes;
}

int PeerSet::round_robin(const std::pmr::vector<bool>& tried, int64_t now) {
    for (bool backup : {false, true}) {
        int best = -1;
        int total = 0;
        for (size_t i = 0; i < up_->servers.size(); ++i) {
            const UpstreamServer& s = up_->servers[i];
            if (s.backup != backup || !ok(i, tried, now)) continue;
            current_weight_[i] += s.weight;
            total += s.weight;
            if (best < 0 || current_weight_[i] > current_weight_[best]) best = static_cast<int>(i);
        }
        if (best >= 0) {
            current_weight_[best] -= total;
            return best;
        }
    }
    return -1;
}

// nginx's least_conn: the fewest requests in flight for the weight (conns / weight, compared by
// cross-multiplying); several equal ones share by smooth weighted round robin.
int PeerSet::least_conn(const std::pmr::vector<bool>& tried, int64_t now) {
    const PeerShm* st = shm_->peers();
    for (bool backup : {false, true}) {
        int best = -1;
        uint64_t best_conns = 0;
        bool many = false;
        for (size_t i = 0; i < up_->servers.size(); ++i) {
            const UpstreamServer& s = up_->servers[i];
            if (s.backup != backup || !ok(i, tried, now)) continue;
            uint64_t c = st[i].conns.load(std::memory_order_relaxed);
            if (best < 0 || c * static_cast<uint64_t>(up_->servers[best].weight) <
                                best_conns * static_cast<uint64_t>(s.weight)) {
                best = static_cast<int>(i);
                best_conns = c;
                many = false;
            } else if (c * static_cast<uint64_t>(up_->servers[best].weight) ==
                       best_conns * static_cast<uint64_t>(s.weight)) {
                many = true;
            }
        }
        if (best < 0) continue;
        if (!many) return best;
        int sel = -1;
        int total = 0;
        uint64_t bw = static_cast<uint64_t>(up_->servers[best].weight);
        for (size_t i = static_cast<size_t>(best); i < up_->servers.size(); ++i) {
            const UpstreamServer& s = up_->servers[i];
            if (s.backup != backup || !ok(i, tried, now)) continue;
            uint64_t c = st[i].conns.load(std::memory_order_relaxed);
            if (c * bw != best_conns * static_cast<uint64_t>(s.weight)) continue;
            current_weight_[i] += s.weight;
            total += s.weight;
            if (sel < 0 || current_weight_[i] > current_weight_[sel]) sel = static_cast<int>(i);
        }
        if (sel < 0) return best;
        current_weight_[sel] -= total;
        return sel;
    }
    return -1;
}

int PeerSet::by_weight(uint64_t value) const {
    if (total_weight_ <= 0) return -1;
    auto w = static_cast<int64_t>(value % static_cast<uint64_t>(total_weight_));
    for (size_t i = 0; i < up_->servers.size(); ++i) {
        const UpstreamServer& s = up_->servers[i];
        if (s.backup) continue;
        if (w < s.weight) return static_cast<int>(i);
        w -= s.weight;
    }
    return -1;
}

// nginx's hash: the key's hash picks a server by weight; an unavailable one makes it rehash
// (the key again, seeded with the previous hash), up to 20 times, then round robin.
int PeerSet::hash(std::string_view key, const std::pmr::vector<bool>& tried, int64_t now) {
    uint64_t h = balancer_hash(key);
    for (int t = 0; t < kHashTries; ++t) {
        int i = by_weight(h);
        if (i >= 0 && ok(static_cast<size_t>(i), tried, now)) return i;
        h = XXH3_64bits_withSeed(key.data(), key.size(), h);
    }
    return round_robin(tried, now);
}

int PeerSet::consistent(std::string_view key, const std::pmr::vector<bool>& tried, int64_t now) {
    const KetamaRing& ring = *up_->ring;
    if (ring.empty()) return -1;
    size_t pos = ring.find(balancer_hash(key));
    size_t tries = std::min<size_t>(kHashTries, ring.size());
    for (size_t t = 0; t < tries; ++t) {
        size_t i = ring.server_at(pos + t);
        if (ok(i, tried, now)) return static_cast<int>(i);
    }
    return round_robin(tried, now);
}

// nginx's ip_hash: the first three octets of an IPv4 address (the whole IPv6 address) folded
// into a hash modulo 6271, which picks a server by weight; an unavailable one makes it fold the
// address again, up to 20 times, then round robin.
int PeerSet::ip_hash(const uint8_t* addr, size_t len, const std::pmr::vector<bool>& tried,
                     int64_t now) {
    uint64_t h = 89;
    for (int t = 0; t < kHashTries; ++t) {
        for (size_t k = 0; k < len; ++k) h = (h * 113 + addr[k]) % 6271;
        int i = by_weight(h);
        if (i >= 0 && ok(static_cast<size_t>(i), tried, now)) return i;
    }
    return round_robin(tried, now);
}

// nginx's random: a server drawn by weight; with `two`, two different ones are drawn and the one
// with fewer requests in flight (for its weight) wins.
int PeerSet::random(const std::pmr::vector<bool>& tried, int64_t now) {
    int first = -1;
    for (int t = 0; t < kHashTries; ++t) {
        int i = by_weight(next_random());
        if (i < 0 || i == first || !ok(static_cast<size_t>(i), tried, now)) continue;
        if (!up_->random_two) return i;
        if (first < 0) {
            first = i;
            continue;
        }
        const PeerShm* st = shm_->peers();
        uint64_t c1 = st[first].conns.load(std::memory_order_relaxed);
        uint64_t c2 = st[i].conns.load(std::memory_order_relaxed);
        if (c2 * static_cast<uint64_t>(up_->servers[first].weight) <
            c1 * static_cast<uint64_t>(up_->servers[i].weight)) {
            return i;
        }
        return first;
    }
    if (first >= 0) return first;
    return round_robin(tried, now);
}

int PeerSet::choose(const PickInput& in, const std::pmr::vector<bool>& tried, int64_t now) {
    switch (up_->method) {
        case BalanceMethod::RoundRobin:
            return round_robin(tried, now);
        case BalanceMethod::LeastConn:
            return least_conn(tried, now);
        case BalanceMethod::Hash:
            if (in.key.empty()) return round_robin(tried, now);
            return up_->ring ? consistent(in.key, tried, now) : hash(in.key, tried, now);
        case BalanceMethod::IpHash:
            if (in.addr == nullptr || in.addr_len == 0) return round_robin(tried, now);
            return ip_hash(in.addr, in.addr_len, tried, now);
        case BalanceMethod::Random:
            return random(tried, now);
    }
    return -1;
}

bool PeerSet::admit(size_t i, int64_t now, PickResult& res) {
    const UpstreamServer& s = up_->servers[i];
    PeerShm& p = shm_->peers()[i];
    bool probe = false;
    if (up_->breaker.enabled) {
        BreakerEvent ev = BreakerEvent::None;
        bool admitted = breaker_admit(p, up_->breaker, now, shm_->mutex, probe, ev);
        log_breaker(i, ev);
        if (!admitted) return false;
    }
    if (s.max_conns > 0) {
        // Exact across workers: the count only goes up while it is under the limit.
        uint32_t c = p.conns.load(std::memory_order_relaxed);
        do {
            if (c >= static_cast<uint32_t>(s.max_conns)) {
                if (probe) p.probes.fetch_sub(1, std::memory_order_relaxed);
                return false;
            }
        } while (!p.conns.compare_exchange_weak(c, c + 1, std::memory_order_relaxed));
    } else {
        p.conns.fetch_add(1, std::memory_order_relaxed);
    }
    if (row_ != nullptr) {
        row_->conns()[i].fetch_add(1, std::memory_order_relaxed);
        if (probe) row_->probes(shm_->servers)[i].fetch_add(1, std::memory_order_relaxed);
    }
    res.peer = static_cast<int>(i);
    res.probe = probe;
    return true;
}

bool PeerSet::all_open(int64_t now, int64_t& retry_after_ms) const {
    if (!up_->breaker.enabled) return false;
    int64_t soonest = INT64_MAX;
    size_t considered = 0;
    for (size_t i = 0; i < up_->servers.size(); ++i) {
        if (up_->servers[i].down) continue;
        ++considered;
        const PeerShm& p = shm_->peers()[i];
        auto st = static_cast<BreakerState>(p.breaker.load(std::memory_order_relaxed));
        if (st == BreakerState::Closed) return false;
        int64_t until = p.open_until_ms.load(std::memory_order_relaxed);
        if (st == BreakerState::Open && now >= until) return false;
        // Half-open with every probe slot taken: a probe's verdict comes within a request.
        soonest = std::min(soonest, st == BreakerState::Open ? until - now : int64_t{1000});
    }
    if (considered == 0) return false;
    retry_after_ms = std::max<int64_t>(soonest, 1);
    return true;
}

PickResult PeerSet::pick(const PickInput& in, const std::pmr::vector<bool>& tried, int64_t now) {
    PickResult res;
    if (refused_dirty_) {
        std::fill(refused_.begin(), refused_.end(), 0);
        refused_dirty_ = false;
    }
    // A server whose last slot another worker took meanwhile is refused; choose again (each
    // round refuses one server, so this ends).
    for (size_t round = 0; round <= up_->servers.size(); ++round) {
        int i = choose(in, tried, now);
        if (i < 0) break;
        if (admit(static_cast<size_t>(i), now, res)) return res;
        refused_[static_cast<size_t>(i)] = 1;
        refused_dirty_ = true;
    }
    res.peer = -1;
    res.why = all_open(now, res.retry_after_ms) ? NoPeer::AllOpen : NoPeer::NoLive;
    return res;
}

PickResult PeerSet::pick(http::Request& r, const std::pmr::vector<bool>& tried) {
    PickInput in;
    uint8_t bytes[16];
    if (up_->method == BalanceMethod::Hash) {
        in.key = up_->hash_key.evaluate(r);
    } else if (up_->method == BalanceMethod::IpHash && !r.conn.remote_addr.empty()) {
        char text[64];
        size_t n = std::min(r.conn.remote_addr.size(), sizeof(text) - 1);
        std::memcpy(text, r.conn.remote_addr.data(), n);
        text[n] = '\0';
        if (inet_pton(AF_INET, text, bytes) == 1) {
            in.addr = bytes;
            in.addr_len = 3;
        } else if (inet_pton(AF_INET6, text, bytes) == 1) {
            in.addr = bytes;
            in.addr_len = 16;
        }
    }
    return pick(in, tried, mono_ms());
}

void PeerSet::release(const PickResult& res, Outcome o, int64_t now) {
    if (res.peer < 0) return;
    PeerShm& p = shm_->peers()[res.peer];
    uint32_t c = p.conns.load(std::memory_order_relaxed);
    while (c > 0 && !p.conns.compare_exchange_weak(c, c - 1, std::memory_order_relaxed)) {
    }
    if (row_ != nullptr) {
        row_->conns()[res.peer].fetch_sub(1, std::memory_order_relaxed);
        if (res.probe)
            row_->probes(shm_->servers)[res.peer].fetch_sub(1, std::memory_order_relaxed);
    }
    if (!up_->breaker.enabled) return;
    if (o == Outcome::Neutral) {
        if (res.probe && p.probes.load(std::memory_order_relaxed) > 0) {
            p.probes.fetch_sub(1, std::memory_order_relaxed);
        }
        return;
    }
    bool success = o == Outcome::Success;
    // The common case, a success on a closed breaker with no failures counted, needs no lock.
    if (success && !res.probe &&
        p.breaker.load(std::memory_order_relaxed) == static_cast<uint32_t>(BreakerState::Closed) &&
        p.consecutive_failures == 0) {
        return;
    }
    BreakerEvent ev;
    {
        ShmLock lock(shm_->mutex);
        ev = breaker_result(p, up_->breaker, now, success, res.probe);
    }
    log_breaker(static_cast<size_t>(res.peer), ev);
}

void PeerSet::failed(size_t i, int64_t now) {
    const UpstreamServer& s = up_->servers[i];
    if (s.max_fails <= 0) return;
    bool disabled;
    {
        ShmLock lock(shm_->mutex);
        disabled = passive_failure(shm_->peers()[i], s.max_fails, s.fail_timeout_ms, now);
    }
    if (disabled) {
        LOG_WARN("upstream server temporarily disabled: %s in upstream \"%s\"", s.addr_text.c_str(),
                 up_->name.c_str());
    }
}

void PeerSet::succeeded(size_t i) {
    PeerShm& p = shm_->peers()[i];
    if (p.fails.load(std::memory_order_relaxed) != 0) p.fails.store(0, std::memory_order_relaxed);
}

void PeerSet::log_breaker(size_t i, BreakerEvent e) const {
    const char* what = nullptr;
    switch (e) {
        case BreakerEvent::None:
            return;
        case BreakerEvent::Opened:
            what = "closed -> open";
            break;
        case BreakerEvent::HalfOpened:
            what = "open -> half-open";
            break;
        case BreakerEvent::Closed:
            what = "half-open -> closed";
            break;
        case BreakerEvent::Reopened:
            what = "half-open -> open";
            break;
    }
    LOG_NOTICE("circuit breaker %s: server %s in upstream \"%s\"", what,
               up_->servers[i].addr_text.c_str(), up_->name.c_str());
}

}  // namespace tollgate::proxy
