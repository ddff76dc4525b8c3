#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

#include "core/config/values.hpp"

namespace tollgate::conf {
namespace {

constexpr uint64_t kS = 1000;
constexpr uint64_t kMin = 60 * kS;
constexpr uint64_t kH = 60 * kMin;
constexpr uint64_t kD = 24 * kH;

TEST(ConfigValuesSize, PlainBytes) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("512"), 512u);
    EXPECT_EQ(parse_size("0007"), 7u);
}

TEST(ConfigValuesSize, Units) {
    EXPECT_EQ(parse_size("4k"), 4096u);
    EXPECT_EQ(parse_size("4K"), 4096u);
    EXPECT_EQ(parse_size("10m"), 10u << 20);
    EXPECT_EQ(parse_size("10M"), 10u << 20);
    EXPECT_EQ(parse_size("1g"), uint64_t{1} << 30);
    EXPECT_EQ(parse_size("3G"), uint64_t{3} << 30);
    EXPECT_EQ(parse_size("0k"), 0u);
}

TEST(ConfigValuesSize, Invalid) {
    for (const char* s : {"", "k", "K", "1x", "-1", "+1", " 1", "1 ", "1 k", "1kk", "1.5k", "1t",
                          "1km", "k1", "0x10", "1b"}) {
        EXPECT_EQ(parse_size(s), std::nullopt) << '"' << s << '"';
    }
}

TEST(ConfigValuesSize, Overflow) {
    EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
    EXPECT_EQ(parse_size("18446744073709551616"), std::nullopt);
    EXPECT_EQ(parse_size("99999999999999999999999"), std::nullopt);
    EXPECT_EQ(parse_size("17179869183g"), uint64_t{17179869183} << 30);
    EXPECT_EQ(parse_size("17179869184g"), std::nullopt);
    EXPECT_EQ(parse_size("18014398509481984k"), std::nullopt);
}

TEST(ConfigValuesTime, SingleUnits) {
    EXPECT_EQ(parse_time_ms("500ms"), 500u);
    EXPECT_EQ(parse_time_ms("30s"), 30 * kS);
    EXPECT_EQ(parse_time_ms("5m"), 5 * kMin);
    EXPECT_EQ(parse_time_ms("1h"), kH);
    EXPECT_EQ(parse_time_ms("1d"), kD);
    EXPECT_EQ(parse_time_ms("1w"), 7 * kD);
    EXPECT_EQ(parse_time_ms("1M"), 30 * kD);
    EXPECT_EQ(parse_time_ms("1y"), 365 * kD);
}

TEST(ConfigValuesTime, NoUnitMeansSeconds) {
    EXPECT_EQ(parse_time_ms("0"), 0u);
    EXPECT_EQ(parse_time_ms("60"), 60 * kS);
    EXPECT_EQ(parse_time_ms("0ms"), 0u);
    EXPECT_EQ(parse_time_ms("1h 30"), kH + 30 * kS);
}

TEST(ConfigValuesTime, Combinations) {
    EXPECT_EQ(parse_time_ms("1h 30m"), kH + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1h30m"), kH + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1h   30m"), kH + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1y1M1w1d1h1m1s1ms"),
              365 * kD + 30 * kD + 7 * kD + kD + kH + kMin + kS + 1);
    EXPECT_EQ(parse_time_ms("2m 5ms"), 2 * kMin + 5);
    EXPECT_EQ(parse_time_ms("1s 500ms"), 1500u);
}

TEST(ConfigValuesTime, UnitsMustStrictlyDecrease) {
    for (const char* s : {"30m 1h", "1h 1h", "1s1s", "1ms 1s", "1s 30", "5ms5", "1m1M", "1d1w"}) {
        EXPECT_EQ(parse_time_ms(s), std::nullopt) << '"' << s << '"';
    }
}

TEST(ConfigValuesTime, Invalid) {
    for (const char* s : {"", " ", "ms", "s", "h1", "1x", "1.5s", " 1s", "-1s", "+1s", "1 h", "1hh",
                          "1H", "1S", "1D", "30 1h", "1h,30m", "1sm"}) {
        EXPECT_EQ(parse_time_ms(s), std::nullopt) << '"' << s << '"';
    }
}

TEST(ConfigValuesTime, Overflow) {
    EXPECT_EQ(parse_time_ms("18446744073709551615ms"), UINT64_MAX);
    EXPECT_EQ(parse_time_ms("18446744073709551616ms"), std::nullopt);
    EXPECT_EQ(parse_time_ms("18446744073709551s"), uint64_t{18446744073709551000u});
    EXPECT_EQ(parse_time_ms("18446744073709552s"), std::nullopt);
    EXPECT_EQ(parse_time_ms("584942417y"), uint64_t{584942417} * 365 * kD);
    EXPECT_EQ(parse_time_ms("584942418y"), std::nullopt);
    // Each part fits but the sum does not.
    EXPECT_EQ(parse_time_ms("18446744073709551s 615ms"), UINT64_MAX);
    EXPECT_EQ(parse_time_ms("18446744073709551s 616ms"), std::nullopt);
    EXPECT_EQ(parse_time_ms("18446744073709550s 1615ms"), UINT64_MAX);
    EXPECT_EQ(parse_time_ms("18446744073709550s 1616ms"), std::nullopt);
}

TEST(ConfigValuesFlag, OnOffCaseInsensitive) {
    EXPECT_EQ(parse_flag("on"), true);
    EXPECT_EQ(parse_flag("off"), false);
    EXPECT_EQ(parse_flag("ON"), true);
    EXPECT_EQ(parse_flag("Off"), false);
    EXPECT_EQ(parse_flag("oFF"), false);
}

TEST(ConfigValuesFlag, Invalid) {
    for (const char* s : {"", "o", "yes", "no", "true", "1", "0", "onn", " on", "on ", "of"}) {
        EXPECT_EQ(parse_flag(s), std::nullopt) << '"' << s << '"';
    }
}

TEST(ConfigValuesInt, Valid) {
    EXPECT_EQ(parse_int("0"), 0);
    EXPECT_EQ(parse_int("42"), 42);
    EXPECT_EQ(parse_int("007"), 7);
    EXPECT_EQ(parse_int("9223372036854775807"), INT64_MAX);
}

TEST(ConfigValuesInt, Invalid) {
    for (const char* s : {"", "-1", "+1", " 1", "1 ", "1a", "a", "1k", "1.0", "0x1",
                          "9223372036854775808", "18446744073709551616"}) {
        EXPECT_EQ(parse_int(s), std::nullopt) << '"' << s << '"';
    }
}

}  // namespace
}  // namespace tollgate::conf
