// The "limit_quota" module: request quotas per calendar period (minute, hour, day, month; UTC),
// kept in an LMDB file under the state folder so they survive restarts, reloads and crashes.
//
//   limit_quota_zone KEY zone=NAME[:SIZE] quota=N|$VAR period=minute|hour|day|month
//                    [path=FILE] [fail=open|closed];                          http
//                    (NAME: letters, digits, '_', '-', '.')
//   limit_quota zone=NAME;                                        http, server, location
//   limit_quota_status CODE;           (429)                      http, server, location
//   limit_quota_dry_run on|off;        (off)                      http, server, location
//   limit_quota_warning PERCENT|off;   (80)                       http, server, location
//   limit_quota_headers on|off;        (on)                       http, server, location
//   limit_quota_sync TIME;             (1s)                       http
//                                                                  phase: PreAccess
//
// limit_quota_zone: KEY is any value with variables ("$http_x_api_key", "$consumer:$uri"); a
//   request whose KEY is empty is not counted (as nginx's limit_req). quota= is a number or a
//   value with variables giving one per request (tiers: a map from $consumer_tier to numbers);
//   a request whose quota value is empty is not counted, one that is not a number is not
//   counted and logged. SIZE (default 32m, 128k..64g) bounds the LMDB map: the zones of one
//   file share one map of the sum of their sizes, and accept (map - 64k) / 256 records (a record
//   is one key in one period; 32m holds 130816); past that, a new key meets the zone's fail
//   mode (keys already counted keep counting). The bound is a third of what LMDB could hold, so
//   updates and pruning never meet a full map. path= names the LMDB file (default quota.mdb;
//   relative to state_path; its lock file is FILE-lock). fail=open (default) admits requests the
//   store cannot count (map full, LMDB error); fail=closed answers them 503. The counters of a zone
//   are keyed by its name and period: a reload that changes the quota keeps them, one that changes
//   the period starts new ones.
// limit_quota: several per level, all applied; a level without any inherits its parent's list
//   (nginx's limit_req rule). One request is checked and counted in all zones of one file in one
//   LMDB write transaction: either every zone counts it or none does (a refused request counts
//   nowhere). An internal redirect (error_page) is not counted again.
// Refused: limit_quota_status (400..599) with the JSON error body and Retry-After: the seconds
//   until the latest reset among the exhausted zones. limit_quota_dry_run on: refused requests
//   pass (and are not counted), $limit_quota_status says REJECTED_DRY_RUN.
// limit_quota_headers on adds to every response of the location, per zone:
//   X-RateLimit-Limit-<Period>, X-RateLimit-Remaining-<Period>, X-RateLimit-Reset-<Period>
//   (Kong's names; <Period> is Minute, Hour, Day or Month; when two zones share a period the one
//   with the least remaining is shown), and the IETF draft fields, one list item per zone:
//   RateLimit-Policy: "NAME";q=QUOTA;w=PERIOD_SECONDS   RateLimit: "NAME";r=REMAINING;t=RESET
// limit_quota_warning: once PERCENT of a zone's quota is used (counting this request), the
//   response carries X-Quota-Warning: "NAME";q=QUOTA;r=REMAINING;t=RESET (one item per zone;
//   independent of limit_quota_headers). RFC 7234's Warning header is obsolete (RFC 9111).
// limit_quota_sync TIME: the LMDB file is opened MDB_NOSYNC | MDB_WRITEMAP and each worker
//   that wrote fsyncs it every TIME (and when it exits); 0 opens it without either flag and
//   syncs every commit (durable, several times slower). Committed counts survive a worker crash,
//   a reload and a restart at once (they are in the page cache); a machine crash may lose the
//   last TIME of counts and, with WRITEMAP, may leave the file inconsistent (delete it: the
//   counts of the current periods restart from zero).
// Variables: $limit_quota_status (PASSED, REJECTED, REJECTED_DRY_RUN, ERROR; empty when no
//   zone applied), $limit_quota_remaining (the least remaining among the applied zones).
// Processes: the master makes the file's folder (state_path) and gives it to the workers'
//   user (init_master); each worker opens the environment after fork (init_worker) and prunes
//   records of ended periods every minute, at most 4096 per transaction.
// Test hook: TOLLGATE_TEST_CLOCK_FILE=PATH in the environment makes workers read the current
//   Unix time (an integer) from PATH for quota periods, on every request; tests only.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/core_module.hpp"
#include "core/event_loop.hpp"
#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "modules/limit_quota/quota_period.hpp"
#include "modules/limit_quota/quota_store.hpp"

