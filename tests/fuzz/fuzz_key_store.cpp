// libFuzzer target for the API key store parser (modules/auth_key/key_store.cpp).
//
// Input: a store file's bytes. Checks that a refusal names a line inside the input with a short
// reason, and that an accepted store holds only valid records, each findable by its hash, whose
// fields re-serialized parse again to the same store.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "modules/auth_key/key_store.hpp"

namespace {
void check(bool ok) {
    if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace tollgate::auth_key;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    KeyStore store;
    int line = 0;
    std::string error;
    if (!parse_key_store(in, store, line, error)) {
        check(!error.empty() && error.size() < 200);
        size_t lines = 1;
        for (char c : in) lines += c == '\n';
        check(line >= 1 && static_cast<size_t>(line) <= lines);
        return 0;
    }
    std::string again;
    for (const KeyRecord& r : store.records()) {
        check(valid_name(r.consumer) && valid_name(r.tier));
        check(r.attrs.size() <= kMaxAttrs);
        check(r.revoked == (r.attr("revoked") != nullptr));
        auto [first, last] = store.candidates(r.hash);
        bool found = false;
        for (const uint32_t* p = first; p != last; ++p) found |= &store.records()[*p] == &r;
        check(found);
        again += digest_hex(r.hash) + " " + r.consumer + " " + r.tier;
        for (const auto& [n, v] : r.attrs) {
            check(valid_attr_name(n) && valid_attr_value(v));
            again += " " + n + "=" + v;
        }
        again += "\n";
    }
    KeyStore store2;
    check(parse_key_store(again, store2, line, error));
    check(store2.records().size() == store.records().size());
    for (size_t i = 0; i < store.records().size(); ++i) {
        check(store2.records()[i].hash == store.records()[i].hash);
        check(store2.records()[i].attrs == store.records()[i].attrs);
    }
    return 0;
}
