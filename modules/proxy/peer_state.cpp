#include "modules/proxy/peer_state.hpp"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tollgate::proxy {

namespace {
constexpr uint64_t kShmMagic = 0x7570737472656d31ULL;  // "upstrem1"
}  // namespace

const char* breaker_state_name(BreakerState s) {
    switch (s) {
        case BreakerState::Closed:
            return "closed";
        case BreakerState::Open:
            return "open";
        case BreakerState::HalfOpen:
            return "half-open";
    }
    return "?";
}

UpstreamShm* UpstreamShm::format(void* mem, uint32_t servers) {
    std::memset(mem, 0, bytes_for(servers));
    auto* s = static_cast<UpstreamShm*>(mem);
    s->magic = kShmMagic;
    s->servers = servers;
    s->mutex.init();
    return s;
}

UpstreamShm* UpstreamShm::attach(void* mem, uint32_t servers) {
    auto* s = static_cast<UpstreamShm*>(mem);
    return s->magic == kShmMagic && s->servers == servers ? s : nullptr;
}

namespace {

// `a` -= `n`, never below 0 (another worker may have taken the counts back meanwhile).
template <class T>
void saturating_sub(std::atomic<T>& a, uint32_t n) {
    T c = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(c, c > static_cast<T>(n) ? c - static_cast<T>(n) : T{0},
                                    std::memory_order_relaxed)) {
    }
}

// Takes what `row` counts off the servers and frees it (the zone's mutex held).
void settle_row(UpstreamShm& shm, LedgerRow& row) {
    PeerShm* peers = shm.peers();
    for (uint32_t i = 0; i < shm.servers; ++i) {
        saturating_sub(peers[i].conns, row.conns()[i].exchange(0, std::memory_order_relaxed));
        saturating_sub(peers[i].probes,
                       row.probes(shm.servers)[i].exchange(0, std::memory_order_relaxed));
    }
    row.pid.store(0, std::memory_order_relaxed);
}

bool process_gone(int32_t pid) {
    return ::kill(pid, 0) != 0 && errno == ESRCH;  // EPERM: alive, another user's
}

}  // namespace

LedgerRow* UpstreamShm::claim_row() {
    ShmLock lock(mutex);
    LedgerRow* mine = nullptr;
    for (uint32_t k = 0; k < kLedgerRows; ++k) {
        LedgerRow* r = row(k);
        int32_t pid = r->pid.load(std::memory_order_relaxed);
        if (pid != 0 && process_gone(pid)) settle_row(*this, *r);
        if (mine == nullptr && r->pid.load(std::memory_order_relaxed) == 0) mine = r;
    }
    if (mine != nullptr)
        mine->pid.store(static_cast<int32_t>(::getpid()), std::memory_order_relaxed);
    return mine;
}

void UpstreamShm::release_row(LedgerRow* r) {
    if (r == nullptr) return;
    ShmLock lock(mutex);
    settle_row(*this, *r);
}

PrivatePeerState::PrivatePeerState(uint32_t servers)
    : mem_(new unsigned char[UpstreamShm::bytes_for(servers)]) {  // new[] aligns to 16
    shm_ = UpstreamShm::format(mem_.get(), servers);
}

int64_t mono_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool breaker_admit(PeerShm& p, const BreakerConf& c, int64_t now, ShmMutex& mutex, bool& probe,
                   BreakerEvent& event) {
    probe = false;
    event = BreakerEvent::None;
    auto state = static_cast<BreakerState>(p.breaker.load(std::memory_order_relaxed));
    if (state == BreakerState::Closed) return true;
    if (state == BreakerState::Open && now < p.open_until_ms.load(std::memory_order_relaxed)) {
        return false;
    }
    if (state == BreakerState::HalfOpen && p.probes.load(std::memory_order_relaxed) >= c.probes) {
        return false;
    }
    ShmLock lock(mutex);
    state = static_cast<BreakerState>(p.breaker.load(std::memory_order_relaxed));
    if (state == BreakerState::Closed) return true;
    if (state == BreakerState::Open) {
        if (now < p.open_until_ms.load(std::memory_order_relaxed)) return false;
        p.breaker.store(static_cast<uint32_t>(BreakerState::HalfOpen), std::memory_order_relaxed);
        p.probes.store(0, std::memory_order_relaxed);
        p.half_open_successes = 0;
        event = BreakerEvent::HalfOpened;
    }
    if (p.probes.load(std::memory_order_relaxed) >= c.probes) return false;
    p.probes.fetch_add(1, std::memory_order_relaxed);
    probe = true;
    return true;
}

