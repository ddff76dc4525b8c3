// The LMDB quota store on its own: exact counting, all-or-nothing, bounds, pruning, processes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "modules/limit_quota/quota_store.hpp"

namespace tollgate::limit_quota {
namespace {

class QuotaStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/tollgate-quota-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/q.mdb";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    static QuotaCheck check(std::string_view zone, std::string_view key, int64_t end,
                            uint64_t quota) {
        QuotaCheck c;
        c.zone_id = zone_id_for(zone, "day");
        c.period_end = end;
        hash_key(key, c.key_hash);
        c.quota = quota;
        return c;
    }

    std::string dir_;
    std::string path_;
};

TEST_F(QuotaStoreTest, CountsUpToTheQuotaThenRejects) {
    QuotaStore s;
    std::string error;
    ASSERT_TRUE(s.open(path_, 1 << 20, false, error)) << error;
    for (uint64_t i = 1; i <= 5; ++i) {
        QuotaCheck c = check("z", "alice", 1000, 5);
        ASSERT_EQ(s.apply({&c, 1}, error), ApplyResult::Admitted);
        EXPECT_EQ(c.count, i);
        EXPECT_FALSE(c.over);
    }
    QuotaCheck c = check("z", "alice", 1000, 5);
    EXPECT_EQ(s.apply({&c, 1}, error), ApplyResult::Rejected);
    EXPECT_EQ(c.count, 5u);
    EXPECT_TRUE(c.over);
    // Another key, another period, another zone: separate counters.
    QuotaCheck other[3] = {check("z", "bob", 1000, 5), check("z", "alice", 2000, 5),
                           check("y", "alice", 1000, 5)};
    EXPECT_EQ(s.apply(other, error), ApplyResult::Admitted);
    for (auto& o : other) EXPECT_EQ(o.count, 1u);
}

TEST_F(QuotaStoreTest, AllOrNothingAcrossZones) {
    QuotaStore s;
    std::string error;
    ASSERT_TRUE(s.open(path_, 1 << 20, false, error)) << error;
    QuotaCheck small = check("small", "k", 1000, 1);
    ASSERT_EQ(s.apply({&small, 1}, error), ApplyResult::Admitted);
    QuotaCheck both[2] = {check("big", "k", 1000, 100), check("small", "k", 1000, 1)};
    EXPECT_EQ(s.apply(both, error), ApplyResult::Rejected);
    EXPECT_EQ(both[0].count, 0u);  // nothing written to "big"
    EXPECT_TRUE(both[1].over);
    QuotaCheck big = check("big", "k", 1000, 100);
    ASSERT_EQ(s.apply({&big, 1}, error), ApplyResult::Admitted);
    EXPECT_EQ(big.count, 1u);
    ASSERT_TRUE(s.undo({&big, 1}, error));
    big = check("big", "k", 1000, 100);
    ASSERT_EQ(s.apply({&big, 1}, error), ApplyResult::Admitted);
    EXPECT_EQ(big.count, 1u);
}

TEST_F(QuotaStoreTest, SurvivesCloseAndReopen) {
    std::string error;
    {
        QuotaStore s;
        ASSERT_TRUE(s.open(path_, 1 << 20, false, error)) << error;
        for (int i = 0; i < 3; ++i) {
            QuotaCheck c = check("z", "k", 1000, 10);
            ASSERT_EQ(s.apply({&c, 1}, error), ApplyResult::Admitted);
        }
        ASSERT_TRUE(s.sync(error));
    }
    QuotaStore s;
    ASSERT_TRUE(s.open(path_, 2 << 20, false, error)) << error;  // a larger map is fine
    QuotaCheck c = check("z", "k", 1000, 10);
    ASSERT_EQ(s.apply({&c, 1}, error), ApplyResult::Admitted);
    EXPECT_EQ(c.count, 4u);
}

TEST_F(QuotaStoreTest, BoundedByTheMapSize) {
    QuotaStore s;
    std::string error;
    ASSERT_TRUE(s.open(path_, kMinMapSize, false, error)) << error;
    uint64_t cap = s.max_entries();
    ASSERT_EQ(cap, (kMinMapSize - kMapReserve) / kBytesPerRecord);
    uint64_t admitted = 0, full = 0;
    for (uint64_t i = 0; i < cap + 50; ++i) {
        QuotaCheck c = check("z", "key" + std::to_string(i), 1000, 10);
        ApplyResult r = s.apply({&c, 1}, error);
        ASSERT_NE(r, ApplyResult::Error) << error;
        if (r == ApplyResult::Admitted) ++admitted;
        if (r == ApplyResult::Full) ++full;
    }
    EXPECT_EQ(admitted, cap);
    EXPECT_EQ(full, 50u);
    // Keys already counted keep counting when full.
    QuotaCheck c = check("z", "key0", 1000, 10);
    EXPECT_EQ(s.apply({&c, 1}, error), ApplyResult::Admitted);
    EXPECT_EQ(c.count, 2u);
    EXPECT_LE(std::filesystem::file_size(path_), kMinMapSize);
}