namespace tollgate {
namespace {

using limit_quota::ApplyResult;
using limit_quota::PeriodBounds;
using limit_quota::PeriodKind;
using limit_quota::QuotaCheck;
using limit_quota::QuotaStore;

constexpr uint64_t kDefaultZoneSize = 32ull * 1024 * 1024;
constexpr uint64_t kMaxZoneSize = 64ull * 1024 * 1024 * 1024;
constexpr size_t kMaxRulesPerLocation = 16;
constexpr uint64_t kPruneIntervalMs = 60 * 1000;
constexpr size_t kPruneBatch = 4096;
constexpr const char* kDefaultFile = "quota.mdb";

struct QuotaZone {
    std::string name;
    PeriodKind period = PeriodKind::Month;
    ComplexValue key;
    bool quota_literal = true;
    uint64_t quota = 0;
    ComplexValue quota_value;
    std::string file = kDefaultFile;  // as written
    std::string path;                 // absolute, set by check()
    uint64_t size = kDefaultZoneSize;
    bool fail_closed = false;
    uint64_t zone_id = 0;
    size_t store = 0;  // index into QuotaMainConf::stores
};

struct StoreSpec {
    std::string path;
    uint64_t map_size = 0;
};

struct RuleRef {
    std::string zone;
    std::shared_ptr<const std::string> file;
    int line = 0;
};

// What the handler of one location runs: zones resolved, settings merged.
struct LocationPlan {
    std::vector<const QuotaZone*> zones;
    int status = 429;
    bool dry_run = false;
    unsigned warning = 80;  // percent; 0: off
    bool headers = true;
};

struct QuotaMainConf : ModuleConf {
    std::vector<std::unique_ptr<QuotaZone>> zones;
    std::vector<StoreSpec> stores;
    std::optional<uint64_t> sync_ms;
    std::deque<LocationPlan> plans;  // stable addresses: handler data
};

struct QuotaLocConf : ModuleConf {
    std::vector<RuleRef> rules;
    std::optional<int> status;
    std::optional<bool> dry_run;
    std::optional<unsigned> warning;
    std::optional<bool> headers;
};

// Per request, in the arena: what the variables report.
struct QuotaRequestCtx {
    const char* status = "";
    bool has_remaining = false;
    uint64_t remaining = 0;
};

// Per worker process, made after fork.
struct QuotaWorkerState {
    const QuotaMainConf* conf = nullptr;
    std::vector<std::unique_ptr<QuotaStore>> stores;
    std::vector<bool> dirty;
    std::unique_ptr<Timer> sync_timer;
    std::unique_ptr<Timer> prune_timer;
    std::string clock_file;
    int64_t last_error_log = 0;
};

QuotaWorkerState* g_worker = nullptr;

size_t quota_index();
Verdict quota_handler(http::Request& r, const void* data);

QuotaMainConf& main_conf(GenerationBuilder& b) {
    return static_cast<QuotaMainConf&>(*b.generation().main_confs[quota_index()]);
}

std::optional<uint64_t> parse_count(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// ---- directives ----

void set_zone(DirectiveContext& ctx) {
    auto& mc = ctx.conf<QuotaMainConf>();
    auto z = std::make_unique<QuotaZone>();
    bool have_quota = false, have_period = false;
    z->key = ComplexValue::compile(ctx.arg(0), ctx.builder.variables(), ctx.node);
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        std::string_view a = ctx.arg(i);
        if (a.starts_with("zone=")) {
            std::string_view v = a.substr(5);
            size_t colon = v.find(':');
            z->name = std::string(v.substr(0, colon));
            if (colon != std::string_view::npos) {
                auto size = conf::parse_size(v.substr(colon + 1));
                if (!size || *size < limit_quota::kMinMapSize || *size > kMaxZoneSize) {
                    ctx.fail("invalid zone size \"" + std::string(v.substr(colon + 1)) +
                             "\" in \"limit_quota_zone\" (128k..64g)");
                }
                z->size = *size;
            }
            // The name is quoted in RateLimit headers: keep it a plain token.
            bool plain = !z->name.empty();
            for (char ch : z->name) {
                plain = plain && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                                  ch == '-' || ch == '.');
            }
            if (!plain) ctx.invalid_value(i, "a zone name is letters, digits, '_', '-' and '.'");
        } else if (a.starts_with("quota=")) {
            std::string_view v = a.substr(6);
            if (v.find('$') != std::string_view::npos) {
                z->quota_literal = false;
                z->quota_value = ComplexValue::compile(v, ctx.builder.variables(), ctx.node);
            } else {
                auto n = parse_count(v);
                if (!n) ctx.invalid_value(i, "quota must be a number or a variable");
                z->quota = *n;
            }
            have_quota = true;
        } else if (a.starts_with("period=")) {
            auto p = limit_quota::parse_period(a.substr(7));
            if (!p) ctx.invalid_value(i, "period must be minute, hour, day or month");
            z->period = *p;
            have_period = true;
        } else if (a.starts_with("path=")) {
            z->file = std::string(a.substr(5));
            if (z->file.empty() || z->file.back() == '/') ctx.invalid_value(i);
        } else if (a == "fail=open") {
            z->fail_closed = false;
        } else if (a == "fail=closed") {
            z->fail_closed = true;
        } else {
            ctx.invalid_value(i);
        }
    }
    if (z->name.empty()) ctx.fail("\"limit_quota_zone\" must have \"zone\" parameter");
    if (!have_quota) ctx.fail("\"limit_quota_zone\" must have \"quota\" parameter");
    if (!have_period) ctx.fail("\"limit_quota_zone\" must have \"period\" parameter");
    for (const auto& other : mc.zones) {
        if (other->name == z->name) {
            ctx.fail("limit_quota zone \"" + z->name + "\" is already defined");
        }
    }
    z->zone_id = limit_quota::zone_id_for(z->name, limit_quota::period_name(z->period));
    mc.zones.push_back(std::move(z));
}

void set_limit(DirectiveContext& ctx) {
    auto& lc = ctx.conf<QuotaLocConf>();
    std::string_view a = ctx.arg(0);
    if (!a.starts_with("zone=") || a.size() == 5) ctx.invalid_value(0);
    std::string name(a.substr(5));
    for (const RuleRef& r : lc.rules) {
        if (r.zone == name) ctx.fail("limit_quota zone \"" + name + "\" is duplicate");
    }
    if (lc.rules.size() >= kMaxRulesPerLocation) {
        ctx.fail("too many \"limit_quota\" directives (at most 16 per level)");
    }
    lc.rules.push_back({std::move(name), ctx.node.file, ctx.node.line});
}

void set_status(DirectiveContext& ctx) {
    auto& lc = ctx.conf<QuotaLocConf>();
    if (lc.status) ctx.duplicate();
    lc.status = static_cast<int>(ctx.int_arg(0, 400, 599));
}

void set_dry_run(DirectiveContext& ctx) {
    auto& lc = ctx.conf<QuotaLocConf>();
    if (lc.dry_run) ctx.duplicate();
    lc.dry_run = ctx.flag_arg(0);
}

void set_warning(DirectiveContext& ctx) {
    auto& lc = ctx.conf<QuotaLocConf>();
    if (lc.warning) ctx.duplicate();
    if (ctx.arg(0) == "off") {
        lc.warning = 0;
        return;
    }
    std::string v = ctx.arg(0);
    if (!v.empty() && v.back() == '%') v.pop_back();
    auto n = parse_count(v);
    if (!n || *n < 1 || *n > 100) ctx.invalid_value(0, "a percentage 1..100 or off");
    lc.warning = static_cast<unsigned>(*n);
}

void set_headers(DirectiveContext& ctx) {
    auto& lc = ctx.conf<QuotaLocConf>();
    if (lc.headers) ctx.duplicate();
    lc.headers = ctx.flag_arg(0);
}

void set_sync(DirectiveContext& ctx) {
    auto& mc = ctx.conf<QuotaMainConf>();
    if (mc.sync_ms) ctx.duplicate();
    mc.sync_ms = ctx.time_ms_arg(0);
}

void merge_location(const ModuleConf& parent_base, ModuleConf& child_base) {
    const auto& parent = static_cast<const QuotaLocConf&>(parent_base);
    auto& child = static_cast<QuotaLocConf&>(child_base);
    if (child.rules.empty()) child.rules = parent.rules;
    if (!child.status) child.status = parent.status;
    if (!child.dry_run) child.dry_run = parent.dry_run;
    if (!child.warning) child.warning = parent.warning;
    if (!child.headers) child.headers = parent.headers;
}

// After parse: each zone's file, and the stores (one per file, map = sum of its zones' sizes).
void check(GenerationBuilder& b) {
    auto& mc = main_conf(b);
    const CoreConf& core =
        static_cast<const CoreConf&>(*b.generation().main_confs[module_index(core_module)]);
    for (auto& z : mc.zones) {
        z->path = z->file.front() == '/' ? z->file : *core.state_path + "/" + z->file;
        size_t i = 0;
        while (i < mc.stores.size() && mc.stores[i].path != z->path) ++i;
        if (i == mc.stores.size()) mc.stores.push_back({z->path, 0});
        mc.stores[i].map_size += z->size;
        z->store = i;
    }
}

void attach(LocationBuilder& lb) {
    const auto& lc = lb.conf<QuotaLocConf>(quota_index());
    if (lc.rules.empty()) return;
    auto& mc = main_conf(lb.builder());
    LocationPlan plan;
    for (const RuleRef& r : lc.rules) {
        const QuotaZone* zone = nullptr;
        for (const auto& z : mc.zones) {
            if (z->name == r.zone) zone = z.get();
        }
        if (zone == nullptr) {
            throw conf::ConfigError(r.file ? *r.file : std::string(), r.line,
                                    "unknown limit_quota zone \"" + r.zone + "\"");
        }
        plan.zones.push_back(zone);
    }
    plan.status = lc.status.value_or(429);
    plan.dry_run = lc.dry_run.value_or(false);
    plan.warning = lc.warning.value_or(80);
    plan.headers = lc.headers.value_or(true);
    mc.plans.push_back(std::move(plan));
    lb.add(Phase::PreAccess, quota_handler, &mc.plans.back());
}

// ---- runtime ----

// Logs a store failure at most once a second per worker.
void log_store_error(const QuotaZone& zone, const char* what, const std::string& error,
                     int64_t now) {
    if (g_worker != nullptr && g_worker->last_error_log == now) return;
    if (g_worker != nullptr) g_worker->last_error_log = now;
    LOG_ERROR("limit_quota zone \"%s\" (%s): %s%s%s", zone.name.c_str(), zone.path.c_str(), what,
              error.empty() ? "" : ": ", error.c_str());
}

int64_t read_test_clock(const std::string& file) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[32];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) return -1;
    std::string_view s(buf, static_cast<size_t>(n));
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
    auto v = parse_count(s);
    return v ? static_cast<int64_t>(*v) : -1;
}

