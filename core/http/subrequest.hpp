// Internal requests ("subrequests"): a copy of a request runs a location's phases (Access
// excepted, as nginx) and content handler with its own Request and arena; its response body is
// pulled and thrown away, never buffered. Each is bounded by its location's own timeouts
// (proxy_*_timeout). Two kinds:
//   detached: the parent never waits for it and never sees what it does (mirror). Per worker,
//     bounded by a cap on those in flight.
//   awaited: the parent's handler starts it and returns Verdict::Suspend; once the subrequest's
//     response head is known a callback gets the subrequest (its status, headers, and variables
//     evaluated in its context, such as $upstream_http_NAME) and resumes the parent
//     (auth_request). A parent that ends first cancels it.
// A subrequest is freed from a zero timer on the loop, never inside a callback of its own.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/http/request.hpp"

namespace tollgate {
class EventLoop;
}

namespace tollgate::http {

// In each worker, before any subrequest starts (the loop defers their teardown).
void subrequests_init(EventLoop& loop);
// Starts a detached copy of `parent` (method, headers, args, $request_uri) sent to location
// `uri` of the parent's server. `body`: the whole request body to hand the copy, or null for
// none (the copy then carries no Content-Length / Transfer-Encoding). Returns false (nothing
// started) when `max_in_flight` are already running or no loop was set.
bool start_detached_subrequest(const Request& parent, std::string_view uri, const Buffer* body,
                               size_t max_in_flight);
size_t detached_subrequests_in_flight();
// True for a detached subrequest (a mirror is never mirrored again).
bool is_subrequest(const Request& r);

// Called once an awaited subrequest's response head is known: `sub` is the subrequest (status,
// out_headers; evaluate variables on it), valid during the call only. Runs from the event loop,
// never inside start_awaited_subrequest(). The parent's task is cleared before; the callback
// (or a later event) calls parent.resume() exactly once.
using SubrequestDone = void (*)(Request& parent, Request& sub, void* data);
// Starts a subrequest of `parent` to location `uri` of its server, which the parent awaits:
// the parent's method and headers, no body (Content-Length, Transfer-Encoding and Expect are
// dropped), `uri` as its path with no args, as nginx's ngx_http_subrequest ($request_uri stays
// the parent's). While it runs, parent.task is set: a parent that ends first (client gone,
// shutdown) cancels it and `done` is never called. Returns false (nothing started) when no loop
// was set or the parent has a task running.
bool start_awaited_subrequest(Request& parent, std::string_view uri, SubrequestDone done,
                              void* data);

// Aborts and frees every subrequest still running (worker exit).
void cancel_subrequests();

}  // namespace tollgate::http
