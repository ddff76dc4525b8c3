#include "modules/limit_req/limit_req_algo.hpp"

#include <cstring>

namespace tollgate::limit_req {

bool parse_rate(std::string_view text, Rate& out) {
    uint64_t period = 0;
    if (text.size() > 3 && text.substr(text.size() - 3) == "r/s") {
        period = 1000;
    } else if (text.size() > 3 && text.substr(text.size() - 3) == "r/m") {
        period = 60000;
    } else {
        return false;
    }
    std::string_view digits = text.substr(0, text.size() - 3);
    if (digits.empty() || digits.size() > 9) return false;
    uint64_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n == 0) return false;
    out.count = n;
    out.period_ms = period;
    out.milli_per_s = n * 1000 * 1000 / period;  // as nginx: rate * 1000 / scale
    return out.milli_per_s > 0;
}

namespace {
uint64_t ceil_div(uint64_t a, uint64_t b) {
    return (a + b - 1) / b;
}
}  // namespace

LeakyResult leaky_check(const LeakyState& s, int64_t now_ms, const LeakyParams& p) {
    LeakyResult r;
    int64_t ms = now_ms - s.last_ms;
    if (ms < -60000) {
        ms = 1;  // the clock jumped far back: as nginx, count one millisecond
    } else if (ms < 0) {
        ms = 0;
    }
    int64_t rate = static_cast<int64_t>(p.rate);
    int64_t excess = s.excess - rate * ms / 1000 + 1000;
    if (excess < 0) excess = 0;
    r.excess = excess;
    int64_t burst = static_cast<int64_t>(p.burst);
    if (excess > burst) {
        r.rejected = true;
        // Until the drained level plus this request fits the burst: (excess - burst) / rate.
        r.retry_ms = ceil_div(static_cast<uint64_t>(excess - burst) * 1000, p.rate);
        r.reset_ms = ceil_div(static_cast<uint64_t>(excess - 1000) * 1000, p.rate);
        r.remaining = 0;
        return r;
    }
    uint64_t ex = static_cast<uint64_t>(excess);
    r.delay_ms = ex <= p.delay ? 0 : (ex - p.delay) * 1000 / p.rate;
    r.remaining = (p.burst - ex) / 1000;
    r.reset_ms = ceil_div(ex * 1000, p.rate);
    return r;
}

LeakyResult leaky_first(const LeakyParams& p) {
    LeakyResult r;
    r.remaining = p.burst / 1000;
    return r;
}

void leaky_commit(LeakyState& s, int64_t now_ms, const LeakyResult& r) {
    s.excess = r.excess;
    int64_t ms = now_ms - s.last_ms;
    if (ms > 0 || ms < -60000) s.last_ms = now_ms;  // as nginx: "if (ms) lr->last = now"
}

bool leaky_stale(const LeakyState& s, int64_t now_ms, uint64_t rate) {
    int64_t ms = now_ms - s.last_ms;
    if (ms < 0) ms = -ms;
    if (ms < 60000) return false;  // as nginx: a state younger than a minute is kept
    return s.excess - static_cast<int64_t>(rate) * ms / 1000 <= 0;
}

namespace {

// Zeroes the sub-windows between the state's newest and `cur`, and makes `cur` the newest.
void advance(WindowState& s, int64_t cur) {
    if (cur <= s.slot) return;  // same sub-window (or the clock went back: keep counting)
    if (cur - s.slot >= kSlots + 1) {
        std::memset(s.counts, 0, sizeof(s.counts));
    } else {
        for (int64_t j = s.slot + 1; j <= cur; ++j) s.counts[j % (kSlots + 1)] = 0;
    }
    s.slot = cur;
}

// Milliseconds from `now_ms` until the oldest non-empty counted sub-window leaves the window.
uint64_t oldest_leaves_in(const WindowState& s, int64_t now_ms, int64_t slot_ms) {
    for (int64_t j = s.slot - kSlots; j <= s.slot; ++j) {
        if (j >= 0 && s.counts[j % (kSlots + 1)] != 0) {
            int64_t leaves = (j + kSlots + 1) * slot_ms;
            return leaves > now_ms ? static_cast<uint64_t>(leaves - now_ms) : 0;
        }
    }
    return 0;
}

}  // namespace

WindowResult window_update(WindowState& s, int64_t now_ms, const WindowParams& p) {
    WindowResult r;
    int64_t slot_ms = static_cast<int64_t>(p.window_ms) / kSlots;
    if (slot_ms <= 0) slot_ms = 1;
    int64_t cur = now_ms / slot_ms;
    if (s.window_ms != static_cast<int64_t>(p.window_ms)) {
        // A fresh key, or its window changed (a tiered rate): start counting anew.
        std::memset(&s, 0, sizeof(s));
        s.window_ms = static_cast<int64_t>(p.window_ms);
        s.slot = cur;
    }
    advance(s, cur);
    uint64_t sum = 0;
    for (uint32_t c : s.counts) sum += c;
    if (sum + 1 > p.limit) {
        r.rejected = true;
        r.retry_ms = oldest_leaves_in(s, now_ms, slot_ms);
        if (r.retry_ms == 0) r.retry_ms = static_cast<uint64_t>(slot_ms);
        r.reset_ms = r.retry_ms;
        return r;
    }
    s.counts[s.slot % (kSlots + 1)] += 1;
    r.remaining = p.limit - sum - 1;
    r.reset_ms = oldest_leaves_in(s, now_ms, slot_ms);
    return r;
}

bool window_stale(const WindowState& s, int64_t now_ms) {
    int64_t slot_ms = s.window_ms / kSlots;
    if (slot_ms <= 0) return true;
    return now_ms / slot_ms - s.slot > kSlots;
}

}  // namespace tollgate::limit_req
