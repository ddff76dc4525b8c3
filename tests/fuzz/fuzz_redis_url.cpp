// libFuzzer target for parse_redis_url.
//
// Input: the URL text. A URL that parses must format back (unredacted) to text that parses to
// an equal RedisUrl, and its fields must respect the grammar's bounds; the redacted form must
// hide the password.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/redis_url.hpp"

using tollgate::RedisUrl;

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    RedisUrl u;
    std::string error;
    if (!parse_redis_url(text, u, error)) {
        check(!error.empty());
        return 0;
    }
    check(error.empty());
    check(u.db >= 0);
    if (u.kind == RedisUrl::Kind::Tcp) {
        check(!u.host.empty() && u.port != 0 && u.path.empty());
    } else {
        check(u.path.size() >= 2 && u.path.front() == '/' && u.host.empty());
    }
    check(u.has_password || u.password.empty());
    check(u.password.find('\0') == std::string::npos);

    RedisUrl again;
    std::string error2;
    check(parse_redis_url(u.to_string(false), again, error2));
    check(again == u);
    const std::string redacted = u.to_string(true);
    if (u.has_password) check(redacted.find("***") != std::string::npos);
    return 0;
}
