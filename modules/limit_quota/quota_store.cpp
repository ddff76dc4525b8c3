#include "modules/limit_quota/quota_store.hpp"

#include <openssl/sha.h>

#include <cstring>

namespace tollgate::limit_quota {

namespace {

void put_be64(uint8_t* p, uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<uint8_t>(v);
        v >>= 8;
    }
}

uint64_t get_be64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return v;
}

// Period ends are positive Unix times; the big-endian encoding keeps them in time order, so a
// zone's records are grouped by period and expired groups come first.
void make_key(uint8_t out[kRecordKeySize], uint64_t zone, uint64_t end, const uint8_t* hash) {
    put_be64(out, zone);
    put_be64(out + 8, end);
    if (hash != nullptr) {
        std::memcpy(out + 16, hash, kKeyHashSize);
    } else {
        std::memset(out + 16, 0, kKeyHashSize);
    }
}

uint64_t read_count(const MDB_val& v) {
    uint64_t c = 0;
    if (v.mv_size == sizeof(c)) std::memcpy(&c, v.mv_data, sizeof(c));
    return c;
}

std::string lmdb_error(const char* what, int rc) {
    return std::string(what) + " failed (" + mdb_strerror(rc) + ")";
}

}  // namespace

uint64_t zone_id_for(std::string_view name, std::string_view period) {
    std::string text = "limit_quota:";
    text += name;
    text += ':';
    text += period;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    return get_be64(digest);
}

void hash_key(std::string_view key, uint8_t out[kKeyHashSize]) {
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
    std::memcpy(out, digest, kKeyHashSize);
}

QuotaStore::~QuotaStore() {
    close();
}

void QuotaStore::close() {
    if (env_ != nullptr) {
        mdb_env_close(env_);
        env_ = nullptr;
    }
}

bool QuotaStore::open(const std::string& path, uint64_t map_size, bool sync_each_commit,
                      std::string& error) {
    close();
    if (map_size < kMinMapSize) map_size = kMinMapSize;
    max_entries_ = (map_size - kMapReserve) / kBytesPerRecord;
    int rc = mdb_env_create(&env_);
    if (rc != 0) {
        env_ = nullptr;
        error = lmdb_error("mdb_env_create()", rc);
        return false;
    }
    // One process holds one environment; nothing here uses read transactions across threads.
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
    // Without a sync per commit, pages are written through the shared map (MDB_WRITEMAP): a
    // commit is then a few stores and no write() calls (measured: 2.3x the requests per second
    // of pwrite commits). The file is as large as the map (sparse). The price: a machine crash
    // between two syncs may leave the file inconsistent, and a stray write in the process could
    // reach the map. A process crash loses nothing committed (the pages are the page cache's).
    if (!sync_each_commit) flags |= MDB_NOSYNC | MDB_WRITEMAP;
    rc = mdb_env_set_mapsize(env_, map_size);
    if (rc == 0) rc = mdb_env_set_maxdbs(env_, 1);
    if (rc == 0) rc = mdb_env_open(env_, path.c_str(), flags, 0600);
    if (rc != 0) {
        error = lmdb_error(("mdb_env_open(\"" + path + "\")").c_str(), rc);
        close();
        return false;
    }
    MDB_txn* txn = nullptr;
    rc = begin(&txn);
    if (rc == 0) rc = mdb_dbi_open(txn, "limit_quota", MDB_CREATE, &dbi_);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else if (txn != nullptr) {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        error = lmdb_error(("mdb_dbi_open(\"" + path + "\")").c_str(), rc);
        close();
        return false;
    }
    return true;
}

// Starts a write transaction. Another process may have grown the map (a reload with a larger
// size): adopt its size and retry once.
int QuotaStore::begin(MDB_txn** txn) {
    *txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(env_, 0);
        if (rc == 0) rc = mdb_txn_begin(env_, nullptr, 0, txn);
    }
    if (rc != 0) *txn = nullptr;
    return rc;
}

