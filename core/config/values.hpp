#pragma once

// Parsers for nginx-style directive values. Each returns std::nullopt on a malformed value or on
// overflow; none of them accept a sign, leading spaces or an empty string.

#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::conf {

// s: a size such as "512", "4k"/"4K", "10m"/"10M", "1g"/"1G". Returns the size in bytes.
std::optional<uint64_t> parse_size(std::string_view s);

// s: a duration such as "500ms", "30s", "5m", "1h", "1d", "1w", "1M" (30 days), "1y" (365 days),
// or a combination with strictly decreasing units, each at most once, optionally separated by
// spaces ("1h 30m", "1h30m"). A number without unit means seconds (only as the last part).
// Returns the duration in milliseconds.
std::optional<uint64_t> parse_time_ms(std::string_view s);

// s: "on" or "off", case-insensitively. Returns true for on, false for off.
std::optional<bool> parse_flag(std::string_view s);

// s: a plain non-negative decimal integer (digits only). Returns its value if it fits int64_t.
std::optional<int64_t> parse_int(std::string_view s);

}  // namespace tollgate::conf
