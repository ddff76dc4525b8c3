// The "mirror" module: copies of requests sent to another location, their responses discarded.
//   mirror URI [sample=PERCENT] | off;   http, server, location (several allowed; inherited as
//                                        nginx: a level with any mirror replaces the parent's)
//   mirror_request_body on | off;        http, server, location (on)
// Phase: PreContent (after the access checks, as nginx's precontent phase). Each copy is a detached
// subrequest (core/http/subrequest.hpp) to the location matching URI with the parent's method,
// headers, args and $request_uri; the main request never waits for it. sample=PERCENT (our
// extension) mirrors each request with that probability, drawn per request and per mirror. With
// mirror_request_body on, a body up to 64k is read ahead (core/http/body_preread.hpp, the bytes
// still go to the main request) and copied to each mirror; a larger body is not mirrored (logged at
// info). With it off, a mirror gets no body and nothing waits. At most 256 mirrors are in flight
// per worker; past that a mirror is skipped (logged at info, counted).
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/generation.hpp"
#include "core/http/body_preread.hpp"
#include "core/http/request.hpp"
#include "core/http/subrequest.hpp"
#include "core/log.hpp"

namespace tollgate {

extern const Module mirror_module;

namespace {

constexpr size_t kMaxInFlight = 256;
constexpr size_t kMaxBody = 64 * 1024;
uint64_t g_skipped = 0;

size_t mirror_index() {
    static const size_t index = module_index(mirror_module);
    return index;
}

struct MirrorTarget {
    std::string uri;
    uint32_t sample = 10000;  // per 10000
};

struct MirrorLocConf : ModuleConf {
    std::optional<std::vector<MirrorTarget>> targets;  // empty: off
    std::optional<bool> request_body;
};

bool sampled(uint32_t per10000) {
    if (per10000 >= 10000) return true;
    static std::minstd_rand rng{std::random_device{}()};
    return std::uniform_int_distribution<uint32_t>(0, 9999)(rng) < per10000;
}

void start_mirrors(http::Request& r, const MirrorLocConf& c, const Buffer* body) {
    for (const MirrorTarget& t : *c.targets) {
        if (!sampled(t.sample)) continue;
        if (!http::start_detached_subrequest(r, t.uri, body, kMaxInFlight)) {
            ++g_skipped;
            LOG_INFO("mirror to \"%s\" skipped: %zu mirrors in flight (%llu skipped)",
                     t.uri.c_str(), http::detached_subrequests_in_flight(),
                     static_cast<unsigned long long>(g_skipped));
        }
    }
}

Verdict body_read(http::Request& r, const void* data, http::PrereadResult result) {
    const auto& c = *static_cast<const MirrorLocConf*>(data);
    if (result == http::PrereadResult::Error) {
        int status = r.body_error_status != 0 ? r.body_error_status : 400;
        return r.respond_error(status);
    }
    if (result == http::PrereadResult::TooLarge) {
        LOG_INFO("request body larger than %zu bytes is not mirrored", kMaxBody);
        return Verdict::Next;
    }
    Buffer empty;
    start_mirrors(r, c, r.preread != nullptr ? r.preread : &empty);
    return Verdict::Next;
}

Verdict mirror_handler(http::Request& r, const void* data) {
    // Done already (an internal redirect), or a mirror itself: mirrors are never mirrored.
    if (http::is_subrequest(r) || r.module_ctx(mirror_index()) != nullptr) return Verdict::Next;
    r.set_module_ctx(mirror_index(), &g_skipped);
    const auto& c = *static_cast<const MirrorLocConf*>(data);
    if (!c.request_body.value_or(true) || !r.has_body()) {
        start_mirrors(r, c, nullptr);
        return Verdict::Next;
    }
    return http::preread_body(r, kMaxBody, body_read, &c);
}

void mirror(DirectiveContext& ctx) {
    auto& c = ctx.conf<MirrorLocConf>();
    if (ctx.arg(0) == "off") {
        if (ctx.nargs() != 1) ctx.fail("invalid number of arguments in \"mirror\" directive");
        if (c.targets && !c.targets->empty()) ctx.fail("\"mirror off\" mixed with mirror URIs");
        c.targets.emplace();
        return;
    }
    if (c.targets && c.targets->empty()) ctx.fail("\"mirror off\" mixed with mirror URIs");
    MirrorTarget t;
    t.uri = ctx.arg(0);
    if (t.uri.empty() || t.uri[0] != '/') ctx.invalid_value(0, "a mirror URI starts with \"/\"");
    if (ctx.nargs() == 2) {
        const std::string& a = ctx.arg(1);
        if (a.rfind("sample=", 0) != 0 || a.size() < 9 || a.back() != '%') {
            ctx.invalid_value(1, "expected sample=PERCENT%");
        }
        std::string num = a.substr(7, a.size() - 8);
        // PERCENT: 0..100 with up to two decimals.
        uint32_t whole = 0, frac = 0, fdigits = 0;
        bool dot = false, any = false;
        for (char ch : num) {
            if (ch == '.' && !dot) {
                dot = true;
            } else if (ch >= '0' && ch <= '9' && (!dot || fdigits < 2) && whole <= 100) {
                any = true;
                if (dot) {
                    frac = frac * 10 + static_cast<uint32_t>(ch - '0');
                    ++fdigits;
                } else {
                    whole = whole * 10 + static_cast<uint32_t>(ch - '0');
                }
            } else {
                ctx.invalid_value(1, "PERCENT is 0 to 100, at most two decimals");
            }
        }
        if (fdigits == 1) frac *= 10;
        uint32_t v = whole * 100 + frac;
        if (!any || v > 10000) ctx.invalid_value(1, "PERCENT is 0 to 100, at most two decimals");
        t.sample = v;
    }
    if (!c.targets) c.targets.emplace();
    c.targets->push_back(std::move(t));
}

void mirror_request_body(DirectiveContext& ctx) {
    auto& c = ctx.conf<MirrorLocConf>();
    if (c.request_body) ctx.duplicate();
    c.request_body = ctx.flag_arg(0);
}

void merge(const ModuleConf& p, ModuleConf& ch) {
    const auto& parent = static_cast<const MirrorLocConf&>(p);
    auto& child = static_cast<MirrorLocConf&>(ch);
    if (!child.targets) child.targets = parent.targets;
    if (!child.request_body) child.request_body = parent.request_body;
}

void attach(LocationBuilder& lb) {
    const auto& c = lb.conf<MirrorLocConf>(mirror_index());
    if (c.targets && !c.targets->empty()) lb.add(Phase::PreContent, mirror_handler, &c);
}

constexpr uint32_t kHSL = kHttpContext | kServerContext | kLocationContext;

constexpr Directive kDirectives[] = {
    {"mirror", kHSL, 1, 2, false, ConfScope::Location, mirror},
    {"mirror_request_body", kHSL, 1, 1, false, ConfScope::Location, mirror_request_body},
};

}  // namespace

extern const Module mirror_module = {
    .name = "mirror",
    .directives = kDirectives,
    .create_location = [] { return std::unique_ptr<ModuleConf>(new MirrorLocConf()); },
    .merge_location = merge,
    .attach_location = attach,
};

}  // namespace tollgate
