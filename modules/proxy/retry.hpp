// Retries of a proxied request on the next upstream server (nginx's proxy_next_upstream) and
// tollgate's additions: exponential backoff with full jitter between tries and a retry budget
// per upstream. The policy and its arithmetic live here; the exchange (proxy.cpp) asks
// RetryState::allow() at each failure before the response reaches the client.
//
//   proxy_next_upstream error | timeout | invalid_header | http_500 | http_502 | http_503 |
//       http_504 | http_403 | http_404 | http_429 | non_idempotent | off ...;   (error timeout)
//   proxy_next_upstream_tries N;        (0: unlimited, i.e. every server once)
//   proxy_next_upstream_timeout T;      (0: unlimited)
//   proxy_next_upstream_backoff off | base=T [cap=T] [jitter=full|none];         (off)
//                                                                   http, server, location
//   retry_budget ratio=R [min=N/s] [window=T] | off;                 upstream  (off)
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

#include "core/module.hpp"

namespace tollgate::proxy {

struct Upstream;

// What made an attempt fail: the proxy_next_upstream condition it matches.
enum RetryCondition : uint32_t {
    kRetryError = 1u << 0,
    kRetryTimeout = 1u << 1,
    kRetryInvalidHeader = 1u << 2,
    kRetryHttp500 = 1u << 3,
    kRetryHttp502 = 1u << 4,
    kRetryHttp503 = 1u << 5,
    kRetryHttp504 = 1u << 6,
    kRetryHttp403 = 1u << 7,
    kRetryHttp404 = 1u << 8,
    kRetryHttp429 = 1u << 9,
    kRetryNonIdempotent = 1u << 10,  // a flag, not a condition
};

// The condition an upstream status matches, or 0 when no http_* condition names it.
uint32_t status_condition(int status);

// proxy_next_upstream_backoff: before retry n (n = 1 for the first retry) the exchange waits
// min(cap, base * 2^(n-1)), scaled by a uniform random factor in [0, 1) with full jitter.
struct BackoffConf {
    uint64_t base_ms = 0;  // 0: off (retry at once, as nginx)
    uint64_t cap_ms = 1000;
    bool jitter = true;
};

// The location's retry settings (merged field by field, as nginx merges each directive).
struct RetryLocConf {
    std::optional<uint32_t> conditions;  // RetryCondition bits; 0: off
    std::optional<uint64_t> tries;       // 0: unlimited
    std::optional<uint64_t> timeout_ms;  // 0: unlimited
    std::optional<BackoffConf> backoff;

    uint32_t mask() const { return conditions.value_or(kRetryError | kRetryTimeout); }
    // True when some failure could ever be retried here (then a small request body is kept
    // for replay).
    bool may_retry() const {
        return (mask() & ~kRetryNonIdempotent) != 0 && tries.value_or(0) != 1;
    }
};
void merge_retry(const RetryLocConf& parent, RetryLocConf& child);

// retry_budget (upstream block): retries may add at most `ratio` of the requests this worker
// sent to the upstream in the last `window`, plus `min_per_s` retries per second of it.
struct RetryBudgetConf {
    bool enabled = false;
    double ratio = 0.2;
    double min_per_s = 10;
    uint64_t window_ms = 10000;
};

// The budget's counters for one upstream in one worker: two half-window buckets, the older
// weighted by how much of it still lies inside the sliding window.
class RetryBudget {
  public:
    void on_request(const RetryBudgetConf& c, int64_t now_ms);
    // Takes one retry from the budget; false when it is spent.
    bool try_retry(const RetryBudgetConf& c, int64_t now_ms);
    // The counts in the current window (tests).
    double requests(const RetryBudgetConf& c, int64_t now_ms);
    double retries(const RetryBudgetConf& c, int64_t now_ms);

  private:
    void roll(const RetryBudgetConf& c, int64_t now_ms);
    double weighted(const RetryBudgetConf& c, int64_t now_ms, uint64_t cur, uint64_t prev) const;
    int64_t bucket_start_ms_ = 0;
    uint64_t requests_ = 0, requests_prev_ = 0;
    uint64_t retries_ = 0, retries_prev_ = 0;
};

// The delay before retry number `n` (1-based); `unit` is a uniform random number in [0, 1).
uint64_t backoff_delay_ms(const BackoffConf& b, uint32_t n, double unit);

// Why a failed attempt is not retried (for the log), or Retry.
enum class RetryVerdict : uint8_t {
    Retry,
    NotConfigured,   // the condition is not in proxy_next_upstream
    NonIdempotent,   // POST/PATCH/LOCK already sent, without non_idempotent
    BodyNotKept,     // the request body was larger than what is kept for replay
    TriesExhausted,  // proxy_next_upstream_tries
    TimedOut,        // proxy_next_upstream_timeout
    BudgetSpent,     // retry_budget
};
std::string_view retry_verdict_text(RetryVerdict v);

// The request's side of the policy (in the exchange).
struct RetryFacts {
    uint32_t condition = 0;     // RetryCondition of this failure
    bool request_sent = false;  // some of the request went to the upstream
    bool non_idempotent_method = false;
    bool body_lost = false;  // request body bytes were sent and not kept
    uint64_t attempts = 0;   // attempts made so far, this one included
    int64_t first_start_ms = 0;
    int64_t now_ms = 0;
};
// Decides whether a failure may go to the next server (the budget is asked last, and only
// then takes a retry). `budget` is null when the upstream has none.
RetryVerdict decide_retry(const RetryLocConf& c, const RetryFacts& f, const RetryBudgetConf* bc,
                          RetryBudget* budget);

// The per-worker budget of an upstream block (made on first use; a process's own).
RetryBudget& worker_budget(const Upstream& up);
// A uniform random number in [0, 1) from the worker's generator.
double jitter_unit();

// Directive handlers (registered in proxy_config.cpp's table).
void proxy_next_upstream(DirectiveContext& ctx);
void proxy_next_upstream_tries(DirectiveContext& ctx);
void proxy_next_upstream_timeout(DirectiveContext& ctx);
void proxy_next_upstream_backoff(DirectiveContext& ctx);
void upstream_retry_budget(DirectiveContext& ctx);

}  // namespace tollgate::proxy
