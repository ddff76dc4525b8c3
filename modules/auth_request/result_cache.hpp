// auth_request's result cache: outcomes of auth subrequests (2xx with its auth_request_set
// values, 401 with its WWW-Authenticate, 403) by the SHA-256 of the evaluated cache key, never
// the key itself. Bounded: each entry lives at most `valid_ms`; at most `max` entries, the least
// recently used evicted first. Per worker (each worker fills its own); not thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::auth_request {

using Digest = std::array<uint8_t, 32>;

// Sets `out` to the SHA-256 of `uri`, a NUL, then `key` (the same key for two auth URIs is two
// entries). Returns false when OpenSSL fails (out of memory): the result is then not cached.
bool cache_digest(std::string_view uri, std::string_view key, Digest& out);

struct CachedResult {
    int status = 0;                                        // 2xx, 401 or 403
    std::string www_authenticate;                          // a 401's challenge ("" when none)
    std::vector<std::pair<uint32_t, std::string>> values;  // variable index, value
};

class ResultCache {
  public:
    ResultCache(uint64_t valid_ms, size_t max) : valid_ms_(valid_ms), max_(max) {}
    // The unexpired result for `d` at `now_ms` (monotonic), or null; a hit becomes the most
    // recently used. The pointer is valid until the next insert.
    const CachedResult* find(const Digest& d, int64_t now_ms);
    // Stores `result` for `d` until now_ms + valid, evicting the least recently used entry
    // when full.
    void insert(const Digest& d, CachedResult result, int64_t now_ms);
    size_t size() const { return map_.size(); }

  private:
    struct Entry {
        Digest digest;
        int64_t expires_ms;
        CachedResult result;
    };
    struct DigestHash {
        size_t operator()(const Digest& d) const {
            size_t h;
            std::memcpy(&h, d.data(), sizeof(h));  // already uniformly distributed
            return h;
        }
    };
    uint64_t valid_ms_;
    size_t max_;
    std::list<Entry> lru_;  // most recent first
    std::unordered_map<Digest, std::list<Entry>::iterator, DigestHash> map_;
};

}  // namespace tollgate::auth_request