BreakerEvent breaker_result(PeerShm& p, const BreakerConf& c, int64_t now, bool success,
                            bool probe) {
    if (probe && p.probes.load(std::memory_order_relaxed) > 0) {
        p.probes.fetch_sub(1, std::memory_order_relaxed);
    }
    auto state = static_cast<BreakerState>(p.breaker.load(std::memory_order_relaxed));
    switch (state) {
        case BreakerState::Closed:
            if (success) {
                p.consecutive_failures = 0;
                return BreakerEvent::None;
            }
            if (++p.consecutive_failures < c.failures) return BreakerEvent::None;
            p.consecutive_failures = 0;
            p.open_until_ms.store(now + static_cast<int64_t>(c.cooldown_ms),
                                  std::memory_order_relaxed);
            p.breaker.store(static_cast<uint32_t>(BreakerState::Open), std::memory_order_relaxed);
            return BreakerEvent::Opened;
        case BreakerState::HalfOpen:
            if (!probe) return BreakerEvent::None;  // started before the breaker opened
            if (!success) {
                p.open_until_ms.store(now + static_cast<int64_t>(c.cooldown_ms),
                                      std::memory_order_relaxed);
                p.breaker.store(static_cast<uint32_t>(BreakerState::Open),
                                std::memory_order_relaxed);
                return BreakerEvent::Reopened;
            }
            if (++p.half_open_successes < c.successes) return BreakerEvent::None;
            p.half_open_successes = 0;
            p.consecutive_failures = 0;
            p.breaker.store(static_cast<uint32_t>(BreakerState::Closed), std::memory_order_relaxed);
            return BreakerEvent::Closed;
        case BreakerState::Open:
            return BreakerEvent::None;  // a request from before it opened: already counted
    }
    return BreakerEvent::None;
}

bool passive_failure(PeerShm& p, int max_fails, uint64_t fail_timeout_ms, int64_t now) {
    if (max_fails <= 0) return false;
    int32_t fails = p.fails.load(std::memory_order_relaxed);
    if (now >= p.down_until_ms.load(std::memory_order_relaxed) && fails >= max_fails) {
        fails = 0;  // the last window is over: a new one starts
    }
    ++fails;
    p.fails.store(fails, std::memory_order_relaxed);
    if (fails >= max_fails) {
        p.down_until_ms.store(now + static_cast<int64_t>(fail_timeout_ms),
                              std::memory_order_relaxed);
        return true;
    }
    return false;
}

HealthEvent health_result(PeerShm& p, const HealthCheckConf& c, bool ok) {
    bool down = p.health_down.load(std::memory_order_relaxed) != 0;
    if (ok) {
        p.health_fails = 0;
        if (!down) return HealthEvent::None;
        if (++p.health_passes < c.passes) return HealthEvent::None;
        p.health_passes = 0;
        p.health_down.store(0, std::memory_order_relaxed);
        return HealthEvent::Up;
    }
    p.health_passes = 0;
    if (down) return HealthEvent::None;
    if (++p.health_fails < c.fails) return HealthEvent::None;
    p.health_fails = 0;
    p.health_down.store(1, std::memory_order_relaxed);
    return HealthEvent::Down;
}

}  // namespace tollgate::proxy
