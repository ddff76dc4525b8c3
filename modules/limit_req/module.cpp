// The "limit_req" module: request rate limits, exact across workers (shared-memory zones).
//   limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m|$VAR [algorithm=leaky_bucket|sliding_window];
//                                                                          http
//   limit_req zone=NAME [burst=N] [nodelay | delay=N];                     http, server, location
//   limit_req_status CODE;             (default 429; nginx's is 503)  http, server, location
//   limit_req_dry_run on|off;                                         http, server, location
//   limit_req_log_level info|notice|warn|error;                       http, server, location
//   limit_req_headers off|on|x|ietf|both;  (default off; on = both)   http, server, location
// Cluster mode (extra limit_req_zone parameters):
//   redis=URL [redis_fail=open|closed|local] [redis_timeout=TIME]    (defaults: local, 100ms)
// The zone's counters live in Redis (core/redis_url.hpp's URLs) under
// "tollgate:limit_req:NAME:lb:" or ":sw:" + the hex XXH3-128 hash of the key (never the raw key,
// which may be a secret), updated by one atomic Lua script per request and zone
// (core/redis_scripts.hpp; the server's clock), so several gateways share one limit. While
// Redis is away (refused, no reply within redis_timeout, an error reply): open admits (no
// headers for that zone), closed answers 503 + "Retry-After: 1", local decides on the zone's
// own shared-memory counters. The client reconnects by itself; recovery needs no action.
// Each worker keeps one connection per distinct URL; zones sharing a URL share the smallest
// redis_timeout. Redis zones are decided one by one (not jointly with the location's other
// zones): a Redis zone that admitted has counted the request even when another limit rejects
// it; local zones are checked first so their rejections never reach Redis.
// Variable: $limit_req_status (PASSED DELAYED REJECTED DELAYED_DRY_RUN REJECTED_DRY_RUN).
// Phase: PreAccess. Several limit_req in one level all apply; a level without any inherits its
// parent's, as nginx. rate=$VAR takes the rate per request ("10r/s", from a map on a tier): an
// empty value is not limited, an invalid one answers 500 and is logged (fail closed).
#include <unistd.h>

#include <cstring>
#include <memory>

#include "core/config/error.hpp"
#include "core/config/values.hpp"
#include "core/generation.hpp"
#include "core/http/http_config.hpp"
#include "modules/limit_req/limit_req.hpp"

