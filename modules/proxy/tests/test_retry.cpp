// The retry policy's arithmetic (modules/proxy/retry.hpp): conditions, limits, backoff with
// full jitter and the retry budget.
#include <gtest/gtest.h>

#include "modules/proxy/retry.hpp"

namespace tollgate::proxy {
namespace {

RetryFacts facts(uint32_t cond) {
    RetryFacts f;
    f.condition = cond;
    f.attempts = 1;
    f.first_start_ms = 1000;
    f.now_ms = 1000;
    return f;
}

TEST(Retry, DefaultIsErrorAndTimeout) {
    RetryLocConf c;
    EXPECT_EQ(decide_retry(c, facts(kRetryError), nullptr, nullptr), RetryVerdict::Retry);
    EXPECT_EQ(decide_retry(c, facts(kRetryTimeout), nullptr, nullptr), RetryVerdict::Retry);
    EXPECT_EQ(decide_retry(c, facts(kRetryHttp502), nullptr, nullptr), RetryVerdict::NotConfigured);
    EXPECT_EQ(decide_retry(c, facts(kRetryInvalidHeader), nullptr, nullptr),
              RetryVerdict::NotConfigured);
    EXPECT_TRUE(c.may_retry());
    c.conditions = 0;  // off
    EXPECT_EQ(decide_retry(c, facts(kRetryError), nullptr, nullptr), RetryVerdict::NotConfigured);
    EXPECT_FALSE(c.may_retry());
}

TEST(Retry, StatusConditions) {
    EXPECT_EQ(status_condition(502), kRetryHttp502);
    EXPECT_EQ(status_condition(429), kRetryHttp429);
    EXPECT_EQ(status_condition(404), kRetryHttp404);
    EXPECT_EQ(status_condition(200), 0u);
    EXPECT_EQ(status_condition(501), 0u);
}

TEST(Retry, NonIdempotentOnlyOnceSent) {
    RetryLocConf c;
    RetryFacts f = facts(kRetryError);
    f.non_idempotent_method = true;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::Retry);  // nothing sent yet
    f.request_sent = true;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::NonIdempotent);
    c.conditions = kRetryError | kRetryNonIdempotent;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::Retry);
}

TEST(Retry, TriesTimeoutAndBody) {
    RetryLocConf c;
    c.tries = 2;
    RetryFacts f = facts(kRetryError);
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::Retry);
    f.attempts = 2;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::TriesExhausted);
    c.tries = 0;  // unlimited
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::Retry);
    c.timeout_ms = 500;
    f.now_ms = f.first_start_ms + 499;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::Retry);
    f.now_ms = f.first_start_ms + 500;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::TimedOut);
    c.timeout_ms = 0;
    f.body_lost = true;
    EXPECT_EQ(decide_retry(c, f, nullptr, nullptr), RetryVerdict::BodyNotKept);
    c.tries = 1;
    EXPECT_FALSE(c.may_retry());
}

TEST(Retry, BackoffDoublesUpToTheCap) {
    BackoffConf b{100, 1000, false};
    EXPECT_EQ(backoff_delay_ms(b, 1, 0.5), 100u);
    EXPECT_EQ(backoff_delay_ms(b, 2, 0.5), 200u);
    EXPECT_EQ(backoff_delay_ms(b, 3, 0.5), 400u);
    EXPECT_EQ(backoff_delay_ms(b, 4, 0.5), 800u);
    EXPECT_EQ(backoff_delay_ms(b, 5, 0.5), 1000u);
    EXPECT_EQ(backoff_delay_ms(b, 60, 0.5), 1000u);  // no overflow
    BackoffConf off{0, 1000, true};
    EXPECT_EQ(backoff_delay_ms(off, 3, 0.9), 0u);
}

TEST(Retry, FullJitterStaysBelowTheExponentialBound) {
    BackoffConf b{50, 1000, true};
    EXPECT_EQ(backoff_delay_ms(b, 1, 0.0), 0u);
    EXPECT_EQ(backoff_delay_ms(b, 3, 0.5), 100u);  // half of 200
    for (uint32_t n = 1; n <= 8; ++n) {
        uint64_t bound = std::min<uint64_t>(1000, 50ull << (n - 1));
        double sum = 0;
        for (int i = 0; i < 2000; ++i) {
            uint64_t d = backoff_delay_ms(b, n, jitter_unit());
            EXPECT_LT(d, bound + 1);
            sum += static_cast<double>(d);
        }
        double mean = sum / 2000;  // uniform on [0, bound): mean bound/2
        EXPECT_NEAR(mean, bound / 2.0, bound * 0.1);
    }
}

TEST(Retry, BudgetCapsRetriesAtTheRatio) {
    RetryBudgetConf c;
    c.enabled = true;
    c.ratio = 0.2;
    c.min_per_s = 0;
    c.window_ms = 10000;
    RetryBudget b;
    int64_t now = 5000000;
    int granted = 0;
    for (int i = 0; i < 1000; ++i) {
        b.on_request(c, now);
        for (int k = 0; k < 3; ++k) granted += b.try_retry(c, now) ? 1 : 0;  // everyone wants 3
        now += 1;  // 1000 requests in one second
    }
    EXPECT_LE(granted, 200);
    EXPECT_GE(granted, 195);
}

TEST(Retry, BudgetMinimumAndWindow) {
    RetryBudgetConf c;
    c.enabled = true;
    c.ratio = 0;
    c.min_per_s = 1;
    c.window_ms = 4000;  // a reserve of 4 retries per window
    RetryBudget b;
    int64_t now = 1000000;
    int granted = 0;
    for (int i = 0; i < 10; ++i) granted += b.try_retry(c, now) ? 1 : 0;
    EXPECT_EQ(granted, 4);
    // Two windows later the old retries have slid out.
    now += 8000;
    EXPECT_TRUE(b.try_retry(c, now));
    // Three quarters of a window later, half of the older bucket still lies inside it.
    EXPECT_NEAR(b.retries(c, now + 1000), 1.0, 1e-9);
    EXPECT_NEAR(b.retries(c, now + 3000), 0.5, 1e-9);
}

}  // namespace
}  // namespace tollgate::proxy
