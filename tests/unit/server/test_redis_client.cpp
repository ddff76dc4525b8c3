// The worker's Redis client against a real redis-server (skipped when it is not installed):
// a real libevent loop, real sockets, the server killed, paused and restarted under it.
// Waits are bounded (run_until gives up after 10 s) but nothing asserts on durations.

#include <event2/event.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/redis.hpp"
#include "core/redis_scripts.hpp"
#ifdef TOLLGATE_WITH_LIMIT_REQ
#include "modules/limit_req/limit_req_algo.hpp"
#endif
#include "tests/unit/server/redis_test_server.hpp"
#include "worker/libevent_loop.hpp"

namespace tollgate {
namespace {

using testing::RedisTestServer;

// A reply copied out of its callback.
struct Result {
    bool done = false;
    RedisError error = RedisError::None;
    RedisReply::Type type = RedisReply::Type::Nil;
    int64_t integer = 0;
    std::string str;
    std::vector<std::string> elements;  // string or integer elements, as text
};

RedisCallback into(Result& r) {
    return [&r](const RedisReply& reply) {
        EXPECT_FALSE(r.done) << "callback ran twice";
        r.done = true;
        r.error = reply.error();
        r.type = reply.type();
        r.integer = reply.integer();
        r.str = std::string(reply.str());
        for (size_t i = 0; i < reply.size(); ++i) {
            const RedisReply e = reply[i];
            r.elements.push_back(e.type() == RedisReply::Type::Integer ? std::to_string(e.integer())
                                 : e.is_nil()                          ? "(nil)"
                                                                       : std::string(e.str()));
        }
    };
}

class RedisClientTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!testing::redis_server_installed()) GTEST_SKIP() << "no /usr/bin/redis-server";
        ::signal(SIGPIPE, SIG_IGN);  // as the master does: a write to a killed server is EPIPE
        base_ = event_base_new();
        ASSERT_NE(base_, nullptr);
        loop_ = std::make_unique<worker::LibeventLoop>(base_);
        tick_ = loop_->make_timer([] {});
    }
    void TearDown() override {
        client_.reset();
        tick_.reset();
        loop_.reset();
        if (base_ != nullptr) event_base_free(base_);
    }

    RedisOptions options(const std::string& url) {
        RedisOptions o;
        std::string error;
        EXPECT_TRUE(parse_redis_url(url, o.url, error)) << error;
        o.reconnect_min_ms = 20;
        o.reconnect_max_ms = 200;
        o.command_timeout_ms = 5000;
        o.connect_timeout_ms = 2000;
        return o;
    }

    RedisClient& connect(const RedisOptions& o) {
        client_ = loop_->make_redis(o);
        EXPECT_NE(client_, nullptr);
        EXPECT_TRUE(run_until([&] { return client_->available(); }));
        return *client_;
    }

    // Runs the loop until `pred` holds; false if it still does not after 10 s.
    bool run_until(const std::function<bool()>& pred) {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!pred()) {
            if (std::chrono::steady_clock::now() > give_up) return false;
            tick_->start(5);
            event_base_loop(base_, EVLOOP_ONCE);
        }
        return true;
    }

    // Sends a command and waits for its reply.
    Result run(std::vector<std::string_view> argv) {
        Result r;
        RedisCall call;
        const RedisError e = client_->command(argv, call, into(r));
        if (e != RedisError::None) {
            r.done = true;
            r.error = e;
            return r;
        }
        EXPECT_TRUE(run_until([&] { return r.done; }));
        return r;
    }

    Result run_eval(const RedisScript& s, std::vector<std::string_view> keys,
                    std::vector<std::string_view> args) {
        Result r;
        RedisCall call;
        const RedisError e = client_->eval(s, keys, args, call, into(r));
        if (e != RedisError::None) {
            r.done = true;
            r.error = e;
            return r;
        }
        EXPECT_TRUE(run_until([&] { return r.done; }));
        return r;
    }

    event_base* base_ = nullptr;
    std::unique_ptr<worker::LibeventLoop> loop_;
    std::unique_ptr<Timer> tick_;
    std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisClientTest, CommandsAndReplyTypes) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));
    EXPECT_EQ(client_->describe(), server.url());

    Result set = run({"SET", "k", "v"});
    EXPECT_EQ(set.error, RedisError::None);
    EXPECT_EQ(set.type, RedisReply::Type::Status);
    EXPECT_EQ(set.str, "OK");

    Result get = run({"GET", "k"});
    EXPECT_EQ(get.type, RedisReply::Type::String);
    EXPECT_EQ(get.str, "v");

    EXPECT_EQ(run({"GET", "missing"}).type, RedisReply::Type::Nil);

    Result incr = run({"INCRBY", "n", "41"});
    EXPECT_EQ(incr.type, RedisReply::Type::Integer);
    EXPECT_EQ(incr.integer, 41);

    const std::string binary("a\0b\r\nc", 6);
    EXPECT_EQ(run({"SET", "bin", binary}).error, RedisError::None);
    EXPECT_EQ(run({"GET", "bin"}).str, binary);

    run({"RPUSH", "list", "x", "y", "z"});
    Result range = run({"LRANGE", "list", "0", "-1"});
    EXPECT_EQ(range.type, RedisReply::Type::Array);
    EXPECT_EQ(range.elements, (std::vector<std::string>{"x", "y", "z"}));

    Result bad = run({"NOSUCHCOMMAND"});
    EXPECT_EQ(bad.error, RedisError::Server);
    EXPECT_EQ(bad.type, RedisReply::Type::Error);
    EXPECT_EQ(bad.str.rfind("ERR", 0), 0u) << bad.str;
    EXPECT_TRUE(client_->available());  // an error reply is not a connection problem

    // More arguments than the inline argv holds.
    std::vector<std::string> members;
    for (int i = 0; i < 40; ++i) members.push_back("m" + std::to_string(i));
    std::vector<std::string_view> sadd = {"SADD", "set"};
    for (const std::string& m : members) sadd.push_back(m);
    EXPECT_EQ(run(sadd).integer, 40);
    EXPECT_EQ(client_->pending(), 0u);
}

