// libFuzzer target for the ssl_session_ticket_key file parser (modules/ssl/ticket_keys.cpp).
//
// Input: the file's bytes. Checks that only 48 or 80 bytes parse, that a parsed key gives back
// every input byte in nginx's layout, and that a refusal says why.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "modules/ssl/ticket_keys.hpp"

namespace {
void check(bool ok) {
    if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    tollgate::ssl::TicketKey k;
    std::string error;
    bool ok = tollgate::ssl::parse_ticket_key(in, k, error);
    check(ok == (size == 48 || size == 80));
    if (!ok) {
        check(!error.empty());
        return 0;
    }
    check(k.size == size);
    check(std::memcmp(k.name.data(), data, 16) == 0);
    if (size == 48) {
        check(std::memcmp(k.aes_key.data(), data + 16, 16) == 0);
        check(std::memcmp(k.hmac_key.data(), data + 32, 16) == 0);
    } else {
        check(std::memcmp(k.hmac_key.data(), data + 16, 32) == 0);
        check(std::memcmp(k.aes_key.data(), data + 48, 32) == 0);
    }
    return 0;
}