int64_t now_seconds(const http::Request& r) {
    if (g_worker != nullptr && !g_worker->clock_file.empty()) {
        int64_t t = read_test_clock(g_worker->clock_file);
        if (t >= 0) return t;
    }
    return r.start_usec / 1000000;
}

struct Applied {
    const QuotaZone* zone = nullptr;
    QuotaCheck check;
    PeriodBounds bounds;
    bool counted = false;  // the store answered (admitted or rejected)
};

std::string_view format_u64(http::Request& r, uint64_t v) {
    char buf[24];
    auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    return r.copy(std::string_view(buf, static_cast<size_t>(p - buf)));
}

constexpr std::string_view kLimitNames[] = {"X-RateLimit-Limit-Minute", "X-RateLimit-Limit-Hour",
                                            "X-RateLimit-Limit-Day", "X-RateLimit-Limit-Month"};
constexpr std::string_view kRemainingNames[] = {
    "X-RateLimit-Remaining-Minute", "X-RateLimit-Remaining-Hour", "X-RateLimit-Remaining-Day",
    "X-RateLimit-Remaining-Month"};
constexpr std::string_view kResetNames[] = {"X-RateLimit-Reset-Minute", "X-RateLimit-Reset-Hour",
                                            "X-RateLimit-Reset-Day", "X-RateLimit-Reset-Month"};

