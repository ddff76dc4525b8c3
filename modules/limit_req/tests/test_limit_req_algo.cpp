// The limit_req algorithms on their own: nginx's leaky bucket and the sliding window.
#include <gtest/gtest.h>

#include <deque>

#include "modules/limit_req/limit_req_algo.hpp"

namespace tollgate::limit_req {
namespace {

TEST(LimitReqRate, Parse) {
    Rate r;
    ASSERT_TRUE(parse_rate("10r/s", r));
    EXPECT_EQ(r.count, 10u);
    EXPECT_EQ(r.period_ms, 1000u);
    EXPECT_EQ(r.milli_per_s, 10000u);
    ASSERT_TRUE(parse_rate("600r/m", r));
    EXPECT_EQ(r.milli_per_s, 10000u);
    ASSERT_TRUE(parse_rate("1r/m", r));
    EXPECT_EQ(r.milli_per_s, 16u);  // nginx truncates too
    for (const char* bad : {"", "r/s", "0r/s", "10", "10r/h", "-1r/s", "1x/s", "1234567890r/s"}) {
        EXPECT_FALSE(parse_rate(bad, r)) << bad;
    }
}

// Drives one key request by request, as the zone does.
struct Bucket {
    LeakyParams p;
    LeakyState s{};
    bool fresh = true;
    LeakyResult hit(int64_t now) {
        LeakyResult r = fresh ? leaky_first(p) : leaky_check(s, now, p);
        if (!r.rejected) {
            if (fresh) s = LeakyState{now, 0};
            leaky_commit(s, now, r);
            fresh = false;
        }
        return r;
    }
};

TEST(LeakyBucket, BurstQueuesThenRejects) {
    // rate=1r/s burst=3: the first passes, three more are delayed 1, 2, 3 s, the fifth rejected.
    Bucket b{{1000, 3000, 0}};
    EXPECT_EQ(b.hit(0).delay_ms, 0u);
    EXPECT_EQ(b.hit(0).delay_ms, 1000u);
    EXPECT_EQ(b.hit(0).delay_ms, 2000u);
    EXPECT_EQ(b.hit(0).delay_ms, 3000u);
    LeakyResult r = b.hit(0);
    EXPECT_TRUE(r.rejected);
    EXPECT_EQ(r.retry_ms, 1000u);
    EXPECT_FALSE(b.hit(1000).rejected);  // one drained
}

TEST(LeakyBucket, NodelayServesBurstAtOnce) {
    Bucket b{{1000, 3000, UINT64_MAX / 4}};
    for (int i = 0; i < 4; ++i) {
        LeakyResult r = b.hit(0);
        EXPECT_FALSE(r.rejected);
        EXPECT_EQ(r.delay_ms, 0u);
    }
    EXPECT_TRUE(b.hit(0).rejected);
    EXPECT_TRUE(b.hit(999).rejected);
    EXPECT_FALSE(b.hit(1000).rejected);
}

TEST(LeakyBucket, DelayServesFirstExcessAtOnce) {
    // burst=5 delay=2: first + 2 undelayed, then 3 delayed, then rejected.
    Bucket b{{1000, 5000, 2000}};
    for (int i = 0; i < 3; ++i) EXPECT_EQ(b.hit(0).delay_ms, 0u) << i;
    EXPECT_EQ(b.hit(0).delay_ms, 1000u);
    EXPECT_EQ(b.hit(0).delay_ms, 2000u);
    EXPECT_EQ(b.hit(0).delay_ms, 3000u);
    EXPECT_TRUE(b.hit(0).rejected);
}

TEST(LeakyBucket, StaleWhenDrained) {
    LeakyState s{0, 2000};
    EXPECT_FALSE(leaky_stale(s, 1000, 1000));
    EXPECT_FALSE(leaky_stale(s, 2000, 1000));  // drained, but younger than a minute
    EXPECT_TRUE(leaky_stale(s, 60000, 1000));
    EXPECT_FALSE(leaky_stale(LeakyState{0, 70000000}, 60000, 1000));
}

// The sliding window never admits more than `limit` in any window, whatever the arrival times.
TEST(SlidingWindow, NeverOverAdmitsInAnyWindow) {
    WindowParams p{10, 1000};
    WindowState s{};
    std::deque<int64_t> admitted;
    uint64_t total = 0;
    // Arrivals every 7 ms for 10 s, bursts around boundaries included.
    for (int64_t t = 100000; t < 110000; t += 7) {
        WindowResult r = window_update(s, t, p);
        if (r.rejected) continue;
        ++total;
        admitted.push_back(t);
        while (!admitted.empty() && admitted.front() <= t - 1000) admitted.pop_front();
        ASSERT_LE(admitted.size(), 10u) << "at " << t;
    }
    EXPECT_GE(total, 80u);  // not starved: at least (limit - one sub-window) per window
}

TEST(SlidingWindow, NoDoublingAtBoundary) {
    WindowParams p{10, 1000};
    WindowState s{};
    int passed = 0;
    for (int i = 0; i < 20; ++i) passed += !window_update(s, 999, p).rejected;
    for (int i = 0; i < 20; ++i) passed += !window_update(s, 1001, p).rejected;
    EXPECT_EQ(passed, 10);
    WindowResult r = window_update(s, 1001, p);
    EXPECT_TRUE(r.rejected);
    EXPECT_GT(r.retry_ms, 0u);
    EXPECT_LE(r.retry_ms, 1100u);
    EXPECT_FALSE(window_update(s, 1001 + r.retry_ms, p).rejected);
}

TEST(SlidingWindow, StaleAfterAWindow) {
    WindowParams p{10, 1000};
    WindowState s{};
    (void)window_update(s, 5000, p);
    EXPECT_FALSE(window_stale(s, 5500));
    EXPECT_TRUE(window_stale(s, 6200));
}

}  // namespace
}  // namespace tollgate::limit_req
