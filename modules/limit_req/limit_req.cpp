// limit_req at run time: per request, every limit of the location is checked under its zone's
// lock (all zones locked at once, in address order, so the decision is atomic across workers),
// the request is admitted, delayed on a worker timer, or rejected; nothing is committed for a
// rejected request (as nginx: a rejected request consumes no zone's allowance).
#include "modules/limit_req/limit_req.hpp"

#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <memory_resource>

#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "core/redis.hpp"
#include "core/redis_scripts.hpp"

namespace tollgate::limit_req {
namespace {

EventLoop* worker_loop = nullptr;

// This worker's Redis clients, one per distinct URL (init_worker .. exit_worker).
struct WorkerRedis {
    std::string url;  // unredacted, the identity
    std::unique_ptr<RedisClient> client;
};
std::vector<WorkerRedis> worker_redis;
bool worker_exiting = false;

int64_t mono_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct RequestCtx {
    Status status = Status::None;
};

RequestCtx& ctx_of(http::Request& r) {
    auto* ctx = static_cast<RequestCtx*>(r.module_ctx(module_idx()));
    if (ctx == nullptr) {
        void* p = r.arena->allocate(sizeof(RequestCtx), alignof(RequestCtx));
        ctx = new (p) RequestCtx();
        r.set_module_ctx(module_idx(), ctx);
    }
    return *ctx;
}

// A delayed request: a timer on the worker's loop resumes it. Lives in the request arena.
struct DelayTask final : http::RequestTask {
    std::unique_ptr<Timer> timer;
    void abort() override { timer->stop(); }
    static void destroy(void* p) { static_cast<DelayTask*>(p)->~DelayTask(); }
};

// What one limit says about this request.
struct Item {
    const Zone* zone = nullptr;
    const Limit* limit = nullptr;
    ZoneKey key;
    uint64_t rate_count = 0;  // N of "Nr/s"
    uint64_t period_ms = 0;
    LeakyParams leaky;
    LeakyResult lr;
    WindowState ws{};
    WindowResult wr;
    bool rejected = false;
    uint64_t retry_ms = 0;
    uint64_t remaining = 0;
    uint64_t reset_ms = 0;
    int64_t excess = 0;        // leaky: milli-requests, for the log
    bool remote = false;       // decided by Redis (not by the shm table)
    bool no_info = false;      // Redis away and failing open/closed: left out of the headers
    bool fail_closed = false;  // rejected because Redis is away (redis_fail=closed)
};

// Logs an invalid per-request rate at most once a second per worker (a bad map value would
// otherwise flood the error log).
void log_bad_rate(const Zone& z, std::string_view value) {
    static int64_t last = 0;
    int64_t now = mono_ms();
    if (last != 0 && now - last < 1000) return;
    last = now;
    LOG_ERROR("invalid rate \"%.*s\" for limit_req zone \"%s\" (expected Nr/s or Nr/m)",
              static_cast<int>(std::min<size_t>(value.size(), 64)), value.data(), z.name.c_str());
}

const char* status_text(Status s) {
    switch (s) {
        case Status::Passed:
            return "PASSED";
        case Status::Delayed:
            return "DELAYED";
        case Status::Rejected:
            return "REJECTED";
        case Status::DelayedDryRun:
            return "DELAYED_DRY_RUN";
        case Status::RejectedDryRun:
            return "REJECTED_DRY_RUN";
        case Status::None:
            break;
    }
    return "";
}

// Decides every local item under the zone locks; commits (when `commit`) only when no item,
// remote ones included, rejects.
void decide(std::pmr::vector<Item>& items, int64_t now, bool commit) {
    // Lock in one global order (zone address; the same in every worker) so two requests
    // never wait on each other's zones; the items keep the config order (headers list zones
    // as configured).
    std::pmr::vector<Item*> order(items.get_allocator());
    bool rejected = false;
    for (Item& it : items) {
        if (it.remote) {
            rejected = rejected || it.rejected;
        } else {
            order.push_back(&it);
        }
    }
    if (order.empty()) return;
    std::sort(order.begin(), order.end(), [](const Item* a, const Item* b) {
        return a->zone->shm->data() < b->zone->shm->data();
    });
    auto table = [](const Item& it) -> SharedTableBase& {
        return it.zone->algorithm == Algorithm::LeakyBucket
                   ? static_cast<SharedTableBase&>(it.zone->leaky)
                   : static_cast<SharedTableBase&>(it.zone->window);
    };
    for (Item* it : order) {
        if (table(*it).mutex().lock()) table(*it).reset();  // the owner died mid-update
    }
    for (Item* ip : order) {
        Item& it = *ip;
        const Zone& z = *it.zone;
        if (z.algorithm == Algorithm::LeakyBucket) {
            const LeakyState* s = z.leaky.find(it.key);
            it.lr = s != nullptr ? leaky_check(*s, now, it.leaky) : leaky_first(it.leaky);
            it.rejected = it.lr.rejected;
            it.retry_ms = it.lr.retry_ms;
            it.remaining = it.lr.remaining;
            it.reset_ms = it.lr.reset_ms;
            it.excess = it.lr.excess;
        } else {
            const WindowState* s = z.window.find(it.key);
            it.ws = s != nullptr ? *s : WindowState{};
            it.wr = window_update(it.ws, now, WindowParams{it.rate_count, it.period_ms});
            it.rejected = it.wr.rejected;
            it.retry_ms = it.wr.retry_ms;
            it.remaining = it.wr.remaining;
            it.reset_ms = it.wr.reset_ms;
        }
        rejected = rejected || it.rejected;
    }
    if (commit && !rejected) {
        for (Item* ip : order) {
            Item& it = *ip;
            const Zone& z = *it.zone;
            bool inserted = false;
            if (z.algorithm == Algorithm::LeakyBucket) {
                LeakyState* s = z.leaky.find(it.key);
                if (s == nullptr) {
                    uint64_t rate = it.leaky.rate;
                    z.leaky.expire(2,
                                   [&](const LeakyState& o) { return leaky_stale(o, now, rate); });
                    s = z.leaky.find_or_insert(it.key, true, inserted);
                    if (inserted) *s = LeakyState{now, 0};
                }
                if (s != nullptr) leaky_commit(*s, now, it.lr);
            } else {
                WindowState* s = z.window.find(it.key);
                if (s == nullptr) {
                    z.window.expire(2, [&](const WindowState& o) { return window_stale(o, now); });
                    s = z.window.find_or_insert(it.key, true, inserted);
                }
                if (s != nullptr) *s = it.ws;
            }
        }
    }
    for (auto i = order.rbegin(); i != order.rend(); ++i) table(**i).mutex().unlock();
}

uint64_t ceil_s(uint64_t ms) {
    return (ms + 999) / 1000;
}

// X-RateLimit-* (the most restrictive limit: fewest remaining, then latest reset) and the IETF
// RateLimit-Policy / RateLimit fields (one item per zone).
void add_headers(http::Request& r, HeadersMode mode, const std::pmr::vector<Item>& items) {
    if (mode == HeadersMode::Off) return;
    const Item* m = nullptr;
    for (const Item& it : items) {
        if (!it.no_info) m = &it;
    }
    if (m == nullptr) return;
    if (mode == HeadersMode::X || mode == HeadersMode::Both) {
        for (const Item& it : items) {
            if (it.no_info) continue;
            if (it.remaining < m->remaining ||
                (it.remaining == m->remaining && it.reset_ms > m->reset_ms)) {
                m = &it;
            }
        }
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%" PRIu64, m->rate_count);
        r.add_header("X-RateLimit-Limit", r.copy(buf));
        std::snprintf(buf, sizeof(buf), "%" PRIu64, m->remaining);
        r.add_header("X-RateLimit-Remaining", r.copy(buf));
        std::snprintf(buf, sizeof(buf), "%" PRIu64, ceil_s(m->reset_ms));
        r.add_header("X-RateLimit-Reset", r.copy(buf));
    }
    if (mode == HeadersMode::Ietf || mode == HeadersMode::Both) {
        std::pmr::string policy(r.arena);
        std::pmr::string state(r.arena);
        char buf[64];
        for (const Item& it : items) {
            if (it.no_info) continue;
            if (!policy.empty()) {
                policy += ", ";
                state += ", ";
            }
            policy += '"';
            policy += it.zone->name;
            std::snprintf(buf, sizeof(buf), "\";q=%" PRIu64 ";w=%" PRIu64, it.rate_count,
                          it.period_ms / 1000);
            policy += buf;
            state += '"';
            state += it.zone->name;
            std::snprintf(buf, sizeof(buf), "\";r=%" PRIu64 ";t=%" PRIu64, it.remaining,
                          ceil_s(it.reset_ms));
            state += buf;
        }
        r.add_header("RateLimit-Policy", r.copy(policy));
        r.add_header("RateLimit", r.copy(state));
    }
}

// Turns the decided items into the request's fate: reject, delay on a timer, or pass on.
Verdict finish(http::Request& r, const LocConf& conf, RequestCtx& ctx,
               const std::pmr::vector<Item>& items) {
    bool dry_run = conf.dry_run.value_or(false);
    log::Level level = conf.log_level.value_or(log::Level::Error);
    const Item* rejecting = nullptr;
    uint64_t retry_ms = 0;
    uint64_t delay_ms = 0;
    const Item* delaying = nullptr;
    for (const Item& it : items) {
        if (it.rejected) {
            // A real rejection is reported before one made by redis_fail=closed.
            if (rejecting == nullptr || (rejecting->fail_closed && !it.fail_closed)) {
                rejecting = &it;
            }
            retry_ms = std::max(retry_ms, it.retry_ms);
        } else if (it.zone->algorithm == Algorithm::LeakyBucket && it.lr.delay_ms > delay_ms) {
            delay_ms = it.lr.delay_ms;
            delaying = &it;
        }
    }
    HeadersMode headers = conf.headers.value_or(HeadersMode::Off);
    if (rejecting != nullptr && rejecting->fail_closed) {
        // Only zones whose Redis is away reject: the limiter is unavailable, not the client
        // over its limit (a real rejection by another zone takes precedence above). Already
        // logged by fail_item().
        if (dry_run) {
            ctx.status = Status::RejectedDryRun;
            add_headers(r, headers, items);
            return Verdict::Next;
        }
        ctx.status = Status::Rejected;
        Verdict v = r.respond_error(503);
        r.add_header("Retry-After", "1");
        add_headers(r, headers, items);
        return v;
    }
    if (rejecting != nullptr) {
        if (log::enabled(level)) {
            if (rejecting->zone->algorithm == Algorithm::LeakyBucket) {
                log::write(level,
                           "limiting requests%s, excess: %" PRId64 ".%03" PRId64
                           " by zone \"%s\", client: %.*s",
                           dry_run ? ", dry run" : "", rejecting->excess / 1000,
                           rejecting->excess % 1000, rejecting->zone->name.c_str(),
                           static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
            } else {
                log::write(level, "limiting requests%s, window full by zone \"%s\", client: %.*s",
                           dry_run ? ", dry run" : "", rejecting->zone->name.c_str(),
                           static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
            }
        }
        if (dry_run) {
            ctx.status = Status::RejectedDryRun;
            add_headers(r, headers, items);
            return Verdict::Next;
        }
        ctx.status = Status::Rejected;
        Verdict v = r.respond_error(conf.status.value_or(429));
        char buf[24];
        std::snprintf(buf, sizeof(buf), "%" PRIu64, std::max<uint64_t>(1, ceil_s(retry_ms)));
        r.add_header("Retry-After", r.copy(buf));
        add_headers(r, headers, items);
        return v;
    }
    add_headers(r, headers, items);
    if (delay_ms == 0) {
        ctx.status = Status::Passed;
        return Verdict::Next;
    }
    // Delays are logged one level lower than rejections (nginx).
    log::Level delay_level =
        level > log::Level::Info ? static_cast<log::Level>(static_cast<int>(level) - 1) : level;
    if (log::enabled(delay_level)) {
        log::write(delay_level,
                   "delaying request%s, excess: %" PRId64 ".%03" PRId64
                   " by zone \"%s\", client: %.*s",
                   dry_run ? ", dry run" : "", delaying->excess / 1000, delaying->excess % 1000,
                   delaying->zone->name.c_str(), static_cast<int>(r.conn.remote_addr.size()),
                   r.conn.remote_addr.data());
    }
    if (dry_run) {
        ctx.status = Status::DelayedDryRun;
        return Verdict::Next;
    }
    ctx.status = Status::Delayed;
    if (worker_loop == nullptr) return Verdict::Next;  // no loop (unit tests): serve at once
    void* p = r.arena->allocate(sizeof(DelayTask), alignof(DelayTask));
    auto* task = new (p) DelayTask();
    r.add_cleanup(DelayTask::destroy, task);
    http::Request* req = &r;
    task->timer = worker_loop->make_timer([req] {
        req->task = nullptr;
        req->resume(Verdict::Next);
    });
    r.task = task;
    task->timer->start(delay_ms);
    return Verdict::Suspend;
}

// ---- Redis zones ----------------------------------------------------------------------------

// Logs a Redis failure at most once a second per worker.
void log_redis_failure(const Zone& z, const char* why) {
    static int64_t last = 0;
    int64_t now = mono_ms();
    if (last != 0 && now - last < 1000) return;
    last = now;
    const char* mode = z.redis_fail == RedisFail::Open     ? "failing open"
                       : z.redis_fail == RedisFail::Closed ? "failing closed"
                                                           : "using local counters";
    LOG_ERROR("limit_req zone \"%s\": redis %s: %s, %s", z.name.c_str(),
              z.redis_client != nullptr ? z.redis_client->describe().c_str() : "(none)", why, mode);
}

// Applies the zone's fail mode to an item whose Redis answer will not come.
void fail_item(Item& it, const char* why) {
    log_redis_failure(*it.zone, why);
    switch (it.zone->redis_fail) {
        case RedisFail::Open:
            it.rejected = false;
            it.no_info = true;
            break;
        case RedisFail::Closed:
            it.rejected = true;
            it.fail_closed = true;
            it.retry_ms = 1000;
            it.no_info = true;
            break;
        case RedisFail::Local:
            it.remote = false;  // the final decide() takes it on the shm table
            break;
    }
}

// Reads a script's reply {admitted, value, wait_ms[, reset_ms]} into the item.
bool apply_reply(Item& it, const RedisReply& reply) {
    if (!reply.ok() || reply.type() != RedisReply::Type::Array || reply.size() < 3) return false;
    for (size_t i = 0; i < reply.size(); ++i) {
        if (reply[i].type() != RedisReply::Type::Integer) return false;
    }
    bool admitted = reply[0].integer() == 1;
    int64_t value = reply[1].integer();
    uint64_t wait = static_cast<uint64_t>(std::max<int64_t>(0, reply[2].integer()));
    it.rejected = !admitted;
    if (it.zone->algorithm == Algorithm::LeakyBucket) {
        uint64_t rate = std::max<uint64_t>(1, it.leaky.rate);
        uint64_t ex = static_cast<uint64_t>(std::max<int64_t>(0, value));
        it.excess = static_cast<int64_t>(ex);
        it.lr = LeakyResult{};
        it.lr.excess = static_cast<int64_t>(ex);
        if (!admitted) {
            it.retry_ms = wait;
            it.remaining = 0;
            it.reset_ms = ex > 1000 ? ((ex - 1000) * 1000 + rate - 1) / rate : 0;
        } else {
            it.lr.delay_ms = ex <= it.leaky.delay ? 0 : (ex - it.leaky.delay) * 1000 / rate;
            it.remaining = ex <= it.leaky.burst ? (it.leaky.burst - ex) / 1000 : 0;
            it.reset_ms = (ex * 1000 + rate - 1) / rate;
        }
        it.lr.rejected = it.rejected;
        it.lr.retry_ms = it.retry_ms;
    } else {
        if (reply.size() < 4) return false;
        uint64_t counted = static_cast<uint64_t>(std::max<int64_t>(0, value));
        it.retry_ms = admitted ? 0 : wait;
        it.remaining = admitted && counted < it.rate_count ? it.rate_count - counted : 0;
        it.reset_ms = static_cast<uint64_t>(std::max<int64_t>(0, reply[3].integer()));
    }
    return true;
}

// A request waiting for its Redis zones' replies. Lives in the request arena; its cleanup
// destroys it, which cancels every call still pending, so a client that leaves mid-call never
// gets a callback into freed memory.
struct RedisWait final : http::RequestTask {
    http::Request* r = nullptr;
    const LocConf* conf = nullptr;
    RequestCtx* ctx = nullptr;
    std::pmr::vector<Item> items;
    std::pmr::vector<RedisCall> calls;
    size_t outstanding = 0;

    RedisWait(std::pmr::vector<Item>&& it, size_t n, std::pmr::memory_resource* mr)
        : items(std::move(it), mr), calls(n, mr) {}
    void abort() override {
        for (RedisCall& c : calls) c.cancel();
    }
    static void destroy(void* p) { static_cast<RedisWait*>(p)->~RedisWait(); }

    void on_reply(size_t i, const RedisReply& reply) {
        if (worker_exiting) return;  // the clients are being destroyed with the worker
        if (!apply_reply(items[i], reply)) {
            char why[96];
            std::snprintf(why, sizeof(why), "%s%s%.*s", to_string(reply.error()),
                          reply.str().empty() ? "" : ": ",
                          static_cast<int>(std::min<size_t>(reply.str().size(), 60)),
                          reply.str().data());
            fail_item(items[i], why);
        }
        if (--outstanding > 0) return;
        r->task = nullptr;
        decide(items, mono_ms(), true);
        http::Request* req = r;
        req->resume(finish(*req, *conf, *ctx, items));
    }
};

Verdict start_redis(http::Request& r, const LocConf& conf, RequestCtx& ctx,
                    std::pmr::vector<Item>&& items) {
    // Local zones first, without committing: a request they reject costs Redis nothing.
    decide(items, mono_ms(), false);
    for (const Item& it : items) {
        if (!it.remote && it.rejected) {
            for (Item& i : items) i.no_info = i.no_info || i.remote;
            return finish(r, conf, ctx, items);
        }
    }
    size_t n = items.size();
    void* p = r.arena->allocate(sizeof(RedisWait), alignof(RedisWait));
    auto* w = new (p) RedisWait(std::move(items), n, r.arena);
    r.add_cleanup(RedisWait::destroy, w);
    w->r = &r;
    w->conf = &conf;
    w->ctx = &ctx;
    char key[160];
    char a0[24];
    char a1[24];
    for (size_t i = 0; i < n; ++i) {
        Item& it = w->items[i];
        if (!it.remote) continue;
        const Zone& z = *it.zone;
        RedisClient* client = z.redis_client;
        if (client == nullptr) {
            fail_item(it, "no client in this process");
            continue;
        }
        int kl = std::snprintf(key, sizeof(key), "%s%016" PRIx64 "%016" PRIx64,
                               z.redis_prefix.c_str(), it.key.hi, it.key.lo);
        std::string_view keys[1] = {
            std::string_view(key, static_cast<size_t>(std::min<int>(kl, sizeof(key) - 1)))};
        const RedisScript* script;
        if (z.algorithm == Algorithm::LeakyBucket) {
            script = &kRedisLeakyBucket;
            std::snprintf(a0, sizeof(a0), "%" PRIu64, it.leaky.rate);
            std::snprintf(a1, sizeof(a1), "%" PRIu64, it.leaky.burst);
        } else {
            script = &kRedisSlidingWindow;
            std::snprintf(a0, sizeof(a0), "%" PRIu64, it.rate_count);
            std::snprintf(a1, sizeof(a1), "%" PRIu64, it.period_ms);
        }
        // now = 0: the server's clock, one clock for every gateway sharing the limit.
        std::string_view args[4] = {a0, a1, "0", "1"};
        RedisError e = client->eval(*script, keys, args, w->calls[i],
                                    [w, i](const RedisReply& reply) { w->on_reply(i, reply); });
        if (e != RedisError::None) {
            fail_item(it, to_string(e));
            continue;
        }
        ++w->outstanding;
    }
    if (w->outstanding == 0) {  // every Redis zone failed up front: decide at once
        decide(w->items, mono_ms(), true);
        return finish(r, conf, ctx, w->items);
    }
    r.task = w;
    return Verdict::Suspend;
}

}  // namespace

void init_worker(const ConfigGeneration& generation, EventLoop& loop) {
    worker_loop = &loop;
    worker_exiting = false;
    const auto* main = static_cast<const MainConf*>(generation.main_confs[module_idx()].get());
    if (main == nullptr) return;
    // One client per distinct URL; its command timeout is the smallest redis_timeout of the
    // zones that share it.
    std::vector<std::pair<std::string, RedisOptions>> wanted;
    for (const auto& z : main->zones) {
        if (!z->redis) continue;
        std::string url = z->redis_url.to_string(false);
        auto f = std::find_if(wanted.begin(), wanted.end(),
                              [&](const auto& w) { return w.first == url; });
        if (f == wanted.end()) {
            RedisOptions o;
            o.url = z->redis_url;
            o.command_timeout_ms = z->redis_timeout_ms;
            o.connect_timeout_ms = std::max<uint64_t>(z->redis_timeout_ms, 1000);
            o.reconnect_max_ms = 1000;  // a limit wants its shared counters back soon
            wanted.emplace_back(url, o);
        } else {
            f->second.command_timeout_ms =
                std::min(f->second.command_timeout_ms, z->redis_timeout_ms);
        }
    }
    for (auto& [url, options] : wanted) {
        WorkerRedis w;
        w.url = url;
        w.client = loop.make_redis(options);
        worker_redis.push_back(std::move(w));
    }
    for (const auto& z : main->zones) {
        if (!z->redis) continue;
        std::string url = z->redis_url.to_string(false);
        for (const WorkerRedis& w : worker_redis) {
            if (w.url == url) z->redis_client = w.client.get();
        }
    }
}

void exit_worker() {
    worker_exiting = true;  // pending calls complete with ConnectionLost: nothing to resume
    worker_redis.clear();
    worker_loop = nullptr;
}

bool status_variable(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<RequestCtx*>(r.module_ctx(module_idx()));
    if (ctx == nullptr || ctx->status == Status::None) return false;
    out = status_text(ctx->status);
    return true;
}

Verdict handle(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const LocConf*>(data);
    RequestCtx& ctx = ctx_of(r);
    if (ctx.status != Status::None) return Verdict::Next;  // once per request, as nginx
    std::pmr::vector<Item> items(r.arena);
    items.reserve(conf.limits->size());
    for (const Limit& lim : *conf.limits) {
        const Zone& z = *lim.ref->zone;
        std::string_view key = z.key.evaluate(r);
        if (key.empty()) continue;  // an empty key is not limited (nginx)
        if (key.size() > 65535) {
            LOG_ERROR("the value of the limit_req key of zone \"%s\" is more than 65535 bytes",
                      z.name.c_str());
            continue;
        }
        Item it;
        it.zone = &z;
        it.limit = &lim;
        if (z.rate_variable) {
            std::string_view text = z.rate_value.evaluate(r);
            if (text.empty()) continue;  // an empty tier rate: not limited by this zone
            Rate rate;
            if (!parse_rate(text, rate)) {
                log_bad_rate(z, text);
                return r.respond_error(500);  // fail closed: a broken tier is not a free pass
            }
            it.rate_count = rate.count;
            it.period_ms = rate.period_ms;
            it.leaky.rate = rate.milli_per_s;
        } else {
            it.rate_count = z.rate.count;
            it.period_ms = z.rate.period_ms;
            it.leaky.rate = z.rate.milli_per_s;
        }
        it.leaky.burst = lim.burst;
        it.leaky.delay = lim.delay;
        it.key = zone_key(key);
        items.push_back(it);
    }
    if (items.empty()) return Verdict::Next;
    for (Item& it : items) it.remote = it.zone->redis;
    if (!std::any_of(items.begin(), items.end(), [](const Item& it) { return it.remote; })) {
        decide(items, mono_ms(), true);
        return finish(r, conf, ctx, items);
    }
    return start_redis(r, conf, ctx, std::move(items));
}

}  // namespace tollgate::limit_req
