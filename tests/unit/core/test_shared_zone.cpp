// Shared zones, the robust mutex and the bounded LRU table, in one process and across fork().
#include "core/shared_zone.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace tollgate {
namespace {

struct Counter {
    uint64_t hits;
    uint64_t pad;
};

std::shared_ptr<SharedZone> zone(const std::string& name, size_t size, uint64_t layout = 0) {
    std::string error;
    auto z = SharedZone::acquire(name, "test", size, layout, error);
    EXPECT_TRUE(z) << error;
    return z;
}

TEST(SharedZone, ReusedOnlyWithSameNameKindSizeLayout) {
    auto a = zone("reuse-a", 1 << 16);
    ASSERT_FALSE(a->reused());
    static_cast<char*>(a->data())[0] = 'x';
    auto b = zone("reuse-a", 1 << 16);
    EXPECT_TRUE(b->reused());
    EXPECT_EQ(static_cast<char*>(b->data())[0], 'x');
    auto c = zone("reuse-a", 1 << 17);
    EXPECT_FALSE(c->reused());
    auto d = zone("reuse-a", 1 << 16, 7);
    EXPECT_FALSE(d->reused());
    std::string error;
    auto e = SharedZone::acquire("reuse-a", "other", 1 << 16, 0, error);
    ASSERT_TRUE(e);
    EXPECT_FALSE(e->reused());
}

TEST(SharedZone, ReleasedWhenNoGenerationHoldsIt) {
    size_t before = SharedZone::live_count();
    {
        auto a = zone("released", 1 << 16);
        EXPECT_EQ(SharedZone::live_count(), before + 1);
    }
    EXPECT_EQ(SharedZone::live_count(), before);
    auto b = zone("released", 1 << 16);
    EXPECT_FALSE(b->reused());
}

TEST(SharedZone, TooSmallIsRefused) {
    std::string error;
    EXPECT_FALSE(SharedZone::acquire("tiny", "test", 100, 0, error));
    EXPECT_EQ(error, "too small");
}

TEST(ZoneKey, DistinctKeysDistinctHashes) {
    EXPECT_EQ(zone_key("abc"), zone_key("abc"));
    EXPECT_NE(zone_key("abc"), zone_key("abd"));
    EXPECT_NE(zone_key(""), zone_key(std::string_view("\0", 1)));
}

TEST(SharedTable, FindInsertErase) {
    auto z = zone("table-basic", 1 << 16);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    ShmLock lock(t.mutex());
    EXPECT_FALSE(lock.owner_died());
    bool inserted = false;
    Counter* c = t.find_or_insert(zone_key("a"), true, inserted);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(inserted);
    EXPECT_EQ(c->hits, 0u);
    c->hits = 5;
    EXPECT_EQ(t.find(zone_key("a"))->hits, 5u);
    EXPECT_EQ(t.find_or_insert(zone_key("a"), true, inserted)->hits, 5u);
    EXPECT_FALSE(inserted);
    EXPECT_EQ(t.find(zone_key("b")), nullptr);
    t.erase(zone_key("a"));
    EXPECT_EQ(t.find(zone_key("a")), nullptr);
    EXPECT_EQ(t.count(), 0u);
    EXPECT_TRUE(t.valid());
}

TEST(SharedTable, AttachChecksTheLayout) {
    auto z = zone("table-attach", 1 << 16);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    SharedTable<Counter> again;
    EXPECT_TRUE(again.attach(z->data(), z->data_size(), false));
    struct Big {
        char b[100];
    };
    SharedTable<Big> other;
    EXPECT_FALSE(other.attach(z->data(), z->data_size(), false));
}

TEST(SharedTable, FullTableEvictsLeastRecentlyUsed) {
    auto z = zone("table-lru", 1 << 14);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    uint32_t cap = t.capacity();
    ASSERT_GT(cap, 10u);
    ShmLock lock(t.mutex());
    bool inserted;
    for (uint32_t i = 0; i < cap; ++i) {
        t.find_or_insert(zone_key("k" + std::to_string(i)), true, inserted)->hits = i;
    }
    EXPECT_EQ(t.count(), cap);
    EXPECT_NE(t.find(zone_key("k0")), nullptr);  // k0 is now the most recent; k1 the oldest
    EXPECT_EQ(t.find_or_insert(zone_key("new"), false, inserted), nullptr);  // no evict: full
    ASSERT_NE(t.find_or_insert(zone_key("new"), true, inserted), nullptr);
    EXPECT_EQ(t.find(zone_key("k1")), nullptr);
    EXPECT_NE(t.find(zone_key("k0")), nullptr);
    EXPECT_EQ(t.count(), cap);
    EXPECT_EQ(t.evictions(), 1u);
    // Many more keys than fit: the count never passes the capacity.
    for (int i = 0; i < 20000; ++i)
        t.find_or_insert(zone_key("x" + std::to_string(i)), true, inserted);
    EXPECT_EQ(t.count(), cap);
    EXPECT_TRUE(t.valid());
}

TEST(SharedTable, ExpireRemovesStaleOldest) {
    auto z = zone("table-expire", 1 << 16);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    ShmLock lock(t.mutex());
    bool inserted;
    for (int i = 0; i < 5; ++i) {
        t.find_or_insert(zone_key(std::to_string(i)), true, inserted)->hits = i < 3 ? 0 : 1;
    }
    t.expire(2, [](const Counter& c) { return c.hits == 0; });
    EXPECT_EQ(t.count(), 3u);
    t.expire(5, [](const Counter& c) { return c.hits == 0; });
    EXPECT_EQ(t.count(), 2u);
    EXPECT_TRUE(t.valid());
}

// Children increment counters under the lock; the total is exact.
TEST(SharedTableFork, ChildrenCountExactly) {
    auto z = zone("fork-count", 1 << 20);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    constexpr int kChildren = 4;
    constexpr int kIters = 20000;
    pid_t pids[kChildren];
    for (int c = 0; c < kChildren; ++c) {
        pids[c] = fork();
        ASSERT_GE(pids[c], 0);
        if (pids[c] == 0) {
            bool inserted;
            for (int i = 0; i < kIters; ++i) {
                ShmLock lock(t.mutex());
                t.find_or_insert(zone_key("shared"), true, inserted)->hits++;
                t.find_or_insert(zone_key("k" + std::to_string(i % 500)), true, inserted)->hits++;
            }
            _exit(0);
        }
    }
    for (pid_t p : pids) {
        int st = 0;
        ASSERT_EQ(waitpid(p, &st, 0), p);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ShmLock lock(t.mutex());
    EXPECT_EQ(t.find(zone_key("shared"))->hits, uint64_t(kChildren) * kIters);
    EXPECT_EQ(t.find(zone_key("k7"))->hits, uint64_t(kChildren) * kIters / 500);
    EXPECT_TRUE(t.valid());
}

// A child SIGKILLed while it holds the lock: the parent still locks, learns the owner died, and
// the table can be checked and reset; other children hammering the table finish.
TEST(SharedTableFork, KilledOwnerNeverWedges) {
    auto z = zone("fork-kill", 1 << 20);
    SharedTable<Counter> t;
    ASSERT_TRUE(t.attach(z->data(), z->data_size(), true));
    auto fz = zone("fork-kill-flag", 1 << 16);
    auto* flag = static_cast<std::atomic<int>*>(fz->data());
    flag->store(0);
    pid_t holder = fork();
    ASSERT_GE(holder, 0);
    if (holder == 0) {
        (void)t.mutex().lock();
        bool inserted;
        t.find_or_insert(zone_key("half"), true, inserted);
        flag->store(1);
        for (;;) pause();  // dies holding the lock
    }
    while (flag->load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Hammering children start while the lock is held, then the holder is killed.
    constexpr int kChildren = 3;
    pid_t pids[kChildren];
    for (int c = 0; c < kChildren; ++c) {
        pids[c] = fork();
        ASSERT_GE(pids[c], 0);
        if (pids[c] == 0) {
            bool inserted;
            for (int i = 0; i < 5000; ++i) {
                ShmLock lock(t.mutex());
                if (lock.owner_died()) t.reset();
                t.find_or_insert(zone_key("k" + std::to_string(i % 100)), true, inserted)->hits++;
            }
            _exit(0);
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(kill(holder, SIGKILL), 0);
    int st = 0;
    ASSERT_EQ(waitpid(holder, &st, 0), holder);
    for (pid_t p : pids) {
        // Bounded: a wedged child would be killed here and fail the test.
        bool done = false;
        for (int i = 0; i < 1000 && !done; ++i) {
            pid_t r = waitpid(p, &st, WNOHANG);
            if (r == p)
                done = true;
            else
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (!done) {
            kill(p, SIGKILL);
            waitpid(p, &st, 0);
        }
        EXPECT_TRUE(done) << "a child wedged on the lock";
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ShmLock lock(t.mutex());
    EXPECT_TRUE(t.valid());
    EXPECT_GE(t.resets(), 1u);
}

}  // namespace
}  // namespace tollgate