TEST_F(QuotaStoreTest, PrunesEndedPeriodsInBatches) {
    QuotaStore s;
    std::string error;
    ASSERT_TRUE(s.open(path_, 4 << 20, false, error)) << error;
    for (int i = 0; i < 300; ++i) {
        QuotaCheck old[2] = {check("a", "k" + std::to_string(i), 1000, 10),
                             check("b", "k" + std::to_string(i), 1500, 10)};
        ASSERT_EQ(s.apply(old, error), ApplyResult::Admitted);
        QuotaCheck cur = check("a", "k" + std::to_string(i), 3000, 10);
        ASSERT_EQ(s.apply({&cur, 1}, error), ApplyResult::Admitted);
    }
    EXPECT_EQ(s.entries(), 900);
    bool more = false;
    EXPECT_EQ(s.prune(999, 100, more, error), 0);  // nothing has ended yet
    EXPECT_FALSE(more);
    EXPECT_EQ(s.prune(1000, 250, more, error), 250);  // zone a's period ending at 1000
    EXPECT_TRUE(more);
    EXPECT_EQ(s.prune(2000, 1000, more, error), 350);  // the rest of a, and b's
    EXPECT_FALSE(more);
    EXPECT_EQ(s.entries(), 300);
    QuotaCheck cur = check("a", "k0", 3000, 10);
    ASSERT_EQ(s.apply({&cur, 1}, error), ApplyResult::Admitted);
    EXPECT_EQ(cur.count, 2u);
}

// Several processes, each with its own environment opened after fork, share one exact count.
TEST_F(QuotaStoreTest, ExactAcrossProcesses) {
    constexpr int kProcs = 4, kEach = 200;
    constexpr uint64_t kQuota = 500;
    for (int p = 0; p < kProcs; ++p) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            QuotaStore s;
            std::string error;
            if (!s.open(path_, 1 << 20, false, error)) _exit(1);
            int admitted = 0;
            for (int i = 0; i < kEach; ++i) {
                QuotaCheck c = check("z", "shared", 1000, kQuota);
                if (s.apply({&c, 1}, error) == ApplyResult::Admitted) ++admitted;
            }
            _exit(admitted > 255 ? 255 : admitted);
        }
    }
    int total = 0;
    for (int p = 0; p < kProcs; ++p) {
        int status = 0;
        wait(&status);
        ASSERT_TRUE(WIFEXITED(status));
        total += WEXITSTATUS(status);
    }
    EXPECT_EQ(total, static_cast<int>(kQuota));
    QuotaStore s;
    std::string error;
    ASSERT_TRUE(s.open(path_, 1 << 20, false, error));
    QuotaCheck c = check("z", "shared", 1000, kQuota);
    EXPECT_EQ(s.apply({&c, 1}, error), ApplyResult::Rejected);
    EXPECT_EQ(c.count, kQuota);
}

// A process killed while it holds the write lock does not wedge the others (robust mutex).
TEST_F(QuotaStoreTest, WriterKilledInsideATransaction) {
    std::string error;
    {
        QuotaStore s;
        ASSERT_TRUE(s.open(path_, 1 << 20, false, error)) << error;
    }
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        MDB_env* env = nullptr;
        mdb_env_create(&env);
        mdb_env_set_maxdbs(env, 1);
        if (mdb_env_open(env, path_.c_str(), MDB_NOSUBDIR | MDB_NOTLS, 0600) != 0) _exit(1);
        MDB_txn* txn = nullptr;
        if (mdb_txn_begin(env, nullptr, 0, &txn) != 0) _exit(1);  // holds the writer mutex
        if (write(ready[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char b;
    ASSERT_EQ(read(ready[0], &b, 1), 1);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(ready[0]);
    close(ready[1]);
    QuotaStore s;
    ASSERT_TRUE(s.open(path_, 1 << 20, false, error)) << error;
    QuotaCheck c = check("z", "k", 1000, 10);
    EXPECT_EQ(s.apply({&c, 1}, error), ApplyResult::Admitted) << error;
    EXPECT_EQ(c.count, 1u);
}

}  // namespace
}  // namespace tollgate::limit_quota