TEST_F(RedisClientTest, EvalShaFallsBackToEvalOnNoscript) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));
    const RedisScript script{"return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"};

    // A fresh server does not know the script: EVALSHA, NOSCRIPT, then EVAL.
    Result r = run_eval(script, {"key"}, {"arg", "41"});
    EXPECT_EQ(r.error, RedisError::None) << r.str;
    EXPECT_EQ(r.elements, (std::vector<std::string>{"key", "arg", "42"}));
    EXPECT_EQ(client_->stats().script_loads, 1u);

    // Now cached there: EVALSHA answers directly.
    r = run_eval(script, {"key2"}, {"b", "1"});
    EXPECT_EQ(r.elements, (std::vector<std::string>{"key2", "b", "2"}));
    EXPECT_EQ(client_->stats().script_loads, 1u);

    // Flushed: the fallback again, transparently.
    EXPECT_EQ(run({"SCRIPT", "FLUSH"}).str, "OK");
    r = run_eval(script, {"k3"}, {"c", "9"});
    EXPECT_EQ(r.elements, (std::vector<std::string>{"k3", "c", "10"}));
    EXPECT_EQ(client_->stats().script_loads, 2u);

    // A script that fails reports the server's error.
    EXPECT_EQ(run({"SET", "s", "text"}).error, RedisError::None);
    Result err = run_eval(RedisScript{"return redis.call('INCR', KEYS[1])"}, {"s"}, {});
    EXPECT_EQ(err.error, RedisError::Server);
    EXPECT_NE(err.str.find("not an integer"), std::string::npos) << err.str;
}

TEST_F(RedisClientTest, ManyPipelinedCommandsCompleteInOrder) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    RedisOptions o = options(server.url());
    o.max_pending = 5000;
    connect(o);
    const RedisScript script{"return redis.call('INCR', KEYS[1])"};

    constexpr int kCount = 5000;
    std::vector<int64_t> seen;
    std::vector<RedisCall> calls(kCount);
    for (int i = 0; i < kCount; ++i) {
        const std::string_view key = "counter";
        auto cb = [&seen](const RedisReply& r) { seen.push_back(r.ok() ? r.integer() : -1); };
        // Half through the script (the first ones racing the NOSCRIPT fallback), half plain.
        const RedisError e =
            i % 2 == 0 ? client_->eval(script, {&key, 1}, {}, calls[i], cb)
                       : client_->command(std::vector<std::string_view>{"INCR", key}, calls[i], cb);
        ASSERT_EQ(e, RedisError::None) << i;
    }
    EXPECT_EQ(client_->pending(), static_cast<size_t>(kCount));
    ASSERT_TRUE(run_until([&] { return seen.size() == kCount; }));
    // Replies may come out of order only for the evals resent after NOSCRIPT; every value
    // 1..kCount appears once.
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < kCount; ++i) ASSERT_EQ(sorted[i], i + 1);
    EXPECT_EQ(client_->pending(), 0u);
    for (const RedisCall& c : calls) EXPECT_FALSE(c.pending());
    EXPECT_EQ(run({"GET", "counter"}).str, std::to_string(kCount));
}

