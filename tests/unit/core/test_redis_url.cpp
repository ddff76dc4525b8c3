#include "core/redis_url.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tollgate {
namespace {

RedisUrl parse_ok(const std::string& text) {
    RedisUrl u;
    std::string error;
    EXPECT_TRUE(parse_redis_url(text, u, error)) << text << ": " << error;
    EXPECT_TRUE(error.empty());
    return u;
}

std::string parse_error(const std::string& text) {
    RedisUrl u;
    std::string error;
    EXPECT_FALSE(parse_redis_url(text, u, error)) << text;
    EXPECT_FALSE(error.empty()) << text;
    return error;
}

TEST(RedisUrl, HostAndPort) {
    const RedisUrl u = parse_ok("redis://127.0.0.1:6380");
    EXPECT_EQ(u.kind, RedisUrl::Kind::Tcp);
    EXPECT_EQ(u.host, "127.0.0.1");
    EXPECT_EQ(u.port, 6380);
    EXPECT_EQ(u.db, 0);
    EXPECT_TRUE(u.username.empty());
    EXPECT_TRUE(u.password.empty());
    EXPECT_FALSE(u.has_password);
}

TEST(RedisUrl, DefaultPort) {
    const RedisUrl u = parse_ok("redis://redis.internal");
    EXPECT_EQ(u.host, "redis.internal");
    EXPECT_EQ(u.port, 6379);
}

TEST(RedisUrl, SchemeIsCaseInsensitive) {
    EXPECT_EQ(parse_ok("REDIS://h:1").port, 1);
}

TEST(RedisUrl, Database) {
    EXPECT_EQ(parse_ok("redis://h:1/3").db, 3);
    EXPECT_EQ(parse_ok("redis://h/15").db, 15);
    EXPECT_EQ(parse_ok("redis://h:1/").db, 0);
}

TEST(RedisUrl, PasswordOnly) {
    const RedisUrl u = parse_ok("redis://:s3cret@10.0.0.1:7000/2");
    EXPECT_TRUE(u.username.empty());
    EXPECT_TRUE(u.has_password);
    EXPECT_EQ(u.password, "s3cret");
    EXPECT_EQ(u.host, "10.0.0.1");
    EXPECT_EQ(u.port, 7000);
    EXPECT_EQ(u.db, 2);
}

TEST(RedisUrl, UserAndPassword) {
    const RedisUrl u = parse_ok("redis://gw:pw@h");
    EXPECT_EQ(u.username, "gw");
    EXPECT_EQ(u.password, "pw");
    EXPECT_TRUE(u.has_password);
}

TEST(RedisUrl, EmptyPasswordIsStillAPassword) {
    const RedisUrl u = parse_ok("redis://:@h");
    EXPECT_TRUE(u.has_password);
    EXPECT_EQ(u.password, "");
}

TEST(RedisUrl, PercentDecodedCredentials) {
    const RedisUrl u = parse_ok("redis://us%65r:p%40ss%3Aw%2Fd@h:1");
    EXPECT_EQ(u.username, "user");
    EXPECT_EQ(u.password, "p@ss:w/d");
}

TEST(RedisUrl, LastAtSeparatesCredentials) {
    const RedisUrl u = parse_ok("redis://:a@b@h:1");
    EXPECT_EQ(u.password, "a@b");
    EXPECT_EQ(u.host, "h");
}

TEST(RedisUrl, Ipv6) {
    const RedisUrl u = parse_ok("redis://[::1]:6390/1");
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.port, 6390);
    EXPECT_EQ(u.db, 1);
    EXPECT_EQ(parse_ok("redis://[fe80::1]").port, 6379);
}

TEST(RedisUrl, UnixSocket) {
    const RedisUrl u = parse_ok("unix:/run/redis/redis.sock");
    EXPECT_EQ(u.kind, RedisUrl::Kind::Unix);
    EXPECT_EQ(u.path, "/run/redis/redis.sock");
    EXPECT_EQ(u.db, 0);
}

TEST(RedisUrl, UnixSocketWithDatabaseAndPassword) {
    const RedisUrl u = parse_ok("unix:/tmp/r.sock?db=4&password=x%26y");
    EXPECT_EQ(u.path, "/tmp/r.sock");
    EXPECT_EQ(u.db, 4);
    EXPECT_TRUE(u.has_password);
    EXPECT_EQ(u.password, "x&y");
}

TEST(RedisUrl, Rejects) {
    parse_error("");
    parse_error("127.0.0.1:6379");
    parse_error("http://h:1");
    parse_error("redis://");
    parse_error("redis://:1");
    parse_error("redis://h:");
    parse_error("redis://h:0");
    parse_error("redis://h:65536");
    parse_error("redis://h:12a");
    parse_error("redis://h:-1");
    parse_error("redis://h/x");
    parse_error("redis://h/-1");
    parse_error("redis://h/1/2");
    parse_error("redis://h/99999999999999999999");
    parse_error("redis://h?x=1");
    parse_error("redis://h#f");
    parse_error("redis://ho st");
    parse_error("redis://h\n");
    parse_error(std::string("redis://h\0x", 11));
    parse_error("redis://[::1");
    parse_error("redis://[::1]x");
    parse_error("redis://[]");
    parse_error("redis://::1");
    parse_error("redis://:p%4@h");
    parse_error("redis://:p%zz@h");
    parse_error("redis://:p%00@h");
    parse_error("unix:");
    parse_error("unix:relative.sock");
    parse_error("unix:/s?db=x");
    parse_error("unix:/s?bogus=1");
    parse_error("unix:/s?db=1&db=2");
}

TEST(RedisUrl, TlsIsNotSupported) {
    EXPECT_NE(parse_error("rediss://h:6379").find("TLS"), std::string::npos);
}

TEST(RedisUrl, FormatRedactsPasswordAndRoundTrips) {
    const RedisUrl u = parse_ok("redis://gw:p%40ss@[::1]:7000/2");
    EXPECT_EQ(u.to_string(true), "redis://gw:***@[::1]:7000/2");
    const std::string full = u.to_string(false);
    EXPECT_EQ(full, "redis://gw:p%40ss@[::1]:7000/2");
    EXPECT_EQ(parse_ok(full), u);

    const RedisUrl s = parse_ok("unix:/tmp/r.sock?db=4&password=x%26y");
    EXPECT_EQ(parse_ok(s.to_string(false)), s);
    EXPECT_EQ(s.to_string(true), "unix:/tmp/r.sock?db=4&password=***");
    EXPECT_EQ(parse_ok("redis://h").to_string(true), "redis://h:6379");
}

}  // namespace
}  // namespace tollgate