namespace tollgate {
namespace limit_req {
namespace {

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

uint64_t page_size() {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<uint64_t>(p) : 4096;
}

void set_zone(DirectiveContext& ctx) {
    auto& main = ctx.conf<MainConf>();
    auto zone = std::make_unique<Zone>();
    std::string key_source = ctx.arg(0);
    zone->key = ComplexValue::compile(key_source, ctx.builder.variables(), ctx.node);
    uint64_t size = 0;
    bool have_redis_option = false;
    zone->rate = Rate{1, 1000, 1000};
    for (size_t i = 1; i < ctx.nargs(); ++i) {
        const std::string& a = ctx.arg(i);
        if (starts_with(a, "zone=")) {
            std::string_view v = std::string_view(a).substr(5);
            size_t colon = v.rfind(':');
            if (colon == std::string_view::npos || colon == 0) {
                ctx.fail("invalid zone size \"" + a + "\"");
            }
            zone->name = std::string(v.substr(0, colon));
            auto parsed = conf::parse_size(v.substr(colon + 1));
            if (!parsed || *parsed == 0) ctx.fail("invalid zone size \"" + a + "\"");
            size = *parsed;
            if (size < 8 * page_size()) ctx.fail("zone \"" + zone->name + "\" is too small");
        } else if (starts_with(a, "rate=")) {
            std::string_view v = std::string_view(a).substr(5);
            if (!v.empty() && v.front() == '$') {
                zone->rate_variable = true;
                zone->rate_value = ComplexValue::compile(v, ctx.builder.variables(), ctx.node);
            } else if (!parse_rate(v, zone->rate)) {
                ctx.fail("invalid rate \"" + a + "\"");
            }
        } else if (starts_with(a, "algorithm=")) {
            std::string_view v = std::string_view(a).substr(10);
            if (v == "leaky_bucket") {
                zone->algorithm = Algorithm::LeakyBucket;
            } else if (v == "sliding_window") {
                zone->algorithm = Algorithm::SlidingWindow;
            } else {
                ctx.fail("invalid algorithm \"" + std::string(v) +
                         "\", it must be \"leaky_bucket\" or \"sliding_window\"");
            }
        } else if (starts_with(a, "redis=")) {
            std::string error;
            if (!parse_redis_url(std::string_view(a).substr(6), zone->redis_url, error)) {
                // The URL is not echoed: it may hold a password.
                ctx.fail("invalid redis URL in \"limit_req_zone\": " + error);
            }
            zone->redis = true;
        } else if (starts_with(a, "redis_fail=")) {
            std::string_view v = std::string_view(a).substr(11);
            if (v == "open") {
                zone->redis_fail = RedisFail::Open;
            } else if (v == "closed") {
                zone->redis_fail = RedisFail::Closed;
            } else if (v == "local") {
                zone->redis_fail = RedisFail::Local;
            } else {
                ctx.fail("invalid redis_fail \"" + std::string(v) +
                         "\", it must be \"open\", \"closed\" or \"local\"");
            }
            have_redis_option = true;
        } else if (starts_with(a, "redis_timeout=")) {
            auto ms = conf::parse_time_ms(std::string_view(a).substr(14));
            if (!ms || *ms == 0 || *ms > 60000) ctx.fail("invalid redis_timeout \"" + a + "\"");
            zone->redis_timeout_ms = *ms;
            have_redis_option = true;
        } else if (a == "sync") {
            ctx.fail(
                "\"sync\" is not supported (nginx Plus zone_sync); cluster-wide limits use "
                "a Redis zone");
        } else {
            ctx.fail("invalid parameter \"" + a + "\"");
        }
    }
    if (zone->name.empty()) ctx.fail("\"limit_req_zone\" must have \"zone\" parameter");
    if (have_redis_option && !zone->redis) {
        ctx.fail("\"redis_fail\" and \"redis_timeout\" need \"redis=URL\"");
    }
    if (zone->redis) {
        zone->redis_prefix = "tollgate:limit_req:" + zone->name +
                             (zone->algorithm == Algorithm::LeakyBucket ? ":lb:" : ":sw:");
    }
    for (const auto& z : main.zones) {
        if (z->name == zone->name) {
            ctx.fail("limit_req_zone \"" + zone->name + "\" is already bound to key \"" +
                     z->key.source() + "\"");
        }
    }
    // What the zone's bytes mean: a different algorithm or key gets a fresh zone on reload; a
    // changed rate keeps the counters (nginx keeps them too).
    std::string layout =
        "limit_req/1/" + std::to_string(static_cast<int>(zone->algorithm)) + "/" + key_source;
    zone->shm =
        ctx.builder.shared_zone(ctx.node, zone->name, size, "limit_req", zone_key(layout).lo);
    bool format = !zone->shm->reused();
    bool ok = zone->algorithm == Algorithm::LeakyBucket
                  ? zone->leaky.attach(zone->shm->data(), zone->shm->data_size(), format)
                  : zone->window.attach(zone->shm->data(), zone->shm->data_size(), format);
    if (!ok) ctx.fail("zone \"" + zone->name + "\" cannot be laid out");
    main.zones.push_back(std::move(zone));
}

void set_limit(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    auto& main = static_cast<MainConf&>(*ctx.builder.generation().main_confs[module_idx()]);
    Limit lim;
    bool nodelay = false;
    bool have_delay = false;
    uint64_t delay = 0;
    for (size_t i = 0; i < ctx.nargs(); ++i) {
        const std::string& a = ctx.arg(i);
        if (starts_with(a, "zone=")) {
            auto ref = std::make_shared<ZoneRef>();
            ref->name = a.substr(5);
            if (ref->name.empty()) ctx.fail("invalid zone \"" + a + "\"");
            ref->file = ctx.node.file ? *ctx.node.file : std::string();
            ref->line = ctx.node.line;
            lim.ref = ref;
        } else if (starts_with(a, "burst=")) {
            auto v = conf::parse_int(std::string_view(a).substr(6));
            if (!v || *v < 0 || *v > 1000000000) ctx.fail("invalid burst value \"" + a + "\"");
            lim.burst = static_cast<uint64_t>(*v) * 1000;
            lim.has_burst_or_delay = true;
        } else if (starts_with(a, "delay=")) {
            auto v = conf::parse_int(std::string_view(a).substr(6));
            if (!v || *v < 0 || *v > 1000000000) ctx.fail("invalid delay value \"" + a + "\"");
            delay = static_cast<uint64_t>(*v) * 1000;
            have_delay = true;
            lim.has_burst_or_delay = true;
        } else if (a == "nodelay") {
            nodelay = true;
        } else {
            ctx.fail("invalid parameter \"" + a + "\"");
        }
    }
    if (!lim.ref) ctx.fail("\"limit_req\" must have \"zone\" parameter");
    lim.delay = nodelay ? UINT64_MAX / 4 : have_delay ? delay : 0;
    if (!conf.limits) conf.limits.emplace();
    for (const Limit& other : *conf.limits) {
        if (other.ref->name == lim.ref->name) ctx.fail("duplicate limit \"" + lim.ref->name + "\"");
    }
    main.refs.push_back(lim.ref);
    conf.limits->push_back(std::move(lim));
}

void set_status(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    if (conf.status) ctx.duplicate();
    auto v = conf::parse_int(ctx.arg(0));
    if (!v || *v < 400 || *v > 599) {
        ctx.fail("value must be between 400 and 599");
    }
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

void set_headers(DirectiveContext& ctx) {
    auto& conf = ctx.conf<LocConf>();
    if (conf.headers) ctx.duplicate();
    const std::string& v = ctx.arg(0);
    if (v == "off")
        conf.headers = HeadersMode::Off;
    else if (v == "on" || v == "both")
        conf.headers = HeadersMode::Both;
    else if (v == "x")
        conf.headers = HeadersMode::X;
    else if (v == "ietf")
        conf.headers = HeadersMode::Ietf;
    else
        ctx.invalid_value(0, "it must be \"off\", \"on\", \"x\", \"ietf\" or \"both\"");
}

void merge(const ModuleConf& parent_base, ModuleConf& child_base) {
    const auto& parent = static_cast<const LocConf&>(parent_base);
    auto& child = static_cast<LocConf&>(child_base);
    if (!child.limits) child.limits = parent.limits;
    if (!child.status) child.status = parent.status;
    if (!child.dry_run) child.dry_run = parent.dry_run;
    if (!child.log_level) child.log_level = parent.log_level;
    if (!child.headers) child.headers = parent.headers;
}

void check(GenerationBuilder& b) {
    auto& main = static_cast<MainConf&>(*b.generation().main_confs[module_idx()]);
    for (const auto& ref : main.refs) {
        const Zone* zone = nullptr;
        for (const auto& z : main.zones) {
            if (z->name == ref->name) zone = z.get();
        }
        if (zone == nullptr) {
            throw conf::ConfigError(ref->file, ref->line,
                                    "unknown limit_req_zone \"" + ref->name + "\"");
        }
        ref->zone = zone;
    }
}

void check_sliding(const LocConf& conf) {
    if (!conf.limits) return;
    for (const Limit& lim : *conf.limits) {
        if (lim.ref->zone->algorithm == Algorithm::SlidingWindow && lim.has_burst_or_delay) {
            throw conf::ConfigError(lim.ref->file, lim.ref->line,
                                    "\"burst\" and \"delay\" do not apply to the sliding_window "
                                    "algorithm of zone \"" +
                                        lim.ref->name + "\"");
        }
    }
}

void attach(LocationBuilder& lb) {
    const auto& conf = lb.conf<LocConf>(module_idx());
    check_sliding(conf);
    if (conf.limits && !conf.limits->empty()) lb.add(Phase::PreAccess, handle, &conf);
}

void register_variables(VariableRegistry& reg) {
    reg.add("limit_req_status", status_variable, 0, false);
}

constexpr uint32_t kHttpLevels = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"limit_req_zone", kHttpContext, 2, 8, false, ConfScope::Main, set_zone},
    {"limit_req", kHttpLevels, 1, 4, false, ConfScope::Location, set_limit},
    {"limit_req_status", kHttpLevels, 1, 1, false, ConfScope::Location, set_status},
    {"limit_req_dry_run", kHttpLevels, 1, 1, false, ConfScope::Location, set_dry_run},
    {"limit_req_log_level", kHttpLevels, 1, 1, false, ConfScope::Location, set_log_level},
    {"limit_req_headers", kHttpLevels, 1, 1, false, ConfScope::Location, set_headers},
};

}  // namespace
}  // namespace limit_req

extern const Module limit_req_module = {
    .name = "limit_req",
    .directives = limit_req::kDirectives,
    .create_main = [] { return std::unique_ptr<ModuleConf>(new limit_req::MainConf()); },
    .create_location = [] { return std::unique_ptr<ModuleConf>(new limit_req::LocConf()); },
    .merge_location = limit_req::merge,
    .register_variables = limit_req::register_variables,
    .check = limit_req::check,
    .attach_location = limit_req::attach,
    .init_worker = limit_req::init_worker,
    .exit_worker = [](const ConfigGeneration&) { limit_req::exit_worker(); },
};

namespace limit_req {
size_t module_idx() {
    static const size_t index = module_index(limit_req_module);
    return index;
}
}  // namespace limit_req

}  // namespace tollgate
