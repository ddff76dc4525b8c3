#include "core/http/uri.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tollgate::http {
namespace {

struct UriCase {
    const char* name;
    std::string raw;
    const char* expected;  // nullptr: normalize_path must fail (400)
};

class UriNormalize : public ::testing::TestWithParam<UriCase> {};

TEST_P(UriNormalize, Result) {
    const UriCase& c = GetParam();
    std::pmr::string out;
    const bool ok = normalize_path(c.raw, out);
    if (c.expected == nullptr) {
        EXPECT_FALSE(ok) << c.raw << " -> " << out;
    } else {
        ASSERT_TRUE(ok) << c.raw;
        EXPECT_EQ(out, c.expected) << c.raw;
    }
}

const UriCase kUriCases[] = {
    // accepted
    {"Root", "/", "/"},
    {"Plain", "/a/b/c", "/a/b/c"},
    {"TrailingSlashKept", "/a/b/", "/a/b/"},
    {"DotAndDotDot", "/a/./b/../c", "/a/c"},
    {"DotDotToRoot", "/a/..", "/"},
    {"DotDotWithSlashToRoot", "/a/../", "/"},
    {"DotDotKeepsParentDir", "/a/b/..", "/a/"},
    {"TrailingDot", "/a/.", "/a/"},
    {"OnlyDot", "/.", "/"},
    {"MergeSlashes", "//a//b", "/a/b"},
    {"MergeManySlashes", "///a///b///", "/a/b/"},
    {"DotDotAfterDoubleSlash", "/a//..//b", "/b"},
    {"TripleDotIsName", "/a/.../b", "/a/.../b"},
    {"DotPrefixedNames", "/.well-known/..x/x..", "/.well-known/..x/x.."},
    {"PercentDecoded", "/a%20b/%41%62", "/a b/Ab"},
    {"LowercaseHex", "/%7e%7E", "/~~"},
    {"EncodedSlashDecoded", "/a%2Fb", "/a/b"},
    {"EncodedSlashesMerged", "/a%2F%2fb", "/a/b"},
    {"EncodedDot", "/a/%2e/b", "/a/b"},
    {"EncodedDotDot", "/a/b/%2e%2E/c", "/a/c"},
    {"EncodedQuestionMark", "/a%3Fb", "/a?b"},
    {"HighBytes", "/caf%C3%A9", "/caf\xc3\xa9"},
    {"DotDotDeepTree", "/a/b/c/../../d", "/a/d"},
    // rejected
    {"Empty", "", nullptr},
    {"Relative", "a/b", nullptr},
    {"Asterisk", "*", nullptr},
    {"DotDotAtRoot", "/..", nullptr},
    {"DotDotAtRootSlash", "/../a", nullptr},
    {"ClimbAboveRoot", "/a/../..", nullptr},
    {"EncodedClimb", "/%2e%2e/", nullptr},
    {"EncodedClimbMixed", "/.%2E/etc/passwd", nullptr},
    {"EncodedSlashClimb", "/a%2F..%2F..%2Fetc", nullptr},
    {"EncodedNul", "/a%00b", nullptr},
    {"RawNul", std::string("/a\0b", 4), nullptr},
    {"TruncatedEscape", "/a%4", nullptr},
    {"TruncatedEscapeAtEnd", "/a%", nullptr},
    {"NonHexEscape", "/a%zz", nullptr},
    {"HalfHexEscape", "/a%4g", nullptr},
};

std::string uri_name(const ::testing::TestParamInfo<UriCase>& info) {
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Paths, UriNormalize, ::testing::ValuesIn(kUriCases), uri_name);

TEST(Uri, OutputIsClearedAndUsesItsResource) {
    std::pmr::monotonic_buffer_resource arena;
    std::pmr::string out(&arena);
    out = "garbage";
    ASSERT_TRUE(normalize_path("/x", out));
    EXPECT_EQ(out, "/x");
    EXPECT_EQ(out.get_allocator().resource(), &arena);
}

}  // namespace
}  // namespace tollgate::http
