#include "modules/proxy/retry.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/config/values.hpp"
#include "modules/proxy/proxy_config.hpp"

namespace tollgate::proxy {

uint32_t status_condition(int status) {
    switch (status) {
        case 500:
            return kRetryHttp500;
        case 502:
            return kRetryHttp502;
        case 503:
            return kRetryHttp503;
        case 504:
            return kRetryHttp504;
        case 403:
            return kRetryHttp403;
        case 404:
            return kRetryHttp404;
        case 429:
            return kRetryHttp429;
        default:
            return 0;
    }
}

void merge_retry(const RetryLocConf& parent, RetryLocConf& child) {
    if (!child.conditions) child.conditions = parent.conditions;
    if (!child.tries) child.tries = parent.tries;
    if (!child.timeout_ms) child.timeout_ms = parent.timeout_ms;
    if (!child.backoff) child.backoff = parent.backoff;
}

// ---- budget --------------------------------------------------------------------------------

void RetryBudget::roll(const RetryBudgetConf& c, int64_t now_ms) {
    auto half = static_cast<int64_t>(std::max<uint64_t>(c.window_ms / 2, 1));
    if (bucket_start_ms_ == 0 || now_ms - bucket_start_ms_ >= 2 * half) {
        requests_ = requests_prev_ = retries_ = retries_prev_ = 0;
        bucket_start_ms_ = now_ms;
        return;
    }
    if (now_ms - bucket_start_ms_ >= half) {
        requests_prev_ = requests_;
        retries_prev_ = retries_;
        requests_ = retries_ = 0;
        bucket_start_ms_ += half;
    }
}

double RetryBudget::weighted(const RetryBudgetConf& c, int64_t now_ms, uint64_t cur,
                             uint64_t prev) const {
    double half = static_cast<double>(std::max<uint64_t>(c.window_ms / 2, 1));
    double into = static_cast<double>(now_ms - bucket_start_ms_) / half;
    return static_cast<double>(cur) + static_cast<double>(prev) * std::max(0.0, 1.0 - into);
}

void RetryBudget::on_request(const RetryBudgetConf& c, int64_t now_ms) {
    roll(c, now_ms);
    ++requests_;
}

bool RetryBudget::try_retry(const RetryBudgetConf& c, int64_t now_ms) {
    roll(c, now_ms);
    double allowed = c.min_per_s * static_cast<double>(c.window_ms) / 1000.0 +
                     c.ratio * weighted(c, now_ms, requests_, requests_prev_);
    if (weighted(c, now_ms, retries_, retries_prev_) + 1.0 > allowed + 1e-9) return false;
    ++retries_;
    return true;
}

double RetryBudget::requests(const RetryBudgetConf& c, int64_t now_ms) {
    roll(c, now_ms);
    return weighted(c, now_ms, requests_, requests_prev_);
}

double RetryBudget::retries(const RetryBudgetConf& c, int64_t now_ms) {
    roll(c, now_ms);
    return weighted(c, now_ms, retries_, retries_prev_);
}

// ---- backoff and the decision ------------------------------------------------------------

uint64_t backoff_delay_ms(const BackoffConf& b, uint32_t n, double unit) {
    if (b.base_ms == 0 || n == 0) return 0;
    uint64_t d = b.base_ms;
    for (uint32_t i = 1; i < n && d < b.cap_ms; ++i) d *= 2;
    d = std::min(d, b.cap_ms);
    if (!b.jitter) return d;
    unit = std::clamp(unit, 0.0, 1.0);
    return static_cast<uint64_t>(static_cast<double>(d) * unit);
}

std::string_view retry_verdict_text(RetryVerdict v) {
    switch (v) {
        case RetryVerdict::Retry:
            return "retry";
        case RetryVerdict::NotConfigured:
            return "not in proxy_next_upstream";
        case RetryVerdict::NonIdempotent:
            return "non-idempotent request already sent";
        case RetryVerdict::BodyNotKept:
            return "request body too large to replay";
        case RetryVerdict::TriesExhausted:
            return "proxy_next_upstream_tries reached";
        case RetryVerdict::TimedOut:
            return "proxy_next_upstream_timeout reached";
        case RetryVerdict::BudgetSpent:
            return "retry budget spent";
    }
    return "";
}

RetryVerdict decide_retry(const RetryLocConf& c, const RetryFacts& f, const RetryBudgetConf* bc,
                          RetryBudget* budget) {
    uint32_t mask = c.mask();
    if ((mask & f.condition) == 0 || f.condition == 0) return RetryVerdict::NotConfigured;
    if (f.request_sent && f.non_idempotent_method && (mask & kRetryNonIdempotent) == 0) {
        return RetryVerdict::NonIdempotent;
    }
    if (f.body_lost) return RetryVerdict::BodyNotKept;
    uint64_t tries = c.tries.value_or(0);
    if (tries != 0 && f.attempts >= tries) return RetryVerdict::TriesExhausted;
    uint64_t timeout = c.timeout_ms.value_or(0);
    if (timeout != 0 && f.now_ms - f.first_start_ms >= static_cast<int64_t>(timeout)) {
        return RetryVerdict::TimedOut;
    }
    if (bc != nullptr && bc->enabled && budget != nullptr && !budget->try_retry(*bc, f.now_ms)) {
        return RetryVerdict::BudgetSpent;
    }
    return RetryVerdict::Retry;
}

RetryBudget& worker_budget(const Upstream& up) {
    // Made in each worker after fork (the master never proxies); indexed like the upstreams.
    static std::vector<RetryBudget> budgets;
    if (budgets.size() <= up.index) budgets.resize(up.index + 1);
    return budgets[up.index];
}

double jitter_unit() {
    static std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// ---- directives ----------------------------------------------------------------------------

namespace {

RetryLocConf& retry_conf(DirectiveContext& ctx) {
    return ctx.conf<ProxyLocConf>().retry;
}

}  // namespace

void proxy_next_upstream(DirectiveContext& ctx) {
    RetryLocConf& c = retry_conf(ctx);
    if (c.conditions) ctx.duplicate();
    static constexpr std::pair<std::string_view, uint32_t> kNames[] = {
        {"error", kRetryError},
        {"timeout", kRetryTimeout},
        {"invalid_header", kRetryInvalidHeader},
        {"http_500", kRetryHttp500},
        {"http_502", kRetryHttp502},
        {"http_503", kRetryHttp503},
        {"http_504", kRetryHttp504},
        {"http_403", kRetryHttp403},
        {"http_404", kRetryHttp404},
        {"http_429", kRetryHttp429},
        {"non_idempotent", kRetryNonIdempotent},
    };
    uint32_t mask = 0;
    bool off = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a == "off") {
            off = true;
            continue;
        }
        auto it = std::find_if(std::begin(kNames), std::end(kNames),
                               [&](const auto& n) { return n.first == a; });
        if (it == std::end(kNames)) ctx.invalid_value(i);
        mask |= it->second;
    }
    if (off && ctx.nargs() > 1) ctx.fail("\"off\" cannot be combined with other values");
    c.conditions = off ? 0u : mask;
}

