// The API key store parser (modules/auth_key/key_store.hpp), line by line.
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "modules/auth_key/key_store.hpp"

namespace tollgate::auth_key {
namespace {

const std::string kHashA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const std::string kHashB = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

struct Result {
    bool ok;
    int line;
    std::string error;
    KeyStore store;
};

Result parse(const std::string& text) {
    Result r;
    r.line = 0;
    r.ok = parse_key_store(text, r.store, r.line, r.error);
    return r;
}

TEST(KeyStore, EmptyCommentsAndBlankLines) {
    auto r = parse("");
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.store.records().empty());
    r = parse("# keys\n\n   \t\n  # indented comment\r\n");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_TRUE(r.store.records().empty());
}

TEST(KeyStore, RecordsWithAttributes) {
    auto r = parse("# x\n" + kHashA + " alice gold team=infra project=p-1 empty=\n" + kHashB +
                   "\tbob  default\r\n");
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.store.records().size(), 2u);
    const KeyRecord& a = r.store.records()[0];
    EXPECT_EQ(digest_hex(a.hash), kHashA);
    EXPECT_EQ(a.consumer, "alice");
    EXPECT_EQ(a.tier, "gold");
    EXPECT_EQ(a.line, 2);
    EXPECT_FALSE(a.revoked);
    ASSERT_NE(a.attr("team"), nullptr);
    EXPECT_EQ(*a.attr("team"), "infra");
    EXPECT_EQ(*a.attr("project"), "p-1");
    EXPECT_EQ(*a.attr("empty"), "");
    EXPECT_EQ(a.attr("nope"), nullptr);
    const KeyRecord& b = r.store.records()[1];
    EXPECT_EQ(b.consumer, "bob");
    EXPECT_EQ(b.line, 3);
    EXPECT_TRUE(b.attrs.empty());
}

TEST(KeyStore, UppercaseHexAndNoFinalNewline) {
    std::string upper = kHashA;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto r = parse(upper + " a b");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(digest_hex(r.store.records()[0].hash), kHashA);
}

TEST(KeyStore, RevokedMarksTheRecord) {
    auto r = parse(kHashA + " alice gold revoked=1700000000\n");
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.store.records()[0].revoked);
}

TEST(KeyStore, CandidatesFindByHash) {
    auto r = parse(kHashA + " alice gold\n" + kHashB + " bob gold\n");
    ASSERT_TRUE(r.ok);
    Digest d;
    ASSERT_TRUE(parse_digest_hex(kHashB, d));
    auto [first, last] = r.store.candidates(d);
    ASSERT_EQ(last - first, 1);
    EXPECT_EQ(r.store.records()[*first].consumer, "bob");
    Digest other{};
    auto [f2, l2] = r.store.candidates(other);
    EXPECT_EQ(f2, l2);
}

struct Bad {
    std::string text;
    int line;
    std::string error;
};

class KeyStoreErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(KeyStoreErrors, SaysWhereAndWhy) {
    auto r = parse(GetParam().text);
    ASSERT_FALSE(r.ok);
    EXPECT_EQ(r.line, GetParam().line);
    EXPECT_NE(r.error.find(GetParam().error), std::string::npos) << r.error;
    EXPECT_LT(r.error.size(), 200u);  // never echoes a whole line
}

INSTANTIATE_TEST_SUITE_P(
    Lines, KeyStoreErrors,
    ::testing::Values(
        Bad{kHashA + " alice\n", 1, "expected \"SHA256HEX CONSUMER TIER"},
        Bad{"# c\n" + kHashA.substr(1) + " alice gold\n", 2, "invalid SHA-256"},
        Bad{"g" + kHashA.substr(1) + " alice gold\n", 1, "invalid SHA-256"},
        Bad{kHashA + " al/ice gold\n", 1, "invalid consumer id"},
        Bad{kHashA + " alice go\"ld\n", 1, "invalid tier"},
        Bad{kHashA + " " + std::string(129, 'a') + " gold\n", 1, "invalid consumer id"},
        Bad{kHashA + " alice gold team\n", 1, "is not NAME=VALUE"},
        Bad{kHashA + " alice gold Team=x\n", 1, "invalid attribute name"},
        Bad{kHashA + " alice gold id=x\n", 1, "invalid attribute name"},
        Bad{kHashA + " alice gold tier=x\n", 1, "invalid attribute name"},
        Bad{kHashA + " alice gold =x\n", 1, "invalid attribute name"},
        Bad{kHashA + " alice gold a=1 a=2\n", 1, "is duplicate"},
        Bad{kHashA + " alice gold a=" + std::string(257, 'v') + "\n", 1, "value too long"},
        Bad{kHashA + " alice gold\n" + kHashA + " bob gold\n", 2, "duplicate (first at line 1)"},
        Bad{kHashA + " alice gold\x01\n", 1, "control or non-ASCII"},
        Bad{kHashA + " alice g\xc3\xa9\n", 1, "control or non-ASCII"},
        Bad{std::string(4097, '#') + "\n", 1, "longer than 4096"},
        Bad{"\n\n" + kHashA + " a b \x7f\n", 3, "control or non-ASCII"}));

TEST(KeyStore, AttributeLimit) {
    std::string line = kHashA + " alice gold";
    for (int i = 0; i < 32; ++i) line += " a" + std::to_string(i) + "=v";
    ASSERT_TRUE(parse(line).ok);
    auto r = parse(line + " z=1");
    ASSERT_FALSE(r.ok);
    EXPECT_NE(r.error.find("more than 32"), std::string::npos);
}

TEST(KeyStore, ValidatorsAndHex) {
    EXPECT_TRUE(valid_name("a.b_c:d@e+f-G9"));
    EXPECT_FALSE(valid_name(""));
    EXPECT_FALSE(valid_name("a b"));
    EXPECT_TRUE(valid_attr_name("team_2"));
    EXPECT_FALSE(valid_attr_name("id"));
    EXPECT_TRUE(valid_attr_value(""));
    EXPECT_FALSE(valid_attr_value("a b"));
    Digest d;
    EXPECT_FALSE(parse_digest_hex("00", d));
    EXPECT_TRUE(parse_digest_hex(kHashA, d));
    EXPECT_EQ(digest_hex(d), kHashA);
    auto f = split_fields("  a \t b  c ");
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(f[2], "c");
}

}  // namespace
}  // namespace tollgate::auth_key
