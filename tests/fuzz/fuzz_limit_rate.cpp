// Fuzzes limit_req's rate parser ("10r/s", "600r/m") and drives both rate algorithms with the
// parsed rate and fuzzed arrival times: no crash, no overflow trap, and the sliding window never
// admits more than its limit within one window.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string_view>

#include "modules/limit_req/limit_req_algo.hpp"

using namespace tollgate::limit_req;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    size_t text_len = size > 0 ? std::min<size_t>(data[0], size - 1) : 0;
    std::string_view text(reinterpret_cast<const char*>(data) + 1, text_len);
    Rate rate;
    if (!parse_rate(text, rate)) {
        rate = Rate{5, 1000, 5000};
    }
    if (rate.count > 1000) rate.count = 1000;  // bounded work per input
    const uint8_t* p = data + 1 + text_len;
    size_t n = size - (size > 0 ? 1 + text_len : 0);
    LeakyParams lp{rate.milli_per_s, (n > 0 ? p[0] % 8 : 0) * 1000ull,
                   (n > 1 ? p[1] % 8 : 0) * 1000ull};
    LeakyState ls{0, 0};
    bool fresh = true;
    WindowParams wp{rate.count, rate.period_ms};
    WindowState ws{};
    std::deque<int64_t> admitted;
    int64_t now = 1000000;
    for (size_t i = 2; i < n; ++i) {
        now += p[i] * (p[i] & 1 ? 1 : 37);
        LeakyResult r = fresh ? leaky_first(lp) : leaky_check(ls, now, lp);
        if (!r.rejected) {
            if (fresh) ls = LeakyState{now, 0};
            leaky_commit(ls, now, r);
            fresh = false;
        }
        (void)leaky_stale(ls, now, lp.rate);
        WindowResult w = window_update(ws, now, wp);
        if (!w.rejected) {
            admitted.push_back(now);
            while (!admitted.empty() &&
                   admitted.front() <= now - static_cast<int64_t>(wp.window_ms))
                admitted.pop_front();
            if (admitted.size() > wp.limit) __builtin_trap();
        }
        (void)window_stale(ws, now);
    }
    return 0;
}
