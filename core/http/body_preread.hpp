// Reading a request body ahead of the content handler (for a phase that must look at the body
// first: routing on a JSON field). The bytes are kept in Request::preread and handed, unchanged
// and in order, to the content handler's read_body() before the rest of the body, so a proxy
// still streams a body larger than what was read ahead. Bounded: at most `limit` + 1 bytes are
// read ahead (the extra byte tells "larger than the limit" for a chunked body).
#pragma once

#include <cstddef>

#include "core/http/request.hpp"

namespace tollgate::http {

enum class PrereadResult : uint8_t {
    Complete,  // the whole body is in r.preread (possibly empty: no body)
    TooLarge,  // the body is longer than the limit; r.preread holds its first bytes
    Error,     // malformed, over client_max_body_size or cut short (r.body_error_status)
};

// Called once the read ahead ends; returns the verdict the phase handler would have returned.
using PrereadDone = Verdict (*)(Request& r, const void* data, PrereadResult result);

// Reads ahead up to `limit` bytes. When that finishes at once, returns done()'s verdict;
// otherwise returns Verdict::Suspend and resumes the request with done()'s verdict later (a
// client that leaves meanwhile ends the request as usual: done() is then never called).
Verdict preread_body(Request& r, size_t limit, PrereadDone done, const void* data);

}  // namespace tollgate::http