void append_item(std::pmr::string& out, const QuotaZone& z, char a, uint64_t av, char b,
                 uint64_t bv, char c = 0, uint64_t cv = 0) {
    if (!out.empty()) out += ", ";
    out += '"';
    out += z.name;
    out += '"';
    char buf[24];
    for (auto [name, v] : {std::pair<char, uint64_t>{a, av}, {b, bv}, {c, cv}}) {
        if (name == 0) continue;
        out += ';';
        out += name;
        out += '=';
        auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
        out.append(buf, p);
    }
}

void add_headers(http::Request& r, const LocationPlan& plan, const Applied* applied, size_t n,
                 int64_t now) {
    std::pmr::string policy(r.arena), state(r.arena), warning(r.arena);
    const Applied* per_period[4] = {};
    for (size_t i = 0; i < n; ++i) {
        const Applied& a = applied[i];
        if (!a.counted) continue;
        uint64_t quota = a.check.quota;
        uint64_t used = a.check.count;
        uint64_t remaining = used >= quota ? 0 : quota - used;
        uint64_t reset = static_cast<uint64_t>(a.bounds.end - now);
        if (plan.headers) {
            auto k = static_cast<size_t>(a.zone->period);
            if (per_period[k] == nullptr) {
                per_period[k] = &a;
            } else {
                const Applied& o = *per_period[k];
                uint64_t orem = o.check.count >= o.check.quota ? 0 : o.check.quota - o.check.count;
                if (remaining < orem) per_period[k] = &a;
            }
            append_item(policy, *a.zone, 'q', quota, 'w',
                        static_cast<uint64_t>(a.bounds.end - a.bounds.start));
            append_item(state, *a.zone, 'r', remaining, 't', reset);
        }
        // used * 100 >= quota * warning, without overflow for any uint64 quota.
        if (plan.warning > 0 && static_cast<unsigned __int128>(used) * 100 >=
                                    static_cast<unsigned __int128>(quota) * plan.warning) {
            if (!warning.empty()) warning += ", ";
            std::pmr::string item(r.arena);
            append_item(item, *a.zone, 'q', quota, 'r', remaining, 't', reset);
            warning += item;
        }
    }
    if (plan.headers) {
        for (size_t k = 0; k < 4; ++k) {
            const Applied* a = per_period[k];
            if (a == nullptr) continue;
            uint64_t rem = a->check.count >= a->check.quota ? 0 : a->check.quota - a->check.count;
            r.add_header(kLimitNames[k], format_u64(r, a->check.quota));
            r.add_header(kRemainingNames[k], format_u64(r, rem));
            r.add_header(kResetNames[k], format_u64(r, static_cast<uint64_t>(a->bounds.end - now)));
        }
        if (!policy.empty()) r.add_header("RateLimit-Policy", r.copy(policy));
        if (!state.empty()) r.add_header("RateLimit", r.copy(state));
    }
    if (!warning.empty()) r.add_header("X-Quota-Warning", r.copy(warning));
}