ApplyResult QuotaStore::apply(std::span<QuotaCheck> checks, std::string& error) {
    if (env_ == nullptr) {
        error = "the quota store is not open";
        return ApplyResult::Error;
    }
    MDB_txn* txn = nullptr;
    int rc = begin(&txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_begin()", rc);
        return ApplyResult::Error;
    }
    bool over = false;
    size_t new_records = 0;
    for (QuotaCheck& c : checks) {
        uint8_t k[kRecordKeySize];
        make_key(k, c.zone_id, static_cast<uint64_t>(c.period_end), c.key_hash);
        MDB_val key{sizeof(k), k};
        MDB_val val;
        rc = mdb_get(txn, dbi_, &key, &val);
        if (rc == MDB_NOTFOUND) {
            c.count = 0;
            ++new_records;
        } else if (rc == 0) {
            c.count = read_count(val);
        } else {
            mdb_txn_abort(txn);
            error = lmdb_error("mdb_get()", rc);
            return ApplyResult::Error;
        }
        c.over = c.count >= c.quota;
        over = over || c.over;
    }
    if (over) {
        mdb_txn_abort(txn);
        return ApplyResult::Rejected;
    }
    if (new_records > 0) {
        MDB_stat st;
        rc = mdb_stat(txn, dbi_, &st);
        if (rc != 0 || st.ms_entries + new_records > max_entries_) {
            mdb_txn_abort(txn);
            if (rc != 0) {
                error = lmdb_error("mdb_stat()", rc);
                return ApplyResult::Error;
            }
            return ApplyResult::Full;
        }
    }
    for (QuotaCheck& c : checks) {
        uint8_t k[kRecordKeySize];
        make_key(k, c.zone_id, static_cast<uint64_t>(c.period_end), c.key_hash);
        MDB_val key{sizeof(k), k};
        uint64_t next = c.count + 1;
        MDB_val val{sizeof(next), &next};
        rc = mdb_put(txn, dbi_, &key, &val, 0);
        if (rc != 0) {
            mdb_txn_abort(txn);
            if (rc == MDB_MAP_FULL) return ApplyResult::Full;
            error = lmdb_error("mdb_put()", rc);
            return ApplyResult::Error;
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        if (rc == MDB_MAP_FULL) return ApplyResult::Full;
        error = lmdb_error("mdb_txn_commit()", rc);
        return ApplyResult::Error;
    }
    for (QuotaCheck& c : checks) ++c.count;
    return ApplyResult::Admitted;
}

bool QuotaStore::undo(std::span<const QuotaCheck> checks, std::string& error) {
    if (env_ == nullptr) return true;
    MDB_txn* txn = nullptr;
    int rc = begin(&txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_begin()", rc);
        return false;
    }
    for (const QuotaCheck& c : checks) {
        uint8_t k[kRecordKeySize];
        make_key(k, c.zone_id, static_cast<uint64_t>(c.period_end), c.key_hash);
        MDB_val key{sizeof(k), k};
        MDB_val val;
        rc = mdb_get(txn, dbi_, &key, &val);
        if (rc == MDB_NOTFOUND) continue;
        if (rc == 0) {
            uint64_t count = read_count(val);
            uint64_t next = count > 0 ? count - 1 : 0;
            MDB_val nv{sizeof(next), &next};
            rc = mdb_put(txn, dbi_, &key, &nv, 0);
        }
        if (rc != 0) {
            mdb_txn_abort(txn);
            error = lmdb_error("undo", rc);
            return false;
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_commit()", rc);
        return false;
    }
    return true;
}

long QuotaStore::prune(int64_t now, size_t max, bool& more, std::string& error) {
    more = false;
    if (env_ == nullptr) return 0;
    MDB_txn* txn = nullptr;
    int rc = begin(&txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_begin()", rc);
        return -1;
    }
    MDB_cursor* cur = nullptr;
    rc = mdb_cursor_open(txn, dbi_, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        error = lmdb_error("mdb_cursor_open()", rc);
        return -1;
    }
    long deleted = 0;
    MDB_val key, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    while (rc == 0) {
        if (key.mv_size != kRecordKeySize) {  // not ours; skip
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
            continue;
        }
        const auto* k = static_cast<const uint8_t*>(key.mv_data);
        uint64_t zone = get_be64(k);
        uint64_t end = get_be64(k + 8);
        if (static_cast<int64_t>(end) <= now) {
            if (static_cast<size_t>(deleted) >= max) {
                more = true;
                break;
            }
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) break;
            ++deleted;
            rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
            continue;
        }
        // A current period: skip the rest of its group (the next period or the next zone).
        uint8_t seek[kRecordKeySize];
        if (end == UINT64_MAX) {
            if (zone == UINT64_MAX) break;
            make_key(seek, zone + 1, 0, nullptr);
        } else {
            make_key(seek, zone, end + 1, nullptr);
        }
        MDB_val sk{sizeof(seek), seek};
        key = sk;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        error = lmdb_error("prune", rc);
        return -1;
    }
    if (deleted == 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_commit()", rc);
        return -1;
    }
    return deleted;
}

bool QuotaStore::sync(std::string& error) {
    if (env_ == nullptr) return true;
    int rc = mdb_env_sync(env_, 1);
    if (rc != 0) {
        error = lmdb_error("mdb_env_sync()", rc);
        return false;
    }
    return true;
}

int QuotaStore::reader_check() {
    int dead = 0;
    if (env_ != nullptr) mdb_reader_check(env_, &dead);
    return dead;
}

long QuotaStore::entries() {
    if (env_ == nullptr) return -1;
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(env_, 0) == 0) {
        rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    }
    if (rc != 0) return -1;
    MDB_stat st;
    rc = mdb_stat(txn, dbi_, &st);
    mdb_txn_abort(txn);
    return rc == 0 ? static_cast<long>(st.ms_entries) : -1;
}

}  // namespace tollgate::limit_quota