TEST_F(RedisClientTest, PendingQueueIsBounded) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    RedisOptions o = options(server.url());
    o.max_pending = 8;
    connect(o);

    int answered = 0;
    std::vector<RedisCall> calls(9);
    for (int i = 0; i < 8; ++i) {
        ASSERT_EQ(client_->command(std::vector<std::string_view>{"PING"}, calls[i],
                                   [&](const RedisReply&) { ++answered; }),
                  RedisError::None);
    }
    bool ran = false;
    EXPECT_EQ(client_->command(std::vector<std::string_view>{"PING"}, calls[8],
                               [&](const RedisReply&) { ran = true; }),
              RedisError::QueueFull);
    EXPECT_FALSE(calls[8].pending());
    EXPECT_EQ(client_->stats().refused, 1u);
    ASSERT_TRUE(run_until([&] { return answered == 8; }));
    EXPECT_FALSE(ran);
    EXPECT_EQ(run({"PING"}).str, "PONG");  // room again
}

TEST_F(RedisClientTest, TimeoutWhenServerStopsAnsweringThenRecovers) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    RedisOptions o = options(server.url());
    o.command_timeout_ms = 200;
    o.connect_timeout_ms = 200;
    connect(o);

    server.pause();
    Result r[3];
    RedisCall calls[3];
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(client_->command(std::vector<std::string_view>{"PING"}, calls[i], into(r[i])),
                  RedisError::None);
    }
    ASSERT_TRUE(run_until([&] { return r[0].done && r[1].done && r[2].done; }));
    for (const Result& x : r) EXPECT_EQ(x.error, RedisError::Timeout);
    EXPECT_EQ(client_->stats().timeouts, 3u);
    EXPECT_FALSE(client_->available());
    // While it stays stopped, reconnects time out in the handshake and commands fail fast.
    const uint64_t failures = client_->stats().connect_failures;
    ASSERT_TRUE(run_until([&] { return client_->stats().connect_failures > failures; }));
    EXPECT_EQ(run({"PING"}).error, RedisError::Unavailable);

    server.resume();
    ASSERT_TRUE(run_until([&] { return client_->available(); }));
    EXPECT_EQ(run({"PING"}).str, "PONG");
}

TEST_F(RedisClientTest, DebugSleepTimesOut) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    RedisOptions o = options(server.url());
    o.command_timeout_ms = 100;
    connect(o);
    Result slept = run({"DEBUG", "SLEEP", "1"});
    EXPECT_EQ(slept.error, RedisError::Timeout);
    ASSERT_TRUE(run_until([&] { return client_->available(); }));
    EXPECT_EQ(run({"PING"}).str, "PONG");
}

TEST_F(RedisClientTest, ServerKilledMidFlightFailsEveryCommandThenReconnects) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));

    // Stopped first, so the commands are surely written and unanswered when it dies.
    server.pause();
    constexpr int kCount = 50;
    std::vector<Result> results(kCount);
    std::vector<RedisCall> calls(kCount);
    for (int i = 0; i < kCount; ++i) {
        ASSERT_EQ(client_->command(std::vector<std::string_view>{"INCR", "x"}, calls[i],
                                   into(results[i])),
                  RedisError::None);
    }
    tick_->start(50);
    event_base_loop(base_, EVLOOP_ONCE);  // flush the writes
    server.kill();
    ASSERT_TRUE(run_until([&] {
        for (const Result& x : results)
            if (!x.done) return false;
        return true;
    }));
    for (const Result& x : results) {
        EXPECT_EQ(x.error, RedisError::ConnectionLost)
            << to_string(x.error) << " " << int(x.type) << " " << x.integer << " " << x.str;
    }
    EXPECT_EQ(client_->pending(), 0u);
    EXPECT_FALSE(client_->available());
    EXPECT_EQ(client_->stats().disconnects, 1u);
    EXPECT_EQ(run({"PING"}).error, RedisError::Unavailable);

    ASSERT_TRUE(server.start());  // same port
    ASSERT_TRUE(run_until([&] { return client_->available(); }));
    EXPECT_EQ(run({"INCR", "x"}).integer, 1);  // a new server: no persistence
    EXPECT_EQ(client_->stats().connects, 2u);
}

