// Calendar periods for quotas, in UTC: the minute, hour, day or month a time falls in.
// Pure arithmetic on Unix seconds (proleptic Gregorian calendar, no leap seconds, as POSIX time).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::limit_quota {

enum class PeriodKind : uint8_t { Minute, Hour, Day, Month };

// [start, end) of one calendar period, Unix seconds.
struct PeriodBounds {
    int64_t start = 0;
    int64_t end = 0;
};

// "minute", "hour", "day" or "month"; nullopt for anything else.
std::optional<PeriodKind> parse_period(std::string_view name);
// "minute" ... "month".
std::string_view period_name(PeriodKind kind);
// "Minute" ... "Month": the suffix of Kong-style X-RateLimit-Limit-<Period> headers.
std::string_view period_header_suffix(PeriodKind kind);

// The period of `kind` that contains Unix time `t` (seconds, UTC).
PeriodBounds period_bounds(int64_t t, PeriodKind kind);

// Days since 1970-01-01 of the civil date y-m-d (m 1..12, d 1..31), and the inverse.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
void civil_from_days(int64_t days, int64_t& y, unsigned& m, unsigned& d);

}  // namespace tollgate::limit_quota
