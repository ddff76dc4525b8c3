// The LMDB store behind limit_quota: one environment (one file) per process, opened after fork.
// Records are keyed by (zone id, period end, key hash) and hold a count. One short write
// transaction checks and increments every limit of a request at once: LMDB serialises writers
// across processes with a robust mutex, so N workers enforce one quota exactly, and a writer that
// dies mid-transaction leaves nothing half-written (the next writer recovers the lock).
// No request knowledge here: module.cpp maps requests to QuotaChecks. Unit-tested on its own.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <span>
#include <string>

namespace tollgate::limit_quota {

inline constexpr size_t kKeyHashSize = 16;
inline constexpr size_t kRecordKeySize = 8 + 8 + kKeyHashSize;
// The records a map holds: (map - kMapReserve) / kBytesPerRecord. Measured, a record takes about
// 75 bytes of map once pages have split (random key order) and copy-on-write pages are counted,
// and a small map loses about 16 pages to meta pages, roots and the free list; the bound keeps a
// margin of three so that updates and pruning never meet MDB_MAP_FULL.
inline constexpr uint64_t kBytesPerRecord = 256;
inline constexpr uint64_t kMapReserve = 64 * 1024;
inline constexpr uint64_t kMinMapSize = 128 * 1024;

// One limit of one request.
struct QuotaCheck {
    uint64_t zone_id = 0;    // zone_id_for(name, period)
    int64_t period_end = 0;  // Unix seconds: the record expires then
    uint8_t key_hash[kKeyHashSize] = {};
    uint64_t quota = 0;
    // Results: the count after this request when admitted, the count found when not.
    uint64_t count = 0;
    bool over = false;  // this limit is exhausted
};

enum class ApplyResult : uint8_t {
    Admitted,  // every check had room; all were incremented
    Rejected,  // some check is over its quota; nothing was written
    Full,      // a new record would pass the store's bound; nothing was written
    Error,     // LMDB failed (logged by the caller with the message); nothing was written
};

// A stable id for a zone: its name and period (changing the period starts new counters;
// changing the quota keeps them).
uint64_t zone_id_for(std::string_view name, std::string_view period);
// The 16-byte hash of a key value (keys are often API keys: the file never holds them).
void hash_key(std::string_view key, uint8_t out[kKeyHashSize]);

class QuotaStore {
  public:
    QuotaStore() = default;
    ~QuotaStore();
    QuotaStore(const QuotaStore&) = delete;
    QuotaStore& operator=(const QuotaStore&) = delete;

    // Opens (creating) the LMDB file `path` (its lock file is PATH-lock) with a map of
    // `map_size` bytes. `sync_each_commit` false: MDB_NOSYNC | MDB_WRITEMAP, the caller calls
    // sync(); true: every commit is durable when it returns.
    // Returns false with `error`.
    bool open(const std::string& path, uint64_t map_size, bool sync_each_commit,
              std::string& error);
    bool is_open() const { return env_ != nullptr; }
    void close();

    // Checks every limit and, when all have room, increments them all, in one write
    // transaction. Fills each check's count and over.
    ApplyResult apply(std::span<QuotaCheck> checks, std::string& error);
    // Takes one back from each check's record (compensates an apply whose request another
    // store refused). Returns false with `error`.
    bool undo(std::span<const QuotaCheck> checks, std::string& error);
    // Deletes at most `max` records whose period ended at or before `now`. Returns how many it
    // deleted (set `more` when it stopped at `max`), or -1 with `error`.
    long prune(int64_t now, size_t max, bool& more, std::string& error);
    // Flushes committed transactions to disk (fsync). Returns false with `error`.
    bool sync(std::string& error);
    // Clears reader slots of dead processes. Returns how many.
    int reader_check();
    // Records in the store, or -1.
    long entries();
    // The most records the store accepts.
    uint64_t max_entries() const { return max_entries_; }

  private:
    int begin(MDB_txn** txn);

    MDB_env* env_ = nullptr;
    MDB_dbi dbi_ = 0;
    uint64_t max_entries_ = 0;
};

}  // namespace tollgate::limit_quota