// Killed while the client still thinks it is connected: what it sends then fails too.
TEST_F(RedisClientTest, CommandsSentToAJustKilledServerFail) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));
    server.kill();
    ASSERT_TRUE(client_->available());  // it has not read the EOF yet
    std::vector<Result> results(10);
    std::vector<RedisCall> calls(10);
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(
            client_->command(std::vector<std::string_view>{"PING"}, calls[i], into(results[i])),
            RedisError::None);
    }
    ASSERT_TRUE(run_until([&] { return client_->pending() == 0; }));
    for (const Result& x : results) {
        EXPECT_TRUE(x.done);
        EXPECT_EQ(x.error, RedisError::ConnectionLost);
    }
    EXPECT_FALSE(client_->available());
}

// Kills and restarts under a steady stream of commands: every accepted command completes
// exactly once (into() fails the test on a second call), and the client always comes back.
TEST_F(RedisClientTest, RepeatedRestartsUnderLoad) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));
    constexpr int kRounds = 5, kPerRound = 200;
    std::vector<Result> results(kRounds * kPerRound);
    std::vector<RedisCall> calls(kRounds * kPerRound);
    int accepted = 0, ok = 0, failed = 0;
    for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kPerRound; ++i) {
            const int n = round * kPerRound + i;
            if (client_->command(std::vector<std::string_view>{"INCR", "n"}, calls[n],
                                 into(results[n])) == RedisError::None) {
                ++accepted;
            }
            if (i == kPerRound / 2) {
                // Some answered, the rest in flight (or not yet sent) when it dies.
                ASSERT_TRUE(run_until([&] { return results[round * kPerRound].done; }));
                server.kill();
            }
        }
        ASSERT_TRUE(run_until([&] { return client_->pending() == 0; }));
        ASSERT_TRUE(server.start());
        ASSERT_TRUE(run_until([&] { return client_->available(); }));
    }
    for (const Result& x : results) {
        if (!x.done) continue;
        if (x.error == RedisError::None) {
            ++ok;
        } else {
            EXPECT_EQ(x.error, RedisError::ConnectionLost);
            ++failed;
        }
    }
    EXPECT_EQ(ok + failed, accepted);
    EXPECT_GT(ok, 0);
    EXPECT_EQ(client_->stats().connects, static_cast<uint64_t>(kRounds + 1));
}

TEST_F(RedisClientTest, StartsWithoutServerAndConnectsWhenItAppears) {
    RedisTestServer server;  // not started yet
    client_ = loop_->make_redis(options(server.url()));
    ASSERT_NE(client_, nullptr);
    EXPECT_FALSE(client_->available());
    bool ran = false;
    RedisCall call;
    EXPECT_EQ(client_->command(std::vector<std::string_view>{"PING"}, call,
                               [&](const RedisReply&) { ran = true; }),
              RedisError::Unavailable);
    EXPECT_FALSE(call.pending());
    ASSERT_TRUE(run_until([&] { return client_->stats().connect_failures >= 2; }));
    EXPECT_FALSE(client_->available());

    ASSERT_TRUE(server.start());
    ASSERT_TRUE(run_until([&] { return client_->available(); }));
    EXPECT_EQ(run({"PING"}).str, "PONG");
    EXPECT_FALSE(ran);
}

