// Where a Redis server is: the URL a config names it with, parsed and formatted.
//   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]      HOST: a name, an IPv4 or a [bracketed IPv6]
//   unix:/PATH[?db=N][&password=P][&username=U]     a Unix socket
// USER and PASSWORD are percent-decoded (so "@", ":" and "/" can be written %40, %3A, %2F).
// rediss:// (TLS) is refused: this build speaks plain TCP only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate {

struct RedisUrl {
    enum class Kind : uint8_t { Tcp, Unix };
    Kind kind = Kind::Tcp;
    std::string host;  // Tcp: without brackets
    uint16_t port = 6379;
    std::string path;  // Unix: absolute
    std::string username;
    std::string password;
    bool has_password = false;  // "redis://:@h" sends AUTH with an empty password
    int db = 0;                 // SELECT on connect when not 0

    // The URL back; with `redact` the password reads "***" (for logs). Parsing the unredacted
    // form gives an equal RedisUrl.
    std::string to_string(bool redact) const;
    bool operator==(const RedisUrl&) const = default;
};

// Parses `text` into `out`. Returns false with `error` set (a short reason, no file:line) on a
// malformed URL; `out` is then unspecified.
bool parse_redis_url(std::string_view text, RedisUrl& out, std::string& error);

}  // namespace tollgate
