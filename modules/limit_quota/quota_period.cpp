#include "modules/limit_quota/quota_period.hpp"

namespace tollgate::limit_quota {

namespace {

// Floor division for negative times (before 1970) as well.
int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

}  // namespace

std::optional<PeriodKind> parse_period(std::string_view name) {
    if (name == "minute") return PeriodKind::Minute;
    if (name == "hour") return PeriodKind::Hour;
    if (name == "day") return PeriodKind::Day;
    if (name == "month") return PeriodKind::Month;
    return std::nullopt;
}

std::string_view period_name(PeriodKind kind) {
    switch (kind) {
        case PeriodKind::Minute:
            return "minute";
        case PeriodKind::Hour:
            return "hour";
        case PeriodKind::Day:
            return "day";
        case PeriodKind::Month:
            return "month";
    }
    return "month";
}

std::string_view period_header_suffix(PeriodKind kind) {
    switch (kind) {
        case PeriodKind::Minute:
            return "Minute";
        case PeriodKind::Hour:
            return "Hour";
        case PeriodKind::Day:
            return "Day";
        case PeriodKind::Month:
            return "Month";
    }
    return "Month";
}

// The era-based algorithm: 400-year eras of 146097 days, years starting in March so that the
// leap day is the last day of the (shifted) year.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const int64_t era = floor_div(y, 400);
    const int64_t yoe = y - era * 400;                          // [0, 399]
    const int64_t mp = m > 2 ? m - 3 : m + 9;                   // March = 0
    const int64_t doy = (153 * mp + 2) / 5 + d - 1;             // [0, 365]
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  // [0, 146096]
    return era * 146097 + doe - 719468;                         // 1970-01-01 = 0
}

void civil_from_days(int64_t days, int64_t& y, unsigned& m, unsigned& d) {
    days += 719468;
    const int64_t era = floor_div(days, 146097);
    const int64_t doe = days - era * 146097;                                    // [0, 146096]
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
    const int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11]
    d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
    m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
    y = yoe + era * 400 + (m <= 2 ? 1 : 0);
}

PeriodBounds period_bounds(int64_t t, PeriodKind kind) {
    switch (kind) {
        case PeriodKind::Minute: {
            int64_t s = floor_div(t, 60) * 60;
            return {s, s + 60};
        }
        case PeriodKind::Hour: {
            int64_t s = floor_div(t, 3600) * 3600;
            return {s, s + 3600};
        }
        case PeriodKind::Day: {
            int64_t s = floor_div(t, 86400) * 86400;
            return {s, s + 86400};
        }
        case PeriodKind::Month: {
            int64_t y;
            unsigned m, d;
            civil_from_days(floor_div(t, 86400), y, m, d);
            int64_t start = days_from_civil(y, m, 1) * 86400;
            int64_t end =
                (m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1)) * 86400;
            return {start, end};
        }
    }
    return {t, t + 1};
}

}  // namespace tollgate::limit_quota