// The callback's owner goes away first: cancelling must keep the callback from running.
TEST_F(RedisClientTest, CancelledCallbacksNeverRun) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));

    struct Owner {
        RedisCall call;
        int* hits;
    };
    int hits = 0;
    server.pause();
    auto cancelled = std::make_unique<Owner>(Owner{RedisCall{}, &hits});
    auto destroyed = std::make_unique<Owner>(Owner{RedisCall{}, &hits});
    Owner kept{RedisCall{}, &hits};
    for (Owner* o : {cancelled.get(), destroyed.get(), &kept}) {
        ASSERT_EQ(client_->command(std::vector<std::string_view>{"PING"}, o->call,
                                   [o](const RedisReply&) { ++*o->hits; }),
                  RedisError::None);
        EXPECT_TRUE(o->call.pending());
    }
    cancelled->call.cancel();
    EXPECT_FALSE(cancelled->call.pending());
    cancelled.reset();
    destroyed.reset();                  // the RedisCall's destructor cancels
    EXPECT_EQ(client_->pending(), 3u);  // still on the wire

    // A moved call keeps its callback, now owned by the new handle.
    RedisCall moved = std::move(kept.call);
    EXPECT_FALSE(kept.call.pending());
    EXPECT_TRUE(moved.pending());

    server.resume();
    ASSERT_TRUE(run_until([&] { return client_->pending() == 0; }));
    EXPECT_EQ(hits, 1);
    EXPECT_FALSE(moved.pending());
}

TEST_F(RedisClientTest, CallbackMayCancelOthersAndSendMore) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));

    RedisCall first, second, chained;
    bool second_ran = false;
    Result chained_result;
    ASSERT_EQ(client_->command(std::vector<std::string_view>{"SET", "a", "1"}, first,
                               [&](const RedisReply&) {
                                   second.cancel();
                                   EXPECT_EQ(
                                       client_->command(std::vector<std::string_view>{"GET", "a"},
                                                        chained, into(chained_result)),
                                       RedisError::None);
                               }),
              RedisError::None);
    ASSERT_EQ(client_->command(std::vector<std::string_view>{"PING"}, second,
                               [&](const RedisReply&) { second_ran = true; }),
              RedisError::None);
    ASSERT_TRUE(run_until([&] { return chained_result.done; }));
    EXPECT_EQ(chained_result.str, "1");
    EXPECT_FALSE(second_ran);
}

TEST_F(RedisClientTest, AuthAndSelectOnConnect) {
    RedisTestServer server({"--requirepass", "s3cret"});
    ASSERT_TRUE(server.start());
    connect(options("redis://:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/3"));
    Result info = run({"CLIENT", "INFO"});
    EXPECT_NE(info.str.find(" db=3 "), std::string::npos) << info.str;
    EXPECT_EQ(client_->describe(),
              "redis://:***@127.0.0.1:" + std::to_string(server.port()) + "/3");
}

TEST_F(RedisClientTest, WrongPasswordNeverBecomesAvailable) {
    RedisTestServer server({"--requirepass", "s3cret"});
    ASSERT_TRUE(server.start());
    client_ =
        loop_->make_redis(options("redis://:wrong@127.0.0.1:" + std::to_string(server.port())));
    ASSERT_TRUE(run_until([&] { return client_->stats().connect_failures >= 2; }));
    EXPECT_FALSE(client_->available());
    EXPECT_EQ(client_->stats().connects, 0u);
    EXPECT_EQ(client_->pending(), 0u);
}

TEST_F(RedisClientTest, UnixSocket) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options("unix:" + server.unix_path() + "?db=2"));
    EXPECT_EQ(run({"PING"}).str, "PONG");
    EXPECT_NE(run({"CLIENT", "INFO"}).str.find(" db=2 "), std::string::npos);
}

TEST_F(RedisClientTest, DestroyingTheClientFailsWhatIsPending) {
    RedisTestServer server;
    ASSERT_TRUE(server.start());
    connect(options(server.url()));
    server.pause();
    Result r[2];
    RedisCall calls[2];
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(client_->command(std::vector<std::string_view>{"PING"}, calls[i], into(r[i])),
                  RedisError::None);
    }
    client_.reset();
    for (const Result& x : r) {
        EXPECT_TRUE(x.done);
        EXPECT_EQ(x.error, RedisError::ConnectionLost);
    }
    EXPECT_FALSE(calls[0].pending());
    server.resume();
}

// ---- the rate-limit scripts (core/redis_scripts.hpp), with an injected clock ----------------

