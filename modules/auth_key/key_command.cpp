// tollgate key add --store FILE --consumer ID [--tier TIER] [NAME=VALUE ...]
// tollgate key revoke --store FILE KEY|HASH_PREFIX
// tollgate key list --store FILE
// FILE may be "lmdb:PATH" for an LMDB store (key_store_lmdb.hpp).
//
// `add` makes a key of 32 random bytes (RAND_bytes), "tg_" + base64url without padding, appends
// its record (SHA-256, consumer, tier, created=UNIXTIME, attributes) and prints the key once on
// stdout: it is stored nowhere. `revoke` marks one record revoked=UNIXTIME, found by the key
// itself or by a hex prefix of its hash (at least 8 digits, matching exactly one record). `list`
// shows hash prefixes, never keys. Every change is written to a temporary file in the same folder
// and renamed over the store (owner and mode kept), under an flock on FILE.lock so concurrent
// invocations do not lose each other's records; comments and other lines are kept as they are.
// The running server reads the store on reload (tollgate -s reload).
#include "modules/auth_key/key_command.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "modules/auth_key/key_store.hpp"
#include "modules/auth_key/key_store_lmdb.hpp"

namespace tollgate::auth_key {
namespace {

void help(std::FILE* out) {
    std::fprintf(out,
                 "Usage: tollgate key add --store FILE --consumer ID [--tier TIER] "
                 "[NAME=VALUE ...]\n"
                 "       tollgate key revoke --store FILE KEY|HASH_PREFIX\n"
                 "       tollgate key list --store FILE\n\n"
                 "FILE is a text store, or lmdb:PATH for an LMDB store.\n"
                 "add prints the new key once; it is stored only as its SHA-256.\n"
                 "Reload tollgate (tollgate -s reload) to apply changes.\n");
}

int error(const std::string& message) {
    std::fprintf(stderr, "tollgate: key: %s\n", message.c_str());
    return 1;
}

bool read_file(const std::string& path, std::string& out, bool& exists, std::string& err) {
    exists = false;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return true;
        err = "open() \"" + path + "\" failed (" + std::strerror(errno) + ")";
        return false;
    }
    exists = true;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            err = "read() \"" + path + "\" failed (" + std::strerror(errno) + ")";
            ::close(fd);
            return false;
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return true;
}

// Writes `text` to a temporary file beside `path` and renames it over `path`.
bool write_atomically(const std::string& path, const std::string& text, std::string& err) {
    struct stat st {};
    bool existed = ::stat(path.c_str(), &st) == 0;
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    existed ? (st.st_mode & 07777) : 0640);
    if (fd < 0) {
        err = "open() \"" + tmp + "\" failed (" + std::strerror(errno) + ")";
        return false;
    }
    if (existed) {
        (void)fchmod(fd, st.st_mode & 07777);
        if (fchown(fd, st.st_uid, st.st_gid) != 0) {
            // Not root: the file stays ours (the mode is kept).
        }
    }
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err = "write() \"" + tmp + "\" failed (" + std::strerror(errno) + ")";
            ::close(fd);
            ::unlink(tmp.c_str());
            return false;
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        err = "fsync() \"" + tmp + "\" failed (" + std::strerror(errno) + ")";
        ::unlink(tmp.c_str());
        return false;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        err = "rename() \"" + tmp + "\" failed (" + std::strerror(errno) + ")";
        ::unlink(tmp.c_str());
        return false;
    }
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
    return true;
}

bool sha256(std::string_view data, Digest& out) {
    unsigned int len = 0;
    return EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
           len == out.size();
}

std::string base64url(const unsigned char* data, size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<size_t>(len));
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    return out;
}

bool is_hex(std::string_view s) {
    for (char c : s) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
}

struct Args {
    std::string store;
    std::string consumer;
    std::string tier;
    std::vector<std::string> positional;
};

