// Detached internal requests ("subrequests"): a copy of a request runs a location's phases and
// content handler with its own Request and arena; its response is pulled and thrown away. The
// parent never waits for it and never sees what it does (request mirroring). Per worker, bounded
// by a cap on those in flight; each is bounded by its location's own timeouts (proxy_*_timeout).
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
// Aborts and frees every detached subrequest (worker exit).
void cancel_detached_subrequests();

}  // namespace tollgate::http
