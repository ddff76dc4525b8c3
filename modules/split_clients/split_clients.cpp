#include "modules/split_clients/split_clients.hpp"

namespace tollgate::split_clients {

uint32_t murmur_hash2(std::string_view data) {
    constexpr uint32_t m = 0x5bd1e995;
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    size_t len = data.size();
    uint32_t h = static_cast<uint32_t>(len);  // seed 0 xor len (nginx truncates len too)
    while (len >= 4) {
        uint32_t k =
            uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        len -= 4;
    }
    switch (len) {
        case 3:
            h ^= uint32_t{p[2]} << 16;
            [[fallthrough]];
        case 2:
            h ^= uint32_t{p[1]} << 8;
            [[fallthrough]];
        case 1:
            h ^= p[0];
            h *= m;
            break;
        default:
            break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

std::optional<uint32_t> parse_percent(std::string_view text) {
    if (text.size() < 2 || text.back() != '%') return std::nullopt;
    text.remove_suffix(1);
    uint64_t value = 0;
    int decimals = -1;  // -1: no point seen
    size_t digits = 0;
    for (char c : text) {
        if (c == '.') {
            if (decimals >= 0) return std::nullopt;
            decimals = 0;
            continue;
        }
        if (c < '0' || c > '9') return std::nullopt;
        if (decimals >= 0 && ++decimals > 2) return std::nullopt;
        value = value * 10 + static_cast<uint64_t>(c - '0');
        if (++digits > 9) return std::nullopt;
    }
    if (digits == 0) return std::nullopt;
    for (int d = decimals < 0 ? 0 : decimals; d < 2; ++d) value *= 10;
    if (value == 0 || value > 10000) return std::nullopt;
    return static_cast<uint32_t>(value);
}

std::string SplitTable::add(uint32_t hundredths, std::string value) {
    uint32_t sum = hundredths != 0 ? sum_ + hundredths : 10000;
    if (sum > 10000) {
        return "percent total is greater than 100%";
    }
    sum_ = sum;
    Part p;
    p.value = std::move(value);
    if (hundredths != 0) {
        // As nginx: each part's share of 0xffffffff, rounded down, accumulated.
        last_ += static_cast<uint32_t>(uint64_t{hundredths} * 0xffffffffULL / 10000);
        p.bound = last_;
    } else {
        p.rest = true;
    }
    parts_.push_back(std::move(p));
    return {};
}

const std::string* SplitTable::pick(uint32_t hash) const {
    for (const Part& p : parts_) {
        if (p.rest || hash < p.bound) return &p.value;
    }
    return nullptr;
}

}  // namespace tollgate::split_clients