Verdict quota_handler(http::Request& r, const void* data) {
    const auto& plan = *static_cast<const LocationPlan*>(data);
    size_t idx = quota_index();
    if (r.module_ctx(idx) != nullptr) return Verdict::Next;  // counted before an internal redirect
    void* mem = r.arena->allocate(sizeof(QuotaRequestCtx), alignof(QuotaRequestCtx));
    auto* ctx = new (mem) QuotaRequestCtx();
    r.set_module_ctx(idx, ctx);

    const int64_t now = now_seconds(r);
    Applied applied[kMaxRulesPerLocation];
    size_t n = 0;
    for (const QuotaZone* z : plan.zones) {
        std::string_view key = z->key.evaluate(r);
        if (key.empty()) continue;
        Applied& a = applied[n];
        a.zone = z;
        if (z->quota_literal) {
            a.check.quota = z->quota;
        } else {
            std::string_view v = z->quota_value.evaluate(r);
            if (v.empty()) continue;
            auto q = parse_count(v);
            if (!q) {
                log_store_error(*z, "the quota value is not a number; not counted", {}, now);
                continue;
            }
            a.check.quota = *q;
        }
        a.bounds = limit_quota::period_bounds(now, z->period);
        a.check.zone_id = z->zone_id;
        a.check.period_end = a.bounds.end;
        limit_quota::hash_key(key, a.check.key_hash);
        ++n;
    }
    if (n == 0) return Verdict::Next;

    // One transaction per store (file), in store order; a refusal undoes the stores before it.
    bool rejected = false;
    bool failed = false;
    bool fail_closed = false;
    size_t done_upto = 0;  // applied[0, done_upto) were admitted by their stores
    // Group by store, keeping config order within a store (headers list zones in that order):
    // an insertion sort, stable and allocation-free for at most 16 entries.
    for (size_t i = 1; i < n; ++i) {
        for (size_t k = i; k > 0 && applied[k - 1].zone->store > applied[k].zone->store; --k) {
            std::swap(applied[k - 1], applied[k]);
        }
    }
    for (size_t i = 0; i < n && !rejected && !fail_closed;) {
        size_t store = applied[i].zone->store;
        size_t j = i;
        QuotaCheck checks[kMaxRulesPerLocation];
        while (j < n && applied[j].zone->store == store) {
            checks[j - i] = applied[j].check;
            ++j;
        }
        QuotaStore* s = g_worker != nullptr && store < g_worker->stores.size()
                            ? g_worker->stores[store].get()
                            : nullptr;
        std::string error;
        ApplyResult res = s != nullptr && s->is_open()
                              ? s->apply(std::span<QuotaCheck>(checks, j - i), error)
                              : ApplyResult::Error;
        if (s == nullptr || !s->is_open()) error = "the store is not open";
        for (size_t k = i; k < j; ++k) applied[k].check = checks[k - i];
        if (res == ApplyResult::Admitted || res == ApplyResult::Rejected) {
            for (size_t k = i; k < j; ++k) applied[k].counted = true;
        }
        if (res == ApplyResult::Admitted) {
            g_worker->dirty[store] = true;
            done_upto = j;
        } else if (res == ApplyResult::Rejected) {
            rejected = true;
        } else {
            failed = true;
            for (size_t k = i; k < j; ++k) {
                if (applied[k].zone->fail_closed) fail_closed = true;
            }
            log_store_error(*applied[i].zone,
                            res == ApplyResult::Full ? "the store is full" : "cannot count", error,
                            now);
            if (!fail_closed) done_upto = j;
        }
        i = j;
    }
    if (rejected || fail_closed) {
        // Undo what earlier stores admitted: the request counts nowhere.
        for (size_t i = 0; i < done_upto;) {
            size_t store = applied[i].zone->store;
            size_t j = i;
            QuotaCheck checks[kMaxRulesPerLocation];
            while (j < done_upto && applied[j].zone->store == store) {
                checks[j - i] = applied[j].check;
                ++j;
            }
            std::string error;
            if (applied[i].counted &&
                !g_worker->stores[store]->undo(std::span<const QuotaCheck>(checks, j - i), error)) {
                log_store_error(*applied[i].zone, "cannot undo a count", error, now);
            }
            for (size_t k = i; k < j; ++k) {
                if (applied[k].counted && applied[k].check.count > 0) --applied[k].check.count;
            }
            i = j;
        }
    }

    uint64_t min_remaining = UINT64_MAX;
    for (size_t i = 0; i < n; ++i) {
        if (!applied[i].counted) continue;
        const QuotaCheck& c = applied[i].check;
        uint64_t rem = c.count >= c.quota ? 0 : c.quota - c.count;
        if (rem < min_remaining) min_remaining = rem;
    }
    if (min_remaining != UINT64_MAX) {
        ctx->has_remaining = true;
        ctx->remaining = min_remaining;
    }
    add_headers(r, plan, applied, n, now);

    if (fail_closed) {
        ctx->status = "ERROR";
        return r.respond_error(503, "the quota store is unavailable");
    }
    if (rejected) {
        int64_t retry = 1;
        for (size_t i = 0; i < n; ++i) {
            if (applied[i].counted && applied[i].check.over) {
                retry = std::max<int64_t>(retry, applied[i].bounds.end - now);
            }
        }
        if (plan.dry_run) {
            ctx->status = "REJECTED_DRY_RUN";
            return Verdict::Next;
        }
        ctx->status = "REJECTED";
        r.add_header("Retry-After", format_u64(r, static_cast<uint64_t>(retry)));
        return r.respond_error(plan.status, "quota exceeded");
    }
    ctx->status = failed ? "ERROR" : "PASSED";
    return Verdict::Next;
}

