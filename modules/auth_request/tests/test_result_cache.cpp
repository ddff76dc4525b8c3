// auth_request's result cache: TTL, LRU bound, digests.
#include <gtest/gtest.h>

#include "modules/auth_request/result_cache.hpp"

namespace tollgate::auth_request {
namespace {

Digest digest(std::string_view uri, std::string_view key) {
    Digest d{};
    EXPECT_TRUE(cache_digest(uri, key, d));
    return d;
}

CachedResult result(int status, std::string user = {}) {
    CachedResult r;
    r.status = status;
    if (!user.empty()) r.values.emplace_back(7, std::move(user));
    return r;
}

TEST(AuthRequestCache, DigestSeparatesUriAndKey) {
    EXPECT_EQ(digest("/auth", "k"), digest("/auth", "k"));
    EXPECT_NE(digest("/auth", "k"), digest("/auth", "k2"));
    EXPECT_NE(digest("/auth", "k"), digest("/auth2", "k"));
    EXPECT_NE(digest("/a", "bc"), digest("/ab", "c"));  // the NUL separates them
}

TEST(AuthRequestCache, HitUntilExpiry) {
    ResultCache c(1000, 10);
    Digest d = digest("/auth", "alice");
    EXPECT_EQ(c.find(d, 0), nullptr);
    c.insert(d, result(200, "alice"), 0);
    const CachedResult* hit = c.find(d, 999);
    ASSERT_NE(hit, nullptr);
    EXPECT_EQ(hit->status, 200);
    ASSERT_EQ(hit->values.size(), 1u);
    EXPECT_EQ(hit->values[0].second, "alice");
    EXPECT_EQ(c.find(d, 1000), nullptr);  // expired, and dropped
    EXPECT_EQ(c.size(), 0u);
}

TEST(AuthRequestCache, LeastRecentlyUsedIsEvicted) {
    ResultCache c(60'000, 2);
    Digest a = digest("/auth", "a"), b = digest("/auth", "b"), x = digest("/auth", "x");
    c.insert(a, result(200), 0);
    c.insert(b, result(401), 0);
    ASSERT_NE(c.find(a, 1), nullptr);  // a is now the most recent
    c.insert(x, result(403), 2);       // evicts b
    EXPECT_EQ(c.size(), 2u);
    EXPECT_NE(c.find(a, 3), nullptr);
    EXPECT_EQ(c.find(b, 3), nullptr);
    EXPECT_NE(c.find(x, 3), nullptr);
}

TEST(AuthRequestCache, InsertReplacesAndRenews) {
    ResultCache c(1000, 2);
    Digest a = digest("/auth", "a");
    c.insert(a, result(401), 0);
    c.insert(a, result(200, "u"), 900);
    const CachedResult* hit = c.find(a, 1500);
    ASSERT_NE(hit, nullptr);
    EXPECT_EQ(hit->status, 200);
    EXPECT_EQ(c.size(), 1u);
}

}  // namespace
}  // namespace tollgate::auth_request
