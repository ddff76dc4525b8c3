#pragma once

// Request-target path normalization, as nginx does before location matching.

#include <memory_resource>
#include <string>
#include <string_view>

namespace tollgate::http {

// normalize_path: `raw_path` is the percent-encoded path of a request-target (no query); `out`
// receives the normalized absolute path (cleared first). Decodes %XX (including %2F, like nginx),
// then merges repeated slashes and resolves "." and ".." segments; a trailing slash is kept.
// Returns false (the caller answers 400) on: a path not starting with '/', a bad %-escape, a NUL
// byte (encoded %00 or raw), or ".." climbing above the root. `out` is unspecified then.
bool normalize_path(std::string_view raw_path, std::pmr::string& out);

}  // namespace tollgate::http
