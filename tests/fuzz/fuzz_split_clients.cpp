// Fuzzes split_clients' percent parser and table: no crash, totals never pass 100%, a table
// whose parts reach 100% (or end with "*") places every hash, and bounds only grow.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "modules/split_clients/split_clients.hpp"

using namespace tollgate::split_clients;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    SplitTable t;
    uint32_t total = 0;
    bool rest = false;
    // Parts separated by ';': "5%", "0.25%", "*".
    while (!in.empty()) {
        size_t semi = in.find(';');
        std::string_view part = in.substr(0, semi);
        in = semi == std::string_view::npos ? std::string_view() : in.substr(semi + 1);
        uint32_t h = 0;
        if (part != "*") {
            auto p = parse_percent(part);
            if (!p) continue;
            if (*p == 0 || *p > 10000) std::abort();
            h = *p;
        }
        std::string err = t.add(h, std::string(part));
        uint32_t next = h != 0 ? total + h : 10000;
        if (rest && h != 0 && err.empty()) std::abort();
        if (next > 10000 ? err.empty() : !err.empty()) std::abort();
        if (err.empty()) {
            total = next;
            rest = rest || h == 0;
        }
    }
    uint32_t last = 0;
    for (const auto& p : t.parts()) {
        if (p.rest) continue;
        if (p.bound < last) std::abort();
        last = p.bound;
    }
    uint32_t probe = murmur_hash2(std::string_view(reinterpret_cast<const char*>(data), size));
    if (rest && t.pick(probe) == nullptr) std::abort();
    return 0;
}
