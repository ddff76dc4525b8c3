// split_clients' hash and bucketing (modules/split_clients/split_clients.hpp).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "modules/split_clients/split_clients.hpp"

namespace tollgate::split_clients {
namespace {

TEST(SplitClients, PercentParsing) {
    EXPECT_EQ(parse_percent("5%"), 500u);
    EXPECT_EQ(parse_percent("0.5%"), 50u);
    EXPECT_EQ(parse_percent("12.25%"), 1225u);
    EXPECT_EQ(parse_percent("100%"), 10000u);
    EXPECT_EQ(parse_percent("0.01%"), 1u);
    EXPECT_EQ(parse_percent("7.%"), 700u);
    EXPECT_FALSE(parse_percent("0%"));
    EXPECT_FALSE(parse_percent("0.001%"));  // three decimals
    EXPECT_FALSE(parse_percent("101%"));
    EXPECT_FALSE(parse_percent("5"));
    EXPECT_FALSE(parse_percent("%"));
    EXPECT_FALSE(parse_percent(".%"));
    EXPECT_FALSE(parse_percent("1.2.3%"));
    EXPECT_FALSE(parse_percent("-5%"));
    EXPECT_FALSE(parse_percent("99999999999%"));
}

TEST(SplitClients, MurmurHash2Basics) {
    // The key-for-key match with nginx's ngx_murmur_hash2 is checked end to end against a
    // running nginx in test_split_clients.py (3,000 keys, every tail length).
    EXPECT_EQ(murmur_hash2(""), 0u);
    EXPECT_EQ(murmur_hash2("a"), murmur_hash2(std::string("a")));
    EXPECT_NE(murmur_hash2("abc"), murmur_hash2("abd"));
}

TEST(SplitClients, TableTotalsAndRest) {
    SplitTable t;
    EXPECT_EQ(t.add(500, "v2"), "");
    EXPECT_EQ(t.add(50, "x"), "");
    EXPECT_EQ(t.add(0, "v1"), "");
    EXPECT_EQ(t.add(1, "late"), "percent total is greater than 100%");
    SplitTable over;
    EXPECT_EQ(over.add(6000, "a"), "");
    EXPECT_EQ(over.add(4001, "b"), "percent total is greater than 100%");
    SplitTable partial;  // 10% only: the other keys get no value
    EXPECT_EQ(partial.add(1000, "a"), "");
    EXPECT_NE(partial.pick(0), nullptr);
    EXPECT_EQ(partial.pick(0xffffffffu), nullptr);
}

TEST(SplitClients, TwentyThousandKeysLandWithinOnePercent) {
    SplitTable t;
    ASSERT_EQ(t.add(500, "v2"), "");
    ASSERT_EQ(t.add(2000, "v3"), "");
    ASSERT_EQ(t.add(50, "x"), "");
    ASSERT_EQ(t.add(0, "v1"), "");
    std::map<std::string, int> counts;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        std::string key = "client-" + std::to_string(i) + "-" + std::to_string(i * 7919 % 104729);
        const std::string* v = t.pick_key(key);
        ASSERT_NE(v, nullptr);
        ++counts[*v];
        EXPECT_EQ(t.pick_key(key), v);  // sticky
    }
    auto share = [&](const char* v) { return 100.0 * counts[v] / n; };
    EXPECT_NEAR(share("v2"), 5.0, 1.0);
    EXPECT_NEAR(share("v3"), 20.0, 1.0);
    EXPECT_NEAR(share("x"), 0.5, 1.0);
    EXPECT_NEAR(share("v1"), 74.5, 1.0);
}

}  // namespace
}  // namespace tollgate::split_clients
