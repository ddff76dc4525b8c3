// The HTTP configuration tree of one generation: listens, servers and locations with each
// module's merged config objects and the flattened phase handlers. Built by the http_core
// module at load; read-only afterwards.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/module.hpp"
#include "core/regex.hpp"
#include "core/variables.hpp"

namespace tollgate::http {

using ConfVector = std::vector<std::unique_ptr<ModuleConf>>;

// Lets maps keyed by std::string be searched with a std::string_view, without a copy.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct PhaseStep {
    PhaseHandler handler;
    const void* data;
};

struct HeaderFilterStep {
    HeaderFilter filter;
    const void* data;
};

struct Location {
    enum class Kind : uint8_t { Exact, PrefixNoRegex, Prefix, Regex, Named, ServerDefault };
    Kind kind = Kind::Prefix;
    std::string pattern;
    std::shared_ptr<const Regex> regex;
    ConfVector confs;  // every module's location-scope config, merged
    std::array<std::vector<PhaseStep>, kPhaseCount> phases;
    std::vector<HeaderFilterStep> header_filters;  // run in order before the head goes out
    std::string file;
    int line = 0;
};

struct Server {
    ConfVector srv_confs;
    std::unique_ptr<Location> defaults;  // server-level config, used when no location matches
    std::vector<std::unique_ptr<Location>> locations;  // config order
    // Lookup tables, built after parsing.
    StringMap<const Location*> exact;
    std::vector<const Location*> prefixes;  // longest pattern first
    std::vector<const Location*> regexes;   // config order
    StringMap<const Location*> named;
    // server_name entries: exact ("example.com"), leading wildcard ("*.example.com" stored as
    // ".example.com"), trailing wildcard ("www.*" stored as "www."), regex.
    std::vector<std::string> exact_names;
    std::vector<std::string> leading_wildcards;
    std::vector<std::string> trailing_wildcards;
    std::vector<std::shared_ptr<const Regex>> regex_names;
    std::string file;
    int line = 0;

    template <class T>
    const T& srv_conf(size_t module_index) const {
        return static_cast<const T&>(*srv_confs[module_index]);
    }
    // nginx's location order: "=" exact; else the longest prefix, final if "^~"; else the first
    // matching regex in config order; else that longest prefix; else the server defaults.
    const Location* find_location(std::string_view uri) const;
    bool matches_name(std::string_view host, int& rank, size_t& length) const;
};

struct ListenSpec {
    std::string text;  // canonical "addr:port", "[v6]:port"
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    int backlog = 511;
    bool default_server = false;
    bool ipv6only = true;
    bool ssl = false;  // `listen ... ssl`: connections start with a TLS handshake
    std::string file;  // where the listen directive is, for errors found later
    int line = 0;
};

// One listening address and the servers reachable through it (default first).
struct Listen {
    ListenSpec spec;
    std::vector<const Server*> servers;
    const Server* default_server = nullptr;
    // Filled at load by a TLS module (modules/ssl) when spec.ssl is set: the OpenSSL SSL_CTX*
    // (opaque here: core does not include OpenSSL) that accepted connections start their
    // handshake with, owned by that module's config, and how long a handshake may take. The
    // worker sets each connection's SSL app data (SSL_set_app_data) to this Listen, so the
    // module's SNI callback can choose the server by name.
    void* tls_ctx = nullptr;
    uint64_t tls_handshake_timeout_ms = 60000;
    // Chooses the server for a Host value (no port, any case). Falls back to the default.
    const Server* find_server(std::string_view host) const;
};

struct HttpConfig {
    ConfVector srv_confs;  // http-level server-scope configs: the servers' parent
    ConfVector loc_confs;  // http-level location-scope configs: the servers' defaults' parent
    std::vector<std::unique_ptr<Server>> servers;
    std::vector<Listen> listens;
};

// Parses "addr:port", "port", "*:port", "[::1]:port", "unix:" is not supported.
// Returns false and sets `error` on a bad address.
bool parse_listen_address(std::string_view text, ListenSpec& out, std::string& error);

}  // namespace tollgate::http
