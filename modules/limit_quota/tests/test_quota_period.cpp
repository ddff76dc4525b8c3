// Calendar period arithmetic of limit_quota: UTC boundaries, month lengths, leap years.
#include <gtest/gtest.h>

#include <ctime>

#include "modules/limit_quota/quota_period.hpp"

namespace tollgate::limit_quota {
namespace {

// Unix time of a UTC civil date and time, via timegm (the reference implementation).
int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return static_cast<int64_t>(timegm(&tm));
}

TEST(QuotaPeriod, ParsesNames) {
    EXPECT_EQ(parse_period("minute"), PeriodKind::Minute);
    EXPECT_EQ(parse_period("hour"), PeriodKind::Hour);
    EXPECT_EQ(parse_period("day"), PeriodKind::Day);
    EXPECT_EQ(parse_period("month"), PeriodKind::Month);
    EXPECT_FALSE(parse_period("week"));
    EXPECT_FALSE(parse_period("Month"));
    EXPECT_FALSE(parse_period(""));
    EXPECT_EQ(period_name(PeriodKind::Day), "day");
    EXPECT_EQ(period_header_suffix(PeriodKind::Month), "Month");
}

TEST(QuotaPeriod, MinuteHourDay) {
    int64_t t = utc(2024, 3, 10, 13, 45, 17);
    EXPECT_EQ(period_bounds(t, PeriodKind::Minute).start, utc(2024, 3, 10, 13, 45));
    EXPECT_EQ(period_bounds(t, PeriodKind::Minute).end, utc(2024, 3, 10, 13, 46));
    EXPECT_EQ(period_bounds(t, PeriodKind::Hour).start, utc(2024, 3, 10, 13));
    EXPECT_EQ(period_bounds(t, PeriodKind::Hour).end, utc(2024, 3, 10, 14));
    EXPECT_EQ(period_bounds(t, PeriodKind::Day).start, utc(2024, 3, 10));
    EXPECT_EQ(period_bounds(t, PeriodKind::Day).end, utc(2024, 3, 11));
}

TEST(QuotaPeriod, BoundaryBelongsToTheNextPeriod) {
    int64_t midnight = utc(2024, 1, 1);
    EXPECT_EQ(period_bounds(midnight, PeriodKind::Day).start, midnight);
    EXPECT_EQ(period_bounds(midnight - 1, PeriodKind::Day).end, midnight);
    EXPECT_EQ(period_bounds(midnight, PeriodKind::Month).start, midnight);
    EXPECT_EQ(period_bounds(midnight - 1, PeriodKind::Month).start, utc(2023, 12, 1));
    EXPECT_EQ(period_bounds(midnight - 1, PeriodKind::Month).end, midnight);
    EXPECT_EQ(period_bounds(midnight - 1, PeriodKind::Minute).start, midnight - 60);
}

TEST(QuotaPeriod, MonthLengths) {
    const int days2023[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    for (int m = 1; m <= 12; ++m) {
        PeriodBounds b = period_bounds(utc(2023, m, 15, 12), PeriodKind::Month);
        EXPECT_EQ(b.start, utc(2023, m, 1)) << m;
        EXPECT_EQ(b.end - b.start, days2023[m - 1] * 86400) << m;
    }
}

TEST(QuotaPeriod, LeapYears) {
    // 2024: divisible by 4; 2100: by 100, not leap; 2000: by 400, leap.
    EXPECT_EQ(period_bounds(utc(2024, 2, 29, 23, 59, 59), PeriodKind::Month).end, utc(2024, 3, 1));
    EXPECT_EQ(period_bounds(utc(2024, 2, 10), PeriodKind::Month).end - utc(2024, 2, 1), 29 * 86400);
    EXPECT_EQ(period_bounds(utc(2100, 2, 10), PeriodKind::Month).end - utc(2100, 2, 1), 28 * 86400);
    EXPECT_EQ(period_bounds(utc(2000, 2, 10), PeriodKind::Month).end - utc(2000, 2, 1), 29 * 86400);
    EXPECT_EQ(period_bounds(utc(2024, 2, 29, 12), PeriodKind::Day).end, utc(2024, 3, 1));
}

TEST(QuotaPeriod, CivilRoundTripMatchesTimegm) {
    // Every day from 1970 to 2200 (and a stretch before 1970) against the C library.
    for (int64_t day = -1000; day < 84000; day += 1) {
        int64_t y;
        unsigned m, d;
        civil_from_days(day, y, m, d);
        ASSERT_EQ(days_from_civil(y, m, d), day);
        if (day % 97 == 0) {
            ASSERT_EQ(utc(static_cast<int>(y), static_cast<int>(m), static_cast<int>(d)),
                      day * 86400);
        }
    }
}

TEST(QuotaPeriod, EveryMonthStartMatchesTimegm) {
    for (int y = 1970; y <= 2200; ++y) {
        for (int m = 1; m <= 12; ++m) {
            int64_t start = utc(y, m, 1);
            int64_t next = m == 12 ? utc(y + 1, 1, 1) : utc(y, m + 1, 1);
            PeriodBounds b = period_bounds(start + 86400 * 3 + 7, PeriodKind::Month);
            ASSERT_EQ(b.start, start) << y << "-" << m;
            ASSERT_EQ(b.end, next) << y << "-" << m;
            ASSERT_EQ(period_bounds(next - 1, PeriodKind::Month).start, start);
        }
    }
}

TEST(QuotaPeriod, BeforeTheEpoch) {
    EXPECT_EQ(period_bounds(-1, PeriodKind::Day).start, -86400);
    EXPECT_EQ(period_bounds(-1, PeriodKind::Month).start, utc(1969, 12, 1));
    EXPECT_EQ(period_bounds(-1, PeriodKind::Minute).start, -60);
}

}  // namespace
}  // namespace tollgate::limit_quota