bool get_status(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<QuotaRequestCtx*>(r.module_ctx(quota_index()));
    if (ctx == nullptr || ctx->status[0] == '\0') return false;
    out = ctx->status;
    return true;
}

bool get_remaining(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<QuotaRequestCtx*>(r.module_ctx(quota_index()));
    if (ctx == nullptr || !ctx->has_remaining) return false;
    out = format_u64(r, ctx->remaining);
    return true;
}

void register_variables(VariableRegistry& reg) {
    reg.add("limit_quota_status", get_status, 0, false);
    reg.add("limit_quota_remaining", get_remaining, 0, false);
}

// ---- processes ----

bool init_master(const ConfigGeneration& gen, const WorkerOwner& owner, std::string& error) {
    const auto& mc = gen.main_conf<QuotaMainConf>(quota_index());
    for (const StoreSpec& s : mc.stores) {
        std::string dir = s.path.substr(0, s.path.rfind('/'));
        if (dir.empty()) dir = "/";
        if (!ensure_state_directory(dir, owner, error)) return false;
        // Files left by a run as another user (root) are given to the workers too.
        if (owner.drop_privileges) {
            for (const std::string& f : {s.path, s.path + "-lock"}) {
                if (::chown(f.c_str(), owner.uid, owner.gid) != 0 && errno != ENOENT) {
                    error = "chown(\"" + f + "\") failed (" + std::strerror(errno) + ")";
                    return false;
                }
            }
        }
    }
    return true;
}

