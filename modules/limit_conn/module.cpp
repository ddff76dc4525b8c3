// The "limit_conn" module: concurrent requests per key, exact across workers.
//   limit_conn_zone KEY zone=NAME:SIZE;                                    http
//   limit_conn ZONE N;                                                     http, server, location
//   limit_conn_status CODE;             (default 429; nginx's default is 503) http, server,
//   location limit_conn_dry_run on|off;                                            http, server,
//   location limit_conn_log_level info|notice|warn|error;                          http, server,
//   location
// Variable: $limit_conn_status (PASSED REJECTED REJECTED_DRY_RUN). Phase: PreAccess.
// As nginx, the count is of requests being processed (HTTP/1.1 has one per connection at a
// time); it is taken in PreAccess and given back when the request ends (a request cleanup), so
// a slow upstream holds its slot for the whole exchange. Counts live in a shared zone: one
// record per key, removed when it reaches 0; a full zone refuses new keys (never evicts a live
// count). Known limit, as nginx: a worker killed with SIGKILL never gives its counts back; a
// lock whose owner died resets the zone (in-flight counts are forgotten, never corrupted).
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/request.hpp"
#include "core/log.hpp"
#include "core/shared_zone.hpp"

namespace tollgate {
namespace limit_conn {
namespace {

size_t module_idx();

struct ConnState {
    uint32_t count;
    uint32_t pad;
};

struct Zone {
    std::string name;
    ComplexValue key;
    std::shared_ptr<SharedZone> shm;
    SharedTable<ConnState> table;
};

struct ZoneRef {
    std::string name;
    Zone* zone = nullptr;
    std::string file;
    int line = 0;
};

struct Limit {
    std::shared_ptr<ZoneRef> ref;
    uint32_t conn = 0;
};

struct MainConf : ModuleConf {
    std::vector<std::unique_ptr<Zone>> zones;
    std::vector<std::shared_ptr<ZoneRef>> refs;
};

struct LocConf : ModuleConf {
    std::optional<std::vector<Limit>> limits;
    std::optional<int> status;
    std::optional<bool> dry_run;
    std::optional<log::Level> log_level;
};

enum class Status : uint8_t { None, Passed, Rejected, RejectedDryRun };

// A count this request holds; given back by the request cleanup. Lives in the request arena.
struct Held {
    Zone* zone;
    ZoneKey key;
    bool released;
};

struct RequestCtx {
    Status status = Status::None;
};

// ---- run time ---------------------------------------------------------------------------------

void release(void* p) {
    auto* h = static_cast<Held*>(p);
    if (h->released) return;
    h->released = true;
    auto& t = h->zone->table;
    if (t.mutex().lock()) t.reset();
    if (ConnState* s = t.find(h->key)) {
        if (s->count > 1) {
            --s->count;
        } else {
            t.erase(h->key);
        }
    }
    t.mutex().unlock();
}

void release_all(std::pmr::vector<Held*>& held) {
    for (Held* h : held) release(h);
}

bool status_variable(http::Request& r, std::string_view, uintptr_t, std::string_view& out) {
    auto* ctx = static_cast<RequestCtx*>(r.module_ctx(module_idx()));
    if (ctx == nullptr || ctx->status == Status::None) return false;
    out = ctx->status == Status::Passed     ? "PASSED"
          : ctx->status == Status::Rejected ? "REJECTED"
                                            : "REJECTED_DRY_RUN";
    return true;
}

Verdict handle(http::Request& r, const void* data) {
    const auto& conf = *static_cast<const LocConf*>(data);
    auto* ctx = static_cast<RequestCtx*>(r.module_ctx(module_idx()));
    if (ctx != nullptr) return Verdict::Next;  // once per request (internal redirects), as nginx
    ctx = new (r.arena->allocate(sizeof(RequestCtx), alignof(RequestCtx))) RequestCtx();
    r.set_module_ctx(module_idx(), ctx);
    std::pmr::vector<Held*> held(r.arena);
    log::Level level = conf.log_level.value_or(log::Level::Error);
    bool dry_run = conf.dry_run.value_or(false);
    for (const Limit& lim : *conf.limits) {
        Zone& z = *lim.ref->zone;
        std::string_view key = z.key.evaluate(r);
        if (key.empty()) continue;
        if (key.size() > 65535) {
            LOG_ERROR("the value of the limit_conn key of zone \"%s\" is more than 65535 bytes",
                      z.name.c_str());
            continue;
        }
        ZoneKey k = zone_key(key);
        bool inserted = false;
        if (z.table.mutex().lock()) z.table.reset();
        ConnState* s = z.table.find_or_insert(k, false, inserted);
        bool full = s == nullptr;
        bool over = !full && s->count >= lim.conn;
        if (over && inserted) z.table.erase(k);
        if (!full && !over) ++s->count;
        z.table.mutex().unlock();
        if (full || over) {
            if (full) {
                LOG_ERROR("could not allocate node in limit_conn zone \"%s\"", z.name.c_str());
            }
            TG_LOG(level, "limiting connections%s by zone \"%s\", client: %.*s",
                   dry_run ? ", dry run" : "", z.name.c_str(),
                   static_cast<int>(r.conn.remote_addr.size()), r.conn.remote_addr.data());
            release_all(held);
            if (dry_run) {
                ctx->status = Status::RejectedDryRun;
                return Verdict::Next;
            }
            ctx->status = Status::Rejected;
            return r.respond_error(conf.status.value_or(429));
        }
        auto* h = new (r.arena->allocate(sizeof(Held), alignof(Held))) Held{&z, k, false};
        r.add_cleanup(release, h);
        held.push_back(h);
    }
    ctx->status = held.empty() ? Status::None : Status::Passed;
    return Verdict::Next;
}

// ---- directives -------------------------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

void set_zone(DirectiveContext& ctx) {
    auto& main = ctx.conf<MainConf>();
    auto zone = std::make_unique<Zone>();
    zone->key = ComplexValue::compile(ctx.arg(0), ctx.builder.variables(), ctx.node);
    uint64_t size = 0;
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        const std::string& a = ctx.arg(i);
        if (!starts_with(a, "zone=")) ctx.fail("invalid parameter \"" + a + "\"");
        std::string_view v = std::string_view(a).substr(5);
        size_t colon = v.rfind(':');
        if (colon == std::string_view::npos || colon == 0) {
            ctx.fail("invalid zone size \"" + a + "\"");
        }
        zone->name = std::string(v.substr(0, colon));
        auto parsed = conf::parse_size(v.substr(colon + 1));
        if (!parsed || *parsed == 0) ctx.fail("invalid zone size \"" + a + "\"");
        size = *parsed;
        long page = sysconf(_SC_PAGESIZE);
        if (size < 8 * static_cast<uint64_t>(page > 0 ? page : 4096)) {
            ctx.fail("zone \"" + zone->name + "\" is too small");
        }
    }
    if (zone->name.empty()) ctx.fail("\"limit_conn_zone\" must have \"zone\" parameter");
    for (const auto& z : main.zones) {
        if (z->name == zone->name) {
            ctx.fail("limit_conn_zone \"" + zone->name + "\" is already bound to key \"" +
                     z->key.source() + "\"");
        }
    }
    zone->shm = ctx.builder.shared_zone(ctx.node, zone->name, size, "limit_conn",
                                        zone_key("limit_conn/1/" + ctx.arg(0)).lo);
    if (!zone->table.attach(zone->shm->data(), zone->shm->data_size(), !zone->shm->reused())) {
        ctx.fail("zone \"" + zone->name + "\" cannot be laid out");
    }
    main.zones.push_back(std::move(zone));
}

void set_limit(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    auto& main = static_cast<MainConf&>(*ctx.builder.generation().main_confs[module_idx()]);
    auto n = conf::parse_int(ctx.arg(1));
    if (!n || *n <= 0) ctx.fail("invalid number of connections \"" + ctx.arg(1) + "\"");
    if (*n > 65535) ctx.fail("connection limit must be less 65536");
    if (!conf.limits) conf.limits.emplace();
    for (const Limit& l : *conf.limits) {
        if (l.ref->name == ctx.arg(0)) ctx.duplicate();
    }
    auto ref = std::make_shared<ZoneRef>();
    ref->name = ctx.arg(0);
    ref->file = ctx.node.file ? *ctx.node.file : std::string();
    ref->line = ctx.node.line;
    main.refs.push_back(ref);
    conf.limits->push_back(Limit{ref, static_cast<uint32_t>(*n)});
}

void set_status(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    if (conf.status) ctx.duplicate();
    auto v = conf::parse_int(ctx.arg(0));
    if (!v || *v < 400 || *v > 599) ctx.fail("value must be between 400 and 599");
    conf.status = static_cast<int>(*v);
}

void set_dry_run(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    if (conf.dry_run) ctx.duplicate();
    conf.dry_run = ctx.flag_arg(0);
}

void set_log_level(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    if (conf.log_level) ctx.duplicate();
    const std::string& v = ctx.arg(0);
    if (v == "info")
        conf.log_level = log::Level::Info;
    else if (v == "notice")
        conf.log_level = log::Level::Notice;
    else if (v == "warn")
        conf.log_level = log::Level::Warn;
    else if (v == "error")
        conf.log_level = log::Level::Error;
    else
        ctx.invalid_value(0);
}

void merge(const ModuleConf& parent_base, ModuleConf& child_base) {
    const auto& parent = static_cast<const LocConf&>(parent_base);
    auto& child = static_cast<LocConf&>(child_base);
    if (!child.limits) child.limits = parent.limits;
    if (!child.status) child.status = parent.status;
    if (!child.dry_run) child.dry_run = parent.dry_run;
    if (!child.log_level) child.log_level = parent.log_level;
}

void check(GenerationBuilder& b) {
    auto& main = static_cast<MainConf&>(*b.generation().main_confs[module_idx()]);
    for (const auto& ref : main.refs) {
        for (const auto& z : main.zones) {
            if (z->name == ref->name) ref->zone = z.get();
        }
        if (ref->zone == nullptr) {
            throw conf::ConfigError(ref->file, ref->line,
                                    "unknown limit_conn_zone \"" + ref->name + "\"");
        }
    }
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<LocConf>(module_idx());
    if (conf.limits && !conf.limits->empty()) lb.add(Phase::PreAccess, handle, &conf);
}

void register_variables(VariableRegistry& reg) {
    reg.add("limit_conn_status", status_variable, 0, false);
}

constexpr uint32_t kHttpLevels = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"limit_conn_zone", kHttpContext, 2, 2, false, ConfScope::Main, set_zone},
    {"limit_conn", kHttpLevels, 2, 2, false, ConfScope::Location, set_limit},
    {"limit_conn_status", kHttpLevels, 1, 1, false, ConfScope::Location, set_status},
    {"limit_conn_dry_run", kHttpLevels, 1, 1, false, ConfScope::Location, set_dry_run},
    {"limit_conn_log_level", kHttpLevels, 1, 1, false, ConfScope::Location, set_log_level},
};

}  // namespace
}  // namespace limit_conn

extern const Module limit_conn_module = {
    .name = "limit_conn",
    .directives = limit_conn::kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new limit_conn::MainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new limit_conn::LocConf()); },
    .merge_location = limit_conn::merge,
    .register_variables = limit_conn::register_variables,
    .check = limit_conn::check,
    .attach_location = limit_conn::attach,
};

namespace limit_conn {
namespace {
size_t module_idx() {
    static const size_t index = module_index(limit_conn_module);
    return index;
}
}  // namespace
}  // namespace limit_conn

}  // namespace tollgate