class RedisScriptTest : public RedisClientTest {
  protected:
    void SetUp() override {
        RedisClientTest::SetUp();
        if (IsSkipped()) return;
        server_ = std::make_unique<RedisTestServer>();
        ASSERT_TRUE(server_->start());
        connect(options(server_->url()));
    }

    // {admitted, value, wait_ms}
    std::vector<int64_t> call(const RedisScript& s, const std::string& key, int64_t a, int64_t b,
                              int64_t now, bool commit = true) {
        const std::string sa = std::to_string(a), sb = std::to_string(b), sn = std::to_string(now);
        Result r = run_eval(s, {key}, {sa, sb, sn, commit ? "1" : "0"});
        EXPECT_EQ(r.error, RedisError::None) << r.str;
        std::vector<int64_t> out;
        for (const std::string& e : r.elements) out.push_back(std::stoll(e));
        return out;
    }

    std::unique_ptr<RedisTestServer> server_;
};

using V = std::vector<int64_t>;

TEST_F(RedisScriptTest, LeakyBucketFollowsNginx) {
    const int64_t t0 = 1'000'000'000;
    // rate=10r/s burst=2: the first request starts at excess 0, then +1 request each.
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0), (V{1, 0, 0}));
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0), (V{1, 1000, 0}));
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0), (V{1, 2000, 0}));
    // Over the burst: rejected, state unchanged; one request drains in 100 ms.
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0), (V{0, 3000, 100}));
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0 + 99), (V{0, 2010, 1}));
    EXPECT_EQ(call(kRedisLeakyBucket, "lb", 10000, 2000, t0 + 100), (V{1, 2000, 0}));
    // The key expires once drained (plus a second).
    const Result pttl = run({"PTTL", "lb"});
    EXPECT_GT(pttl.integer, 0);
    EXPECT_LE(pttl.integer, 200 + 1000);
}

TEST_F(RedisScriptTest, LeakyBucketWithoutBurstAndPerMinute) {
    const int64_t t0 = 2'000'000'000;
    EXPECT_EQ(call(kRedisLeakyBucket, "nb", 10000, 0, t0), (V{1, 0, 0}));
    EXPECT_EQ(call(kRedisLeakyBucket, "nb", 10000, 0, t0 + 50), (V{0, 500, 50}));
    EXPECT_EQ(call(kRedisLeakyBucket, "nb", 10000, 0, t0 + 100), (V{1, 0, 0}));
    // 30r/m: one request every 2 s.
    EXPECT_EQ(call(kRedisLeakyBucket, "pm", 500, 0, t0), (V{1, 0, 0}));
    EXPECT_EQ(call(kRedisLeakyBucket, "pm", 500, 0, t0 + 1000), (V{0, 500, 1000}));
    EXPECT_EQ(call(kRedisLeakyBucket, "pm", 500, 0, t0 + 2000), (V{1, 0, 0}));
}

TEST_F(RedisScriptTest, LeakyBucketCheckOnlyAndServerClock) {
    EXPECT_EQ(call(kRedisLeakyBucket, "chk", 1000, 0, 5'000'000, false), (V{1, 0, 0}));
    EXPECT_EQ(run({"EXISTS", "chk"}).integer, 0);
    // now = 0: the server's TIME. 1r/s without burst: the second at once is rejected.
    EXPECT_EQ(call(kRedisLeakyBucket, "srv", 1000, 0, 0)[0], 1);
    const V second = call(kRedisLeakyBucket, "srv", 1000, 0, 0);
    EXPECT_EQ(second[0], 0);
    EXPECT_GT(second[2], 0);
    EXPECT_LE(second[2], 1000);
}

TEST_F(RedisScriptTest, SlidingWindowCountsSubWindowsLikeLimitReq) {
    const int64_t base = 3'000'000'000;  // a multiple of the 100 ms sub-window
    // limit 3 per 1000 ms: {admitted, counted, wait, reset}; the first sub-window leaves the
    // window 1100 ms after it began.
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base), (V{1, 1, 0, 1100}));
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base), (V{1, 2, 0, 1100}));
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base + 50), (V{1, 3, 0, 1050}));
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base + 51), (V{0, 3, 1049, 1049}));
    // Conservative at the edge: the oldest sub-window counts whole until it has fully left.
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base + 1099), (V{0, 3, 1, 1}));
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 3, 1000, base + 1100), (V{1, 1, 0, 1100}));
    // Check only: nothing counted, nothing stored.
    EXPECT_EQ(call(kRedisSlidingWindow, "chk", 3, 1000, base, false), (V{1, 1, 0, 0}));
    EXPECT_EQ(run({"EXISTS", "chk"}).integer, 0);
    // A changed window (a tiered rate) starts the key anew.
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 1, 2000, base + 1100), (V{1, 1, 0, 2100}));
    EXPECT_EQ(call(kRedisSlidingWindow, "sw", 1, 2000, base + 1100)[0], 0);
    EXPECT_GT(run({"PTTL", "sw"}).integer, 0);
}