void sync_stores(bool log_errors) {
    for (size_t i = 0; i < g_worker->stores.size(); ++i) {
        if (!g_worker->dirty[i]) continue;
        g_worker->dirty[i] = false;
        std::string error;
        if (!g_worker->stores[i]->sync(error) && log_errors) {
            LOG_ERROR("limit_quota: %s: %s", g_worker->conf->stores[i].path.c_str(), error.c_str());
        }
    }
}

void on_prune() {
    bool more_any = false;
    int64_t now = 0;
    if (!g_worker->clock_file.empty()) now = read_test_clock(g_worker->clock_file);
    if (now <= 0) now = http::now_usec() / 1000000;
    for (size_t i = 0; i < g_worker->stores.size(); ++i) {
        QuotaStore& s = *g_worker->stores[i];
        if (!s.is_open()) continue;
        s.reader_check();
        bool more = false;
        std::string error;
        long n = s.prune(now, kPruneBatch, more, error);
        const std::string& path = g_worker->conf->stores[i].path;
        if (n < 0) {
            LOG_ERROR("limit_quota: pruning %s: %s", path.c_str(), error.c_str());
        } else if (n > 0) {
            g_worker->dirty[i] = true;
            LOG_INFO("limit_quota: pruned %ld records of ended periods from %s", n, path.c_str());
        }
        more_any = more_any || more;
    }
    g_worker->prune_timer->start(more_any ? 10 : kPruneIntervalMs);
}

