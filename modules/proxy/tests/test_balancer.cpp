// The balancers, the ketama ring and the shared peer state transitions (modules/proxy/
// balancer.*, peer_state.*), driven directly: no sockets, explicit clocks.
#include <gtest/gtest.h>

#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "modules/proxy/balancer.hpp"
#include "modules/proxy/peer_state.hpp"

namespace tollgate::proxy {
namespace {

Upstream make_upstream(std::vector<int> weights, BalanceMethod m = BalanceMethod::RoundRobin) {
    Upstream up;
    up.name = "u";
    up.method = m;
    for (size_t i = 0; i < weights.size(); ++i) {
        UpstreamServer s;
        s.addr_text = "10.0.0." + std::to_string(i + 1) + ":80";
        s.weight = weights[i];
        up.servers.push_back(s);
    }
    return up;
}

struct Fixture {
    Upstream up;
    PrivatePeerState state;
    PeerSet set;
    std::pmr::vector<bool> tried;
    explicit Fixture(Upstream u)
        : up(std::move(u)),
          state(static_cast<uint32_t>(up.servers.size())),
          tried(up.servers.size(), false) {
        if (up.method == BalanceMethod::Hash && up.hash_consistent) {
            up.ring = std::make_shared<const KetamaRing>(up.servers);
        }
        set.bind(up, state.get(), 42);
    }
    // Picks and releases at once (a request that finished), returns the server index.
    int pick_once(const PickInput& in = {}, int64_t now = 1000) {
        PickResult r = set.pick(in, tried, now);
        set.release(r, Outcome::Success, now);
        return r.peer;
    }
};

TEST(Balancer, SmoothWeightedRoundRobinIsNginxSequence) {
    Fixture f(make_upstream({5, 1, 1}));
    std::string seq;
    for (int i = 0; i < 7; ++i) seq += static_cast<char>('a' + f.pick_once());
    EXPECT_EQ(seq, "aabacaa");  // nginx's documented smooth order for 5:1:1
}

TEST(Balancer, RoundRobinSkipsDownTriedAndUsesBackupLast) {
    Upstream up = make_upstream({1, 1, 1});
    up.servers[1].down = true;
    up.servers[2].backup = true;
    Fixture f(std::move(up));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(f.pick_once(), 0);
    f.tried[0] = true;
    EXPECT_EQ(f.pick_once(), 2);
    f.tried[2] = true;
    PickResult r = f.set.pick({}, f.tried, 1000);
    EXPECT_EQ(r.peer, -1);
    EXPECT_EQ(r.why, NoPeer::NoLive);
}

TEST(Balancer, LeastConnPrefersFewestForWeightAndCountsInFlight) {
    Fixture f(make_upstream({1, 1, 2}, BalanceMethod::LeastConn));
    f.set.state(0).conns = 3;
    f.set.state(1).conns = 1;
    f.set.state(2).conns = 3;  // 3/2 > 1/1
    PickResult r = f.set.pick({}, f.tried, 1000);
    EXPECT_EQ(r.peer, 1);
    EXPECT_EQ(f.set.state(1).conns.load(), 2u);  // counted while in flight
    // Now 1 has 2/1 = 2 and 2 has 3/2 = 1.5: server 2 wins.
    PickResult r2 = f.set.pick({}, f.tried, 1000);
    EXPECT_EQ(r2.peer, 2);
    f.set.release(r, Outcome::Success, 1000);
    f.set.release(r2, Outcome::Success, 1000);
    EXPECT_EQ(f.set.state(1).conns.load(), 1u);
    EXPECT_EQ(f.set.state(2).conns.load(), 3u);
}

TEST(Balancer, LeastConnTiesShareByWeight) {
    Fixture f(make_upstream({3, 1}, BalanceMethod::LeastConn));
    std::map<int, int> n;
    for (int i = 0; i < 400; ++i) ++n[f.pick_once()];  // all idle: always a tie
    EXPECT_EQ(n[0], 300);
    EXPECT_EQ(n[1], 100);
}

TEST(Balancer, MaxConnsIsExactAndAllBusyIsNoLive) {
    Upstream up = make_upstream({1, 1});
    up.servers[0].max_conns = 2;
    up.servers[1].max_conns = 1;
    Fixture f(std::move(up));
    std::vector<PickResult> held;
    for (int i = 0; i < 3; ++i) {
        held.push_back(f.set.pick({}, f.tried, 1000));
        EXPECT_GE(held.back().peer, 0);
    }
    EXPECT_EQ(f.set.state(0).conns.load(), 2u);
    EXPECT_EQ(f.set.state(1).conns.load(), 1u);
    PickResult none = f.set.pick({}, f.tried, 1000);
    EXPECT_EQ(none.peer, -1);
    EXPECT_EQ(none.why, NoPeer::NoLive);
    f.set.release(held[0], Outcome::Success, 1000);
    EXPECT_EQ(f.set.pick({}, f.tried, 1000).peer, held[0].peer);
}

TEST(Balancer, HashIsStableAndRehashesAroundAnUnavailableServer) {
    Upstream up = make_upstream({1, 1, 1, 1}, BalanceMethod::Hash);
    Fixture f(std::move(up));
    std::map<std::string, int> where;
    for (int k = 0; k < 200; ++k) {
        std::string key = "user-" + std::to_string(k);
        PickInput in{key};
        where[key] = f.pick_once(in);
        EXPECT_EQ(f.pick_once(in), where[key]);
    }
    f.tried[where["user-7"]] = true;  // as a retry would
    PickInput in{"user-7"};
    int other = f.pick_once(in);
    EXPECT_GE(other, 0);
    EXPECT_NE(other, where["user-7"]);
    // Every server gets some keys.
    std::map<int, int> per;
    for (auto& [k, s] : where) ++per[s];
    EXPECT_EQ(per.size(), 4u);
}

TEST(Balancer, EmptyHashKeyFallsBackToRoundRobin) {
    Fixture f(make_upstream({1, 1}, BalanceMethod::Hash));
    EXPECT_EQ(f.pick_once(), 0);
    EXPECT_EQ(f.pick_once(), 1);
}

TEST(KetamaRing, RemovingOneServerRemapsOnlyItsKeys) {
    constexpr int kKeys = 20000;
    for (size_t n : {3u, 4u, 5u, 8u}) {
        std::vector<int> w(n, 1);
        Upstream full = make_upstream(w, BalanceMethod::Hash);
        Upstream less = full;
        less.servers.erase(less.servers.begin() + 1);  // remove the second server
        KetamaRing a(full.servers);
        KetamaRing b(less.servers);
        int moved = 0;
        std::vector<int> share(n, 0);
        for (int k = 0; k < kKeys; ++k) {
            uint64_t h = balancer_hash("key:" + std::to_string(k));
            const std::string& before = full.servers[a.server_at(a.find(h))].addr_text;
            const std::string& after = less.servers[b.server_at(b.find(h))].addr_text;
            ++share[a.server_at(a.find(h))];
            if (before != after) {
                ++moved;
                EXPECT_EQ(before, full.servers[1].addr_text) << "a key of a kept server moved";
            }
        }
        double frac = static_cast<double>(moved) / kKeys;
        EXPECT_LE(frac, 1.0 / static_cast<double>(n) + 0.05) << n;
        EXPECT_GE(frac, 1.0 / static_cast<double>(n) - 0.05) << n;
        for (size_t i = 0; i < n; ++i) {
            double s = static_cast<double>(share[i]) / kKeys;
            EXPECT_NEAR(s, 1.0 / static_cast<double>(n), 0.06) << n << " server " << i;
        }
    }
}

TEST(KetamaRing, WeightScalesTheShare) {
    Upstream up = make_upstream({3, 1}, BalanceMethod::Hash);
    KetamaRing ring(up.servers);
    EXPECT_EQ(ring.size(), 4u * KetamaRing::kPointsPerWeight);
    int first = 0;
    for (int k = 0; k < 20000; ++k) {
        if (ring.server_at(ring.find(balancer_hash(std::to_string(k)))) == 0) ++first;
    }
    EXPECT_NEAR(first / 20000.0, 0.75, 0.06);
}

TEST(Balancer, ConsistentHashSkipsADownServerToTheNextPoint) {
    Upstream up = make_upstream({1, 1, 1}, BalanceMethod::Hash);
    up.hash_consistent = true;
    Fixture f(std::move(up));
    PickInput in{"some-key"};
    int home = f.pick_once(in);
    f.tried[home] = true;
    int next = f.pick_once(in);
    EXPECT_GE(next, 0);
    EXPECT_NE(next, home);
    f.tried[home] = false;
    EXPECT_EQ(f.pick_once(in), home);
}

TEST(Balancer, IpHashUsesThreeOctetsOfIPv4) {
    Fixture f(make_upstream({1, 1, 1, 1, 1}, BalanceMethod::IpHash));
    uint8_t a[3] = {192, 168, 1};
    uint8_t b[3] = {192, 168, 1};  // another host of the same /24
    PickInput ia{{}, a, 3};
    PickInput ib{{}, b, 3};
    int s = f.pick_once(ia);
    EXPECT_EQ(f.pick_once(ib), s);
    std::map<int, int> per;
    for (int x = 0; x < 256; ++x) {
        uint8_t c[3] = {10, static_cast<uint8_t>(x), 7};
        ++per[f.pick_once(PickInput{{}, c, 3})];
    }
    EXPECT_EQ(per.size(), 5u);
}

TEST(Balancer, RandomTwoPicksTheLessLoaded) {
    Upstream up = make_upstream({1, 1}, BalanceMethod::Random);
    up.random_two = true;
    Fixture f(std::move(up));
    f.set.state(0).conns = 10;
    for (int i = 0; i < 50; ++i) EXPECT_EQ(f.pick_once(), 1);
}

TEST(Balancer, RandomFollowsWeights) {
    Fixture f(make_upstream({3, 1}, BalanceMethod::Random));
    int first = 0;
    for (int i = 0; i < 8000; ++i) first += f.pick_once() == 0;
    EXPECT_NEAR(first / 8000.0, 0.75, 0.03);
}

TEST(Balancer, PassiveFailuresDisableForFailTimeout) {
    Upstream up = make_upstream({1, 1});
    up.servers[0].max_fails = 2;
    up.servers[0].fail_timeout_ms = 5000;
    Fixture f(std::move(up));
    f.set.failed(0, 1000);
    f.tried[1] = true;
    EXPECT_EQ(f.pick_once({}, 1000), 0);  // one failure of two
    f.set.failed(0, 1000);
    EXPECT_EQ(f.set.pick({}, f.tried, 1000).peer, -1);
    EXPECT_EQ(f.pick_once({}, 6000), 0);  // fail_timeout over
}

TEST(CircuitBreaker, Timeline) {
    BreakerConf c;
    c.enabled = true;
    c.failures = 3;
    c.cooldown_ms = 1000;
    c.probes = 1;
    c.successes = 2;
    PrivatePeerState st(1);
    PeerShm& p = st.get()->peers()[0];
    ShmMutex& m = st.get()->mutex;
    bool probe = false;
    BreakerEvent ev;
    EXPECT_EQ(breaker_result(p, c, 0, false, false), BreakerEvent::None);
    EXPECT_EQ(breaker_result(p, c, 0, true, false), BreakerEvent::None);  // resets the run
    EXPECT_EQ(breaker_result(p, c, 0, false, false), BreakerEvent::None);
    EXPECT_EQ(breaker_result(p, c, 0, false, false), BreakerEvent::None);
    EXPECT_EQ(breaker_result(p, c, 100, false, false), BreakerEvent::Opened);
    EXPECT_FALSE(breaker_admit(p, c, 500, m, probe, ev));
    EXPECT_TRUE(breaker_admit(p, c, 1100, m, probe, ev));
    EXPECT_TRUE(probe);
    EXPECT_EQ(ev, BreakerEvent::HalfOpened);
    EXPECT_FALSE(breaker_admit(p, c, 1100, m, probe, ev));  // one probe at a time
    EXPECT_EQ(breaker_result(p, c, 1200, false, true), BreakerEvent::Reopened);
    EXPECT_FALSE(breaker_admit(p, c, 2100, m, probe, ev));  // a new cool-down from 1200
    EXPECT_TRUE(breaker_admit(p, c, 2200, m, probe, ev));
    EXPECT_EQ(breaker_result(p, c, 2300, true, true), BreakerEvent::None);
    EXPECT_TRUE(breaker_admit(p, c, 2300, m, probe, ev));
    EXPECT_EQ(ev, BreakerEvent::None);
    EXPECT_EQ(breaker_result(p, c, 2400, true, true), BreakerEvent::Closed);
    EXPECT_TRUE(breaker_admit(p, c, 2400, m, probe, ev));
    EXPECT_FALSE(probe);
}

TEST(CircuitBreaker, AllOpenGives503InfoWithRetryAfter) {
    Upstream up = make_upstream({1, 1});
    up.breaker.enabled = true;
    up.breaker.failures = 1;
    up.breaker.cooldown_ms = 30000;
    Fixture f(std::move(up));
    for (int i = 0; i < 2; ++i) {
        PickResult r = f.set.pick({}, f.tried, 1000);
        ASSERT_GE(r.peer, 0);
        f.set.release(r, Outcome::Failure, 1000);
    }
    PickResult none = f.set.pick({}, f.tried, 2000);
    EXPECT_EQ(none.peer, -1);
    EXPECT_EQ(none.why, NoPeer::AllOpen);
    EXPECT_EQ(none.retry_after_ms, 29000);
    PickResult probe = f.set.pick({}, f.tried, 31000);
    EXPECT_GE(probe.peer, 0);
    EXPECT_TRUE(probe.probe);
    f.set.release(probe, Outcome::Neutral, 31000);  // the client left: the slot comes back
    EXPECT_EQ(f.set.state(probe.peer).probes.load(), 0);
}

TEST(HealthState, FailsThenPasses) {
    HealthCheckConf c;
    c.enabled = true;
    c.fails = 2;
    c.passes = 3;
    PrivatePeerState st(1);
    PeerShm& p = st.get()->peers()[0];
    EXPECT_EQ(health_result(p, c, false), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, true), HealthEvent::None);  // the run of failures resets
    EXPECT_EQ(health_result(p, c, false), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, false), HealthEvent::Down);
    EXPECT_EQ(health_result(p, c, true), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, true), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, false), HealthEvent::None);  // still down; passes restart
    EXPECT_EQ(health_result(p, c, true), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, true), HealthEvent::None);
    EXPECT_EQ(health_result(p, c, true), HealthEvent::Up);
}

TEST(Balancer, HealthDownServersAreSkippedOnlyWhenChecksAreOn) {
    Upstream up = make_upstream({1, 1});
    Fixture f(std::move(up));
    f.set.state(0).health_down = 1;
    std::map<int, int> n;
    for (int i = 0; i < 4; ++i) ++n[f.pick_once()];
    EXPECT_EQ(n[0], 2);  // no health_check: the stale flag means nothing
    Upstream up2 = make_upstream({1, 1});
    up2.health.enabled = true;
    Fixture g(std::move(up2));
    g.set.state(0).health_down = 1;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(g.pick_once(), 1);
}

}  // namespace
}  // namespace tollgate::proxy
