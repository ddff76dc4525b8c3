// split_clients: nginx's hash-bucket split of clients into variants (canary and A/B). Pure
// functions and the immutable table, so the bucketing is unit-tested without a server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::split_clients {

// nginx's ngx_murmur_hash2: MurmurHash2, 32 bits, seed 0 (then mixed with the length), bytes
// read little-endian whatever the host.
uint32_t murmur_hash2(std::string_view data);

// Parses "5%", "0.5%", "12.25%" (at most two decimals) into hundredths of a percent (500, 50,
// 1225). Returns nothing for anything else, zero included (as nginx's ngx_atofp with 2).
std::optional<uint32_t> parse_percent(std::string_view text);

// The table of one split_clients block: a hash below `bound` picks that part's value; the "*"
// part (bound 0 here, `rest`) takes every hash the parts before it left.
class SplitTable {
  public:
    struct Part {
        uint32_t bound = 0;  // exclusive upper hash bound; unused for the "*" part
        bool rest = false;
        std::string value;
    };
    // Adds a part of `hundredths` of a percent, or the rest (`hundredths` = 0). Returns an error
    // text ("percent total is greater than 100%") or empty.
    std::string add(uint32_t hundredths, std::string value);
    // The value for a key's hash, or nullptr when the parts cover less than 100% and the hash
    // fell past them (the variable is then empty, as nginx).
    const std::string* pick(uint32_t hash) const;
    const std::string* pick_key(std::string_view key) const { return pick(murmur_hash2(key)); }
    const std::vector<Part>& parts() const { return parts_; }

  private:
    std::vector<Part> parts_;
    uint32_t sum_ = 0;   // hundredths of a percent so far (10000 after "*")
    uint32_t last_ = 0;  // the bound of the last percentage part
};

}  // namespace tollgate::split_clients