void init_worker(const ConfigGeneration& gen, EventLoop& loop) {
    const auto& mc = gen.main_conf<QuotaMainConf>(quota_index());
    if (mc.stores.empty()) return;
    g_worker = new QuotaWorkerState();
    g_worker->conf = &mc;
    if (const char* f = std::getenv("TOLLGATE_TEST_CLOCK_FILE"); f != nullptr) {
        g_worker->clock_file = f;
    }
    uint64_t sync_ms = mc.sync_ms.value_or(1000);
    for (const StoreSpec& spec : mc.stores) {
        auto s = std::make_unique<QuotaStore>();
        std::string error;
        if (!s->open(spec.path, spec.map_size, sync_ms == 0, error)) {
            LOG_ERROR("limit_quota: %s; its zones apply their fail mode", error.c_str());
        }
        g_worker->stores.push_back(std::move(s));
        g_worker->dirty.push_back(false);
    }
    if (sync_ms > 0) {
        g_worker->sync_timer = loop.make_timer([sync_ms] {
            sync_stores(true);
            g_worker->sync_timer->start(sync_ms);
        });
        g_worker->sync_timer->start(sync_ms);
    }
    g_worker->prune_timer = loop.make_timer(on_prune);
    g_worker->prune_timer->start(0);
}

void exit_worker(const ConfigGeneration&) {
    if (g_worker == nullptr) return;
    sync_stores(true);
    g_worker->sync_timer.reset();
    g_worker->prune_timer.reset();
    for (auto& s : g_worker->stores) s->close();
    delete g_worker;
    g_worker = nullptr;
}

constexpr uint32_t kLocCtx = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"limit_quota_zone", kHttpContext, 1, 6, false, ConfScope::Main, set_zone},
    {"limit_quota", kLocCtx, 1, 1, false, ConfScope::Location, set_limit},
    {"limit_quota_status", kLocCtx, 1, 1, false, ConfScope::Location, set_status},
    {"limit_quota_dry_run", kLocCtx, 1, 1, false, ConfScope::Location, set_dry_run},
    {"limit_quota_warning", kLocCtx, 1, 1, false, ConfScope::Location, set_warning},
    {"limit_quota_headers", kLocCtx, 1, 1, false, ConfScope::Location, set_headers},
    {"limit_quota_sync", kHttpContext, 1, 1, false, ConfScope::Main, set_sync},
};

}  // namespace

extern const Module limit_quota_module = {
    .name = "limit_quota",
    .directives = kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new QuotaMainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new QuotaLocConf()); },
    .merge_location = merge_location,
    .register_variables = register_variables,
    .check = check,
    .attach_location = attach,
    .init_worker = init_worker,
    .exit_worker = exit_worker,
    .init_master = init_master,
};

namespace {
size_t quota_index() {
    static const size_t index = module_index(limit_quota_module);
    return index;
}
}  // namespace

}  // namespace tollgate
