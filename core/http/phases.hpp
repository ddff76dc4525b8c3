// The phase runner: runs a request's phase handlers (PostRead .. Content) for its location, as
// flattened at load, and carries out internal redirects. Shared by the worker's connections and
// by subrequests (core/http/subrequest.hpp), which are their own RequestDriver.
//
// Access checks and `satisfy` (http_core), as nginx:
//   satisfy all (default): every Access handler must pass; the first response (401, 403, ...)
//     stops the phases. Verdict::Allow is Next.
//   satisfy any: the first check that answers Allow skips the remaining Access checks. A 401 or
//     403 is remembered (its status, body and headers, WWW-Authenticate included) and the next
//     check runs; when the Access phase ends without an Allow, the remembered denial is sent
//     (401 is preferred over 403, as nginx; among equals the first), and error_page then applies to
//     it. A check that does not apply answers Next: it neither allows nor denies, so a location
//     where no check applies is served. Any other response (500, 503, a redirect) is sent at
//     once in both modes.
// Subrequests skip the Access phase (nginx runs access checks for the main request only).
#pragma once

#include "core/http/request.hpp"

namespace tollgate::http {

// Runs the phases of `r` from the start (r.location is set). Returns true when `r` holds its
// response (the driver sends it), false when a handler suspended (the driver waits for its
// resume()).
bool run_phases(Request& r);
// Runs the phases of `r` from the Rewrite phase (a response set before the phases ran, such as
// a 413 sent to an error_page, has an internal redirect pending). Returns as run_phases.
bool run_phases_from_rewrite(Request& r);
// For RequestDriver::resume(): continues the phases of `r` after the handler that suspended
// resumed with `v`. Returns true when `r` holds its response, false when a handler suspended
// (`v` == Suspend included: that handler resumes once more).
bool resume_phases(Request& r, Verdict v);

}  // namespace tollgate::http
