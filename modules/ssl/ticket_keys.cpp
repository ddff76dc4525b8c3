#include "modules/ssl/ticket_keys.hpp"

#include <cstring>

namespace tollgate::ssl {

bool parse_ticket_key(std::string_view bytes, TicketKey& out, std::string& error) {
    if (bytes.size() != 48 && bytes.size() != 80) {
        error = "must be 48 or 80 bytes, not " + std::to_string(bytes.size());
        return false;
    }
    out = TicketKey{};
    out.size = bytes.size();
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::memcpy(out.name.data(), p, 16);
    if (out.size == 48) {
        std::memcpy(out.aes_key.data(), p + 16, 16);
        std::memcpy(out.hmac_key.data(), p + 32, 16);
    } else {
        std::memcpy(out.hmac_key.data(), p + 16, 32);
        std::memcpy(out.aes_key.data(), p + 48, 32);
    }
    return true;
}

void TicketKeyRing::rotate(const TicketKey& fresh, size_t keep) {
    keys_.insert(keys_.begin(), fresh);
    if (keys_.size() > keep) keys_.resize(keep);
}

}  // namespace tollgate::ssl
