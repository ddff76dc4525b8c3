#include "modules/auth_key/key_store_lmdb.hpp"

#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tollgate::auth_key {
namespace {

constexpr size_t kMapSize = size_t{1} << 30;  // address space only; the file grows as needed

std::string lmdb_error(const std::string& what, const std::string& path, int rc) {
    return what + " \"" + path + "\" failed (" + mdb_strerror(rc) + ")";
}

// An open environment, closed on destruction.
struct Env {
    MDB_env* env = nullptr;
    ~Env() {
        if (env != nullptr) mdb_env_close(env);
    }
    bool open(const std::string& path, bool read_only, std::string& error) {
        int rc = mdb_env_create(&env);
        if (rc == 0) rc = mdb_env_set_mapsize(env, kMapSize);
        unsigned flags = MDB_NOSUBDIR | (read_only ? MDB_RDONLY : 0u);
        if (rc == 0) rc = mdb_env_open(env, path.c_str(), flags, 0640);
        if (rc != 0) {
            error = lmdb_error("mdb_env_open()", path, rc);
            return false;
        }
        return true;
    }
};

}  // namespace

bool lmdb_read_lines(const std::string& path, bool must_exist, std::string& text,
                     std::string& error) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT && !must_exist) return true;
        error = "stat() \"" + path + "\" failed (" + std::strerror(errno) + ")";
        return false;
    }
    Env e;
    if (!e.open(path, true, error)) return false;
    MDB_txn* txn = nullptr;
    MDB_dbi dbi = 0;
    MDB_cursor* cur = nullptr;
    int rc = mdb_txn_begin(e.env, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    if (rc == 0) rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        if (txn != nullptr) mdb_txn_abort(txn);
        error = lmdb_error("reading", path, rc);
        return false;
    }
    MDB_val k, v;
    bool ok = true;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        std::string_view line(static_cast<const char*>(v.mv_data), v.mv_size);
        Digest d;
        // The entry's key must be the hash its line names, so a line cannot claim another key.
        if (k.mv_size != d.size() || line.size() < 64 || !parse_digest_hex(line.substr(0, 64), d) ||
            std::memcmp(d.data(), k.mv_data, d.size()) != 0 ||
            line.find('\n') != std::string_view::npos) {
            error = path + ": entry " +
                    std::to_string(std::count(text.begin(), text.end(), '\n') + 1) +
                    ": key and record do not match";
            ok = false;
            break;
        }
        text.append(line);
        text += '\n';
    }
    if (ok && rc != MDB_NOTFOUND) {
        error = lmdb_error("reading", path, rc);
        ok = false;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ok;
}

bool lmdb_put_line(const std::string& path, const Digest& hash, const std::string& line,
                   bool must_be_new, std::string& error) {
    Env e;
    if (!e.open(path, false, error)) return false;
    MDB_txn* txn = nullptr;
    MDB_dbi dbi = 0;
    int rc = mdb_txn_begin(e.env, nullptr, 0, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    MDB_val k{hash.size(), const_cast<uint8_t*>(hash.data())};
    MDB_val v{line.size(), const_cast<char*>(line.data())};
    if (rc == 0) rc = mdb_put(txn, dbi, &k, &v, must_be_new ? MDB_NOOVERWRITE : 0);
    if (rc != 0) {
        if (txn != nullptr) mdb_txn_abort(txn);
        error = lmdb_error("mdb_put()", path, rc);
        return false;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        error = lmdb_error("mdb_txn_commit()", path, rc);
        return false;
    }
    return true;
}

}  // namespace tollgate::auth_key
