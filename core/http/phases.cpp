#include "core/http/phases.hpp"

#include <unistd.h>

#include <new>

#include "core/http/http_config.hpp"
#include "core/http/http_core_module.hpp"
#include "core/log.hpp"

namespace tollgate::http {

namespace {

constexpr size_t kRewrite = static_cast<size_t>(Phase::Rewrite);
constexpr size_t kAccess = static_cast<size_t>(Phase::Access);
constexpr size_t kContent = static_cast<size_t>(Phase::Content);

// A 401/403 that `satisfy any` keeps while the next Access checks run.
struct Denial {
    explicit Denial(std::pmr::memory_resource* arena) : headers(arena) {}
    int status = 0;
    std::string_view content_type;
    int64_t content_length = -1;
    ResponseBody body;
    std::pmr::vector<ResponseHeader> headers;
};

// What the runner does after a handler's verdict.
enum class Then : uint8_t { Continue, EndPhase, Stop, Suspend };

bool satisfy_any(const Request& r) {
    return r.loc_conf<HttpCoreLocConf>(http_core_index()).satisfy_any.value_or(false);
}

void clear_response(Request& r) {
    if (r.body.kind == BodyKind::File && r.body.fd >= 0) ::close(r.body.fd);
    r.status = 0;
    r.content_type = {};
    r.content_length = -1;
    r.body = ResponseBody{};
    r.out_headers.clear();
}

// Keeps the denial `r` holds and clears the response. The first denial is kept, except that a
// 401 replaces a 403 (nginx answers 401 once any check asked for credentials).
void keep_denial(Request& r) {
    auto* d = static_cast<Denial*>(r.phase_cursor.denial);
    if (d == nullptr || (d->status != 401 && r.status == 401)) {
        if (d == nullptr) {
            void* p = r.arena->allocate(sizeof(Denial), alignof(Denial));
            d = new (p) Denial(r.arena);  // arena memory: never destroyed, nothing to release
            r.phase_cursor.denial = d;
        }
        d->status = r.status;
        d->content_type = r.content_type;
        d->content_length = r.content_length;
        d->body = r.body;
        r.body = ResponseBody{};  // the denial owns any fd now
        d->headers.assign(r.out_headers.begin(), r.out_headers.end());
    }
    clear_response(r);
}

// error_page for a response set while it was deferred (satisfy any), keeping its headers.
void apply_error_page(Request& r) {
    if (r.in_error_page || r.redirect_pending()) return;
    if (r.loc_conf<HttpCoreLocConf>(http_core_index()).error_page_for(r.status) != nullptr) {
        (void)r.respond_error(r.status);
    }
}

// The Access phase ended under satisfy any without an Allow: send the kept denial, if any.
// Returns true when there is one.
bool end_collecting(Request& r) {
    r.phase_cursor.collecting = false;
    auto* d = static_cast<Denial*>(r.phase_cursor.denial);
    if (d == nullptr) return false;
    r.phase_cursor.denial = nullptr;
    clear_response(r);
    r.status = d->status;
    r.content_type = d->content_type;
    r.content_length = d->content_length;
    r.body = d->body;
    r.out_headers.assign(d->headers.begin(), d->headers.end());
    apply_error_page(r);
    return true;
}

Then on_verdict(Request& r, size_t phase, Verdict v) {
    switch (v) {
        case Verdict::Next:
            return Then::Continue;
        case Verdict::Suspend:
            return Then::Suspend;
        case Verdict::Allow:
            if (phase != kAccess || !r.phase_cursor.collecting) return Then::Continue;
            // satisfy any: allowed; what earlier checks denied no longer matters.
            r.phase_cursor.collecting = false;
            r.phase_cursor.denial = nullptr;
            return Then::EndPhase;
        case Verdict::Respond:
            break;
    }
    if (phase == kAccess && r.phase_cursor.collecting && !r.redirect_pending() &&
        (r.status == 401 || r.status == 403)) {
        keep_denial(r);
        return Then::Continue;
    }
    if (r.phase_cursor.collecting) {  // another answer stops satisfy any at once
        r.phase_cursor.collecting = false;
        r.phase_cursor.denial = nullptr;
        apply_error_page(r);
    }
    return Then::Stop;
}

// Runs from `phase`/`step`; `responded`: `r` holds a response already (it may have an internal
// redirect pending, which is carried out).
bool run(Request& r, size_t phase, size_t step, bool responded) {
    for (;;) {
        for (; phase <= kContent && !responded; ++phase, step = 0) {
            if (phase == kAccess) {
                if (r.subrequest != Request::SubrequestKind::None) continue;
                if (step == 0) {
                    r.phase_cursor.collecting = satisfy_any(r);
                    r.phase_cursor.denial = nullptr;
                }
            }
            const auto& steps = r.location->phases[phase];
            for (; step < steps.size(); ++step) {
                Then then = on_verdict(r, phase, steps[step].handler(r, steps[step].data));
                if (then == Then::Continue) continue;
                if (then == Then::Suspend) {
                    r.phase_cursor.phase = phase;
                    r.phase_cursor.step = step + 1;
                    return false;
                }
                if (then == Then::Stop) responded = true;
                break;
            }
            if (phase == kAccess && !responded && r.phase_cursor.collecting) {
                responded = end_collecting(r);
            }
        }
        if (!responded) (void)r.respond_error(404);
        if (!r.redirect_pending()) return true;
        std::string_view named = r.named_target();
        r.clear_redirect();
        r.phase_cursor.collecting = false;
        r.phase_cursor.denial = nullptr;
        if (!named.empty()) {
            auto it = r.server->named.find(named);
            if (it == r.server->named.end()) {
                LOG_ERROR("named location \"%.*s\" not found", static_cast<int>(named.size()),
                          named.data());
                r.in_error_page = true;
                (void)r.respond_error(500);
                return true;
            }
            r.location = it->second;
        } else {
            r.location = r.server->find_location(r.uri);
        }
        phase = kRewrite;
        step = 0;
        responded = false;
    }
}

}  // namespace

bool run_phases(Request& r) {
    r.phase_cursor = Request::PhaseCursor{};
    return run(r, 0, 0, false);
}

bool run_phases_from_rewrite(Request& r) {
    r.phase_cursor = Request::PhaseCursor{};
    return run(r, kRewrite, 0, true);
}

bool resume_phases(Request& r, Verdict v) {
    size_t phase = r.phase_cursor.phase;
    switch (on_verdict(r, phase, v)) {
        case Then::Continue:
            return run(r, phase, r.phase_cursor.step, false);
        case Then::EndPhase:
            return run(r, phase + 1, 0, false);
        case Then::Stop:
            return run(r, kContent + 1, 0, true);
        case Then::Suspend:
            break;
    }
    return false;
}

}  // namespace tollgate::http