void proxy_next_upstream_tries(DirectiveContext& ctx) {
    RetryLocConf& c = retry_conf(ctx);
    if (c.tries) ctx.duplicate();
    c.tries = static_cast<uint64_t>(ctx.int_arg(0, 0, 1000000));
}

void proxy_next_upstream_timeout(DirectiveContext& ctx) {
    RetryLocConf& c = retry_conf(ctx);
    if (c.timeout_ms) ctx.duplicate();
    c.timeout_ms = ctx.time_ms_arg(0);
}

void proxy_next_upstream_backoff(DirectiveContext& ctx) {
    RetryLocConf& c = retry_conf(ctx);
    if (c.backoff) ctx.duplicate();
    BackoffConf b;
    if (ctx.nargs() == 1 && ctx.arg(0) == "off") {
        c.backoff = b;
        return;
    }
    bool have_base = false;
    bool have_cap = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.substr(0, 5) == "base=") {
            auto t = conf::parse_time_ms(a.substr(5));
            if (!t || *t == 0 || *t > 3600000) ctx.invalid_value(i);
            b.base_ms = *t;
            have_base = true;
        } else if (a.substr(0, 4) == "cap=") {
            auto t = conf::parse_time_ms(a.substr(4));
            if (!t || *t == 0 || *t > 3600000) ctx.invalid_value(i);
            b.cap_ms = *t;
            have_cap = true;
        } else if (a == "jitter=full" || a == "jitter=none") {
            b.jitter = a == "jitter=full";
        } else {
            ctx.invalid_value(i);
        }
    }
    if (!have_base) ctx.fail("\"proxy_next_upstream_backoff\" needs base=TIME or off");
    if (!have_cap) b.cap_ms = std::max<uint64_t>(b.cap_ms, b.base_ms);
    if (b.cap_ms < b.base_ms) ctx.fail("\"proxy_next_upstream_backoff\": cap is below base");
    c.backoff = b;
}

void upstream_retry_budget(DirectiveContext& ctx) {
    Upstream& up = *ctx.conf<ProxyMainConf>().upstreams.back();
    if (up.retry_budget_set) ctx.duplicate();
    up.retry_budget_set = true;
    RetryBudgetConf b;
    if (ctx.nargs() == 1 && ctx.arg(0) == "off") {
        up.retry_budget = b;
        return;
    }
    b.enabled = true;
    bool have_ratio = false;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.substr(0, 6) == "ratio=") {
            std::string v(a.substr(6));
            char* end = nullptr;
            double r = std::strtod(v.c_str(), &end);
            if (v.empty() || end == nullptr || *end != '\0' || !(r >= 0.0) || r > 100.0) {
                ctx.invalid_value(i);
            }
            b.ratio = r;
            have_ratio = true;
        } else if (a.substr(0, 4) == "min=") {
            std::string_view v = a.substr(4);
            if (v.size() > 2 && v.substr(v.size() - 2) == "/s") v.remove_suffix(2);
            auto n = conf::parse_int(v);
            if (!n || *n < 0 || *n > 1000000) ctx.invalid_value(i);
            b.min_per_s = static_cast<double>(*n);
        } else if (a.substr(0, 7) == "window=") {
            auto t = conf::parse_time_ms(a.substr(7));
            if (!t || *t < 2 || *t > 3600000) ctx.invalid_value(i);
            b.window_ms = *t;
        } else {
            ctx.invalid_value(i);
        }
    }
    if (!have_ratio) ctx.fail("\"retry_budget\" needs ratio=R or off");
    up.retry_budget = b;
}

}  // namespace tollgate::proxy
