// The API key store file (auth_key_store) and its parser. Pure: no OpenSSL, no I/O, so the
// parser is unit-tested and fuzzed on its own (tests/fuzz/fuzz_key_store.cpp).
//
// One record a line; fields separated by spaces or tabs; '#' starts a comment line; blank lines
// are skipped:
//   SHA256HEX CONSUMER TIER [NAME=VALUE ...]
//   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 alice gold team=infra
// SHA256HEX  the SHA-256 of the whole key as clients send it (64 hex digits, any case); the key
//            itself is never stored
// CONSUMER   $consumer_id, TIER $consumer_tier: 1..128 of [A-Za-z0-9._:@+-]
// NAME=VALUE free attributes, $consumer_NAME: NAME 1..64 of [a-z0-9_] (not "id" or "tier"),
//            VALUE 0..256 visible ASCII characters; at most 32 a record, each NAME once.
//            "revoked=TIME" marks a revoked key (it is kept so failures can say "revoked").
// A line is at most 4096 bytes; a hash appears once in a file.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::auth_key {

using Digest = std::array<uint8_t, 32>;

inline constexpr size_t kMaxLine = 4096;
inline constexpr size_t kMaxNameLen = 128;
inline constexpr size_t kMaxAttrNameLen = 64;
inline constexpr size_t kMaxAttrValueLen = 256;
inline constexpr size_t kMaxAttrs = 32;
inline constexpr size_t kMaxRecords = 1u << 20;

struct KeyRecord {
    Digest hash{};
    std::string consumer;
    std::string tier;
    std::vector<std::pair<std::string, std::string>> attrs;  // in file order, "revoked" included
    bool revoked = false;
    int line = 0;

    // name: an attribute name. Returns its value, or nullptr when the record has none.
    const std::string* attr(std::string_view name) const;
};

class KeyStore {
  public:
    // Records in file order.
    const std::vector<KeyRecord>& records() const { return records_; }
    // digest: a SHA-256. Returns the candidate records whose hash starts with the same 8 bytes
    // (the caller compares the whole digest in constant time). [first, last) into records().
    std::pair<const uint32_t*, const uint32_t*> candidates(const Digest& digest) const;

  private:
    friend bool parse_key_store(std::string_view, KeyStore&, int&, std::string&);
    std::vector<KeyRecord> records_;
    // First 8 bytes of the hash -> indices (almost always one).
    std::unordered_map<uint64_t, std::vector<uint32_t>> index_;
};

// text: the whole file. On success fills `out` and returns true; on failure returns false with
// `error_line` (1-based) and `error` (the reason, which never quotes a whole line).
bool parse_key_store(std::string_view text, KeyStore& out, int& error_line, std::string& error);

// One line's fields split by spaces/tabs (at most `max` fields are returned).
std::vector<std::string_view> split_fields(std::string_view line, size_t max = 64);

// hex: 64 hex digits. Fills `out`; false when it is not.
bool parse_digest_hex(std::string_view hex, Digest& out);
// The lowercase hex of `d`.
std::string digest_hex(const Digest& d);

// True for a valid CONSUMER / TIER token, attribute name and attribute value.
bool valid_name(std::string_view s);
bool valid_attr_name(std::string_view s);
bool valid_attr_value(std::string_view s);

}  // namespace tollgate::auth_key
