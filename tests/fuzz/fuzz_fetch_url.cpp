// libFuzzer target for parse_fetch_url (core/http/fetch.hpp).
//
// Input: the URL text. A URL that parses has a host, a port and a target starting with '/',
// contains no bytes a request line or Host header could not carry, and rebuilt from its parts
// ("scheme://" + authority() + target) parses to the same parts.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/fetch.hpp"

using tollgate::http::FetchUrl;

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool clean(std::string_view s) {
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    FetchUrl u;
    std::string error;
    if (!tollgate::http::parse_fetch_url(text, u, error)) {
        check(!error.empty());
        return 0;
    }
    check(!u.host.empty() && u.port != 0);
    check(!u.target.empty() && u.target.front() == '/');
    check(clean(u.host) && clean(u.target));
    check(u.target.find('#') == std::string::npos);
    FetchUrl again;
    std::string error2;
    std::string rebuilt = (u.https ? "https://" : "http://") + u.authority() + u.target;
    check(tollgate::http::parse_fetch_url(rebuilt, again, error2));
    check(again.https == u.https && again.host == u.host && again.port == u.port &&
          again.target == u.target);
    return 0;
}