// Parses --store/--consumer/--tier (as "--opt VALUE" or "--opt=VALUE") and positional arguments.
bool parse_args(int argc, char** argv, Args& a, std::string& err) {
    for (int i = 2; i < argc; ++i) {
        std::string s = argv[i];
        std::string* target = nullptr;
        std::string name = s.substr(0, s.find('='));
        if (name == "--store") target = &a.store;
        if (name == "--consumer") target = &a.consumer;
        if (name == "--tier") target = &a.tier;
        if (target == nullptr) {
            if (s.rfind("--", 0) == 0) {
                err = "unknown option \"" + s + "\"";
                return false;
            }
            a.positional.push_back(s);
            continue;
        }
        if (s.size() > name.size()) {
            *target = s.substr(name.size() + 1);
        } else if (i + 1 < argc) {
            *target = argv[++i];
        } else {
            err = "option \"" + name + "\" needs a value";
            return false;
        }
    }
    if (a.store.empty()) {
        err = "--store FILE is required";
        return false;
    }
    return true;
}

// Holds an exclusive flock on FILE.lock for the object's life.
class StoreLock {
  public:
    explicit StoreLock(const std::string& store) {
        fd_ = ::open((store + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~StoreLock() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool ok() const { return fd_ >= 0; }

  private:
    int fd_ = -1;
};

// "lmdb:PATH" names an LMDB store (key_store_lmdb.hpp); sets `path` to the file either way.
bool is_lmdb(const std::string& store, std::string& path) {
    bool lmdb = store.rfind("lmdb:", 0) == 0;
    path = lmdb ? store.substr(5) : store;
    return lmdb;
}

bool load(const std::string& store_arg, bool must_exist, std::string& text, KeyStore& store,
          std::string& err) {
    std::string path;
    if (is_lmdb(store_arg, path)) {
        if (!lmdb_read_lines(path, must_exist, text, err)) return false;
    } else {
        bool exists = false;
        if (!read_file(path, text, exists, err)) return false;
        if (!exists && must_exist) {
            err = "open() \"" + path + "\" failed (" + std::strerror(ENOENT) + ")";
            return false;
        }
    }
    int line = 0;
    std::string why;
    if (!parse_key_store(text, store, line, why)) {
        err = path + ":" + std::to_string(line) + ": " + why;
        return false;
    }
    return true;
}

int cmd_add(const Args& a) {
    if (!valid_name(a.consumer)) {
        return error("--consumer ID is required: 1..128 of A-Z a-z 0-9 . _ : @ + -");
    }
    std::string tier = a.tier.empty() ? "default" : a.tier;
    if (!valid_name(tier)) return error("invalid --tier \"" + tier + "\"");
    std::string attrs;
    for (const std::string& p : a.positional) {
        size_t eq = p.find('=');
        std::string name = p.substr(0, eq);
        if (eq == std::string::npos || !valid_attr_name(name) || name == "revoked" ||
            name == "created" || !valid_attr_value(p.substr(eq + 1))) {
            return error("invalid attribute \"" + p +
                         "\": NAME=VALUE, NAME of a-z 0-9 _ (not id, tier, created, revoked), "
                         "VALUE of visible ASCII");
        }
        attrs += ' ';
        attrs += p;
    }
    std::string lock_path;
    is_lmdb(a.store, lock_path);
    StoreLock lock(lock_path);
    if (!lock.ok()) return error("cannot lock \"" + lock_path + ".lock\": " + std::strerror(errno));
    std::string text, err;
    KeyStore store;
    if (!load(a.store, false, text, store, err)) return error(err);

    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1) return error("RAND_bytes() failed");
    std::string key = "tg_" + base64url(raw, sizeof(raw));
    OPENSSL_cleanse(raw, sizeof(raw));
    Digest d;
    if (!sha256(key, d)) return error("SHA-256 failed");
    std::string hex = digest_hex(d);
    std::string line = hex + " " + a.consumer + " " + tier +
                       " created=" + std::to_string(static_cast<long long>(std::time(nullptr))) +
                       attrs;
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += line + "\n";
    KeyStore check;
    int bad_line = 0;
    if (!parse_key_store(text, check, bad_line, err)) {
        return error("the new record is invalid: " + err);
    }
    std::string path;
    bool ok = is_lmdb(a.store, path) ? lmdb_put_line(path, d, line, true, err)
                                     : write_atomically(path, text, err);
    if (!ok) return error(err);
    std::printf("%s\n", key.c_str());
    std::fflush(stdout);
    std::fprintf(stderr,
                 "tollgate: key: added key %.12s for consumer \"%s\" (tier %s) to %s; it is shown "
                 "only now. Reload tollgate to apply.\n",
                 hex.c_str(), a.consumer.c_str(), tier.c_str(), a.store.c_str());
    return 0;
}

int cmd_revoke(const Args& a) {
    if (a.positional.size() != 1) return error("revoke takes one KEY or HASH_PREFIX");
    std::string which = a.positional[0];
    std::string lock_path;
    is_lmdb(a.store, lock_path);
    StoreLock lock(lock_path);
    if (!lock.ok()) return error("cannot lock \"" + lock_path + ".lock\": " + std::strerror(errno));
    std::string text, err;
    KeyStore store;
    if (!load(a.store, true, text, store, err)) return error(err);

    std::vector<const KeyRecord*> found;
    if (which.size() >= 8 && which.size() <= 64 && is_hex(which)) {
        std::string prefix = which;
        for (char& c : prefix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const KeyRecord& r : store.records()) {
            if (digest_hex(r.hash).compare(0, prefix.size(), prefix) == 0) found.push_back(&r);
        }
    } else {
        Digest d;
        if (!sha256(which, d)) return error("SHA-256 failed");
        for (const KeyRecord& r : store.records()) {
            if (r.hash == d) found.push_back(&r);
        }
    }
    if (found.empty()) return error("no key matches (give the key or 8+ hex digits of its hash)");
    if (found.size() > 1) {
        return error("the hash prefix matches " + std::to_string(found.size()) +
                     " keys; give more digits");
    }
    const KeyRecord& rec = *found[0];
    std::string hex = digest_hex(rec.hash);
    if (rec.revoked) {
        std::fprintf(stderr, "tollgate: key: key %.12s of consumer \"%s\" is already revoked\n",
                     hex.c_str(), rec.consumer.c_str());
        return 0;
    }
    // Append " revoked=TIME" to the record's line (line numbers are 1-based).
    size_t pos = 0;
    for (int l = 1; l < rec.line; ++l) pos = text.find('\n', pos) + 1;
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos && text[end - 1] == '\r') --end;
    text.insert(end, " revoked=" + std::to_string(static_cast<long long>(std::time(nullptr))));
    KeyStore check;
    int bad_line = 0;
    if (!parse_key_store(text, check, bad_line, err)) {
        return error(a.store + ":" + std::to_string(bad_line) + ": " + err);
    }
    std::string path;
    bool ok;
    if (is_lmdb(a.store, path)) {
        size_t line_end = text.find('\n', pos);
        std::string line =
            text.substr(pos, line_end == std::string::npos ? std::string::npos : line_end - pos);
        ok = lmdb_put_line(path, rec.hash, line, false, err);
    } else {
        ok = write_atomically(path, text, err);
    }
    if (!ok) return error(err);
    std::fprintf(stderr,
                 "tollgate: key: revoked key %.12s of consumer \"%s\". Reload tollgate to "
                 "apply.\n",
                 hex.c_str(), rec.consumer.c_str());
    return 0;
}

int cmd_list(const Args& a) {
    std::string text, err;
    KeyStore store;
    if (!load(a.store, true, text, store, err)) return error(err);
    std::printf("%-12s  %-20s  %-10s  %-7s  %s\n", "HASH", "CONSUMER", "TIER", "STATUS",
                "ATTRIBUTES");
    for (const KeyRecord& r : store.records()) {
        std::string attrs;
        for (const auto& [n, v] : r.attrs) {
            if (!attrs.empty()) attrs += ' ';
            attrs += n + "=" + v;
        }
        std::printf("%.12s  %-20s  %-10s  %-7s  %s\n", digest_hex(r.hash).c_str(),
                    r.consumer.c_str(), r.tier.c_str(), r.revoked ? "revoked" : "active",
                    attrs.c_str());
    }
    return 0;
}

}  // namespace

int key_command(int argc, char** argv) {
    if (argc < 2) {
        help(stderr);
        return 1;
    }
    std::string sub = argv[1];
    if (sub == "-h" || sub == "--help" || sub == "help") {
        help(stdout);
        return 0;
    }
    if (sub != "add" && sub != "revoke" && sub != "list") {
        help(stderr);
        return error("unknown subcommand \"" + sub + "\"");
    }
    Args a;
    std::string err;
    if (!parse_args(argc, argv, a, err)) return error(err);
    if (sub == "add") return cmd_add(a);
    if (sub == "revoke") return cmd_revoke(a);
    if (!a.positional.empty()) return error("list takes no arguments");
    return cmd_list(a);
}

}  // namespace tollgate::auth_key
