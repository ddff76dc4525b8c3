// The rate algorithms of limit_req, pure and small: one function per algorithm updates the state
// of ONE key at time `now_ms` and says what the request gets. The shared-memory zone calls them
// under its lock; a cluster backend (Redis) can run the same arithmetic in its script.
//
//  * leaky bucket (nginx's, the default): `excess` in milli-requests drains at `rate` (milli-
//    requests per second); each request adds 1000. Above `burst` the request is rejected, else
//    the part of the excess above `delay` is served late: (excess - delay) / rate seconds.
//  * sliding window (algorithm=sliding_window): at most `limit` requests in ANY window of
//    `window_ms`, boundaries included. The window is cut into kSlots sub-windows; a request is
//    admitted when the requests of every sub-window that overlaps (now - window, now] plus this
//    one stay within the limit. Counting the partly-overlapping oldest sub-window whole is
//    conservative: it may under-admit by at most that sub-window's count, it never over-admits.
#pragma once

#include <cstdint>
#include <string_view>

namespace tollgate::limit_req {

enum class Algorithm : uint8_t { LeakyBucket, SlidingWindow };

// A parsed "10r/s" / "600r/m".
struct Rate {
    uint64_t count = 0;        // N
    uint64_t period_ms = 0;    // 1000 or 60000
    uint64_t milli_per_s = 0;  // nginx's rate: N * 1000 / (period in s)
};
// Parses "Nr/s" or "Nr/m" (N from 1 to 10^9). Returns false on anything else.
bool parse_rate(std::string_view text, Rate& out);

// ---- leaky bucket -----------------------------------------------------------------------------

struct LeakyState {
    int64_t last_ms;  // when the excess was last updated
    int64_t excess;   // milli-requests
};

struct LeakyParams {
    uint64_t rate = 0;   // milli-requests per second
    uint64_t burst = 0;  // milli-requests
    uint64_t delay = 0;  // milli-requests served without delay (nodelay: UINT64_MAX / 2)
};

struct LeakyResult {
    bool rejected = false;
    int64_t excess = 0;      // the excess this request would leave (committed when admitted)
    uint64_t delay_ms = 0;   // how long an admitted request waits
    uint64_t retry_ms = 0;   // rejected: how long until a request would pass
    uint64_t remaining = 0;  // requests that would pass right now after this one
    uint64_t reset_ms = 0;   // until the bucket is empty
};

// Computes the request's outcome against `s` (a fresh key has s = {now_ms, 0}). Does not change
// `s`; leaky_commit() does, for an admitted request.
LeakyResult leaky_check(const LeakyState& s, int64_t now_ms, const LeakyParams& p);
// The outcome for a key's first request (no state yet): as nginx, it passes and starts the
// key at excess 0 (the request itself is not counted).
LeakyResult leaky_first(const LeakyParams& p);
void leaky_commit(LeakyState& s, int64_t now_ms, const LeakyResult& r);
// True when a key's state may be forgotten: untouched for a minute and fully drained (nginx).
bool leaky_stale(const LeakyState& s, int64_t now_ms, uint64_t rate);

// ---- sliding window ---------------------------------------------------------------------------

inline constexpr int kSlots = 10;  // sub-windows per window

struct WindowState {
    int64_t slot;                 // index (now / slot_ms) of the newest sub-window counted
    int64_t window_ms;            // the window these counts were made for
    uint32_t counts[kSlots + 1];  // ring by slot % (kSlots + 1)
};

struct WindowParams {
    uint64_t limit = 0;      // requests per window
    uint64_t window_ms = 0;  // 1000 or 60000 (a multiple of kSlots)
};

struct WindowResult {
    bool rejected = false;
    uint64_t retry_ms = 0;   // rejected: until the oldest counted sub-window leaves the window
    uint64_t remaining = 0;  // after this request
    uint64_t reset_ms = 0;   // until the oldest counted sub-window leaves (0: nothing counted)
};

// Checks and, when admitted, counts the request in `s` (a fresh key has s zeroed).
WindowResult window_update(WindowState& s, int64_t now_ms, const WindowParams& p);
// True when nothing the state counts is still inside a window at `now_ms`.
bool window_stale(const WindowState& s, int64_t now_ms);

}  // namespace tollgate::limit_req
