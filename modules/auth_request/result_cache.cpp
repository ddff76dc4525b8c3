#include "modules/auth_request/result_cache.hpp"

#include <openssl/evp.h>

namespace tollgate::auth_request {

bool cache_digest(std::string_view uri, std::string_view key, Digest& out) {
    static EVP_MD_CTX* ctx = EVP_MD_CTX_new();  // one per worker, reused
    unsigned int n = 0;
    return ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
           EVP_DigestUpdate(ctx, uri.data(), uri.size()) == 1 &&
           EVP_DigestUpdate(ctx, "", 1) == 1 &&
           EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
           EVP_DigestFinal_ex(ctx, out.data(), &n) == 1 && n == out.size();
}

const CachedResult* ResultCache::find(const Digest& d, int64_t now_ms) {
    auto it = map_.find(d);
    if (it == map_.end()) return nullptr;
    if (it->second->expires_ms <= now_ms) {
        lru_.erase(it->second);
        map_.erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    return &it->second->result;
}

void ResultCache::insert(const Digest& d, CachedResult result, int64_t now_ms) {
    if (max_ == 0) return;
    auto expires = now_ms + static_cast<int64_t>(valid_ms_);
    if (auto it = map_.find(d); it != map_.end()) {
        it->second->result = std::move(result);
        it->second->expires_ms = expires;
        lru_.splice(lru_.begin(), lru_, it->second);
        return;
    }
    while (map_.size() >= max_) {
        map_.erase(lru_.back().digest);
        lru_.pop_back();
    }
    lru_.push_front(Entry{d, expires, std::move(result)});
    map_.emplace(d, lru_.begin());
}

}  // namespace tollgate::auth_request