TEST_F(RedisScriptTest, SlidingWindowNeverExceedsTheLimitInAnyWindow) {
    // Requests at uneven times (a fixed pseudo-random walk): no window of 1000 ms, wherever it
    // falls, holds more than the limit, and stale sub-windows are dropped.
    std::vector<int64_t> admitted;
    int64_t t = 5'000'000'000;
    uint32_t x = 12345;
    for (int i = 0; i < 400; ++i) {
        x = x * 1103515245u + 12345u;
        t += (x >> 16) % 120;
        if (call(kRedisSlidingWindow, "walk", 5, 1000, t)[0] == 1) admitted.push_back(t);
    }
    ASSERT_GT(admitted.size(), 20u);
    for (size_t i = 0; i < admitted.size(); ++i) {
        size_t in_window = 0;
        for (size_t j = 0; j <= i; ++j) {
            if (admitted[j] > admitted[i] - 1000) ++in_window;
        }
        ASSERT_LE(in_window, 5u) << "at " << admitted[i];
    }
    EXPECT_LE(run({"HLEN", "walk"}).integer, 1 + 11);
}

TEST_F(RedisScriptTest, SlidingWindowWithServerClock) {
    EXPECT_EQ(call(kRedisSlidingWindow, "srvw", 1, 60000, 0)[0], 1);
    const V second = call(kRedisSlidingWindow, "srvw", 1, 60000, 0);
    EXPECT_EQ(second[0], 0);
    EXPECT_GT(second[2], 0);
    EXPECT_LE(second[2], 66000);
}

#ifdef TOLLGATE_WITH_LIMIT_REQ
// The scripts must decide exactly as limit_req's own algorithms (limit_req_algo.hpp) do on one
// machine: the same requests at the same times, compared answer by answer.
TEST_F(RedisScriptTest, ScriptsAgreeWithLimitReqAlgorithms) {
    namespace lr = tollgate::limit_req;
    uint32_t x = 777;
    auto step = [&x](uint32_t max) {
        x = x * 1103515245u + 12345u;
        return (x >> 16) % max;
    };

    const lr::LeakyParams lp{.rate = 10000, .burst = 3000, .delay = 0};
    std::optional<lr::LeakyState> ls;
    int64_t t = 6'000'000'000;
    for (int i = 0; i < 300; ++i) {
        t += step(150);
        lr::LeakyResult r;
        if (!ls) {
            r = lr::leaky_first(lp);
            ls = lr::LeakyState{t, 0};
        } else {
            r = lr::leaky_check(*ls, t, lp);
            if (!r.rejected) lr::leaky_commit(*ls, t, r);
        }
        const V got = call(kRedisLeakyBucket, "diff_lb", lp.rate, lp.burst, t);
        ASSERT_EQ(got, (V{r.rejected ? 0 : 1, r.excess, r.rejected ? int64_t(r.retry_ms) : 0}))
            << "request " << i << " at " << t;
    }

    const lr::WindowParams wp{.limit = 5, .window_ms = 1000};
    lr::WindowState ws{};
    for (int i = 0; i < 300; ++i) {
        t += step(130);
        const lr::WindowResult r = lr::window_update(ws, t, wp);
        const V got = call(kRedisSlidingWindow, "diff_sw", wp.limit, wp.window_ms, t);
        const int64_t counted = r.rejected ? int64_t(wp.limit) : int64_t(wp.limit - r.remaining);
        ASSERT_EQ(got, (V{r.rejected ? 0 : 1, counted, r.rejected ? int64_t(r.retry_ms) : 0,
                          int64_t(r.reset_ms)}))
            << "request " << i << " at " << t;
    }
}
#endif

}  // namespace
}  // namespace tollgate
