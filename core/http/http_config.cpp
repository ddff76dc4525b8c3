#include "core/http/http_config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "core/config/values.hpp"

namespace tollgate::http {

bool parse_listen_address(std::string_view text, ListenSpec& out, std::string& error) {
    std::string host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) {
            error = "invalid IPv6 address \"" + std::string(text) + "\"";
            return false;
        }
        host = std::string(text.substr(1, close - 1));
        std::string_view rest = text.substr(close + 1);
        if (rest.empty()) {
            port_text = "80";
        } else if (rest.front() == ':') {
            port_text = rest.substr(1);
        } else {
            error = "invalid host in \"" + std::string(text) + "\"";
            return false;
        }
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            if (text.find_first_not_of("0123456789") == std::string_view::npos) {
                host = "*";
                port_text = text;
            } else {
                host = std::string(text);
                port_text = "80";
            }
        } else {
            host = std::string(text.substr(0, colon));
            port_text = text.substr(colon + 1);
        }
    }
    auto port = conf::parse_int(port_text);
    if (!port || *port < 1 || *port > 65535) {
        error = "invalid port in \"" + std::string(text) + "\"";
        return false;
    }
    std::memset(&out.addr, 0, sizeof(out.addr));
    uint16_t p = htons(static_cast<uint16_t>(*port));
    if (host == "*" || host.empty() || host == "0.0.0.0") {
        auto* sin = reinterpret_cast<sockaddr_in*>(&out.addr);
        sin->sin_family = AF_INET;
        sin->sin_port = p;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        out.addr_len = sizeof(sockaddr_in);
        out.text = "0.0.0.0:" + std::to_string(*port);
        return true;
    }
    if (host == "localhost") host = "127.0.0.1";
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.addr);
    if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = p;
        out.addr_len = sizeof(sockaddr_in);
        out.text = host + ":" + std::to_string(*port);
        return true;
    }
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = p;
        out.addr_len = sizeof(sockaddr_in6);
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
        out.text = "[" + std::string(buf) + "]:" + std::to_string(*port);
        return true;
    }
    error = "host not found in \"" + std::string(text) + "\"";
    return false;
}

const Location* Server::find_location(std::string_view uri) const {
    if (auto it = exact.find(uri); it != exact.end()) return it->second;
    const Location* longest = nullptr;
    for (const Location* loc : prefixes) {  // longest first
        if (uri.substr(0, loc->pattern.size()) == loc->pattern) {
            longest = loc;
            break;
        }
    }
    if (longest != nullptr && longest->kind == Location::Kind::PrefixNoRegex) return longest;
    for (const Location* loc : regexes) {
        if (loc->regex->matches(uri)) return loc;
    }
    return longest != nullptr ? longest : defaults.get();
}

namespace {
bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
}  // namespace

// rank: 0 exact, 1 leading wildcard, 2 trailing wildcard, 3 regex; lower wins, then longer.
bool Server::matches_name(std::string_view host, int& rank, size_t& length) const {
    for (const auto& n : exact_names) {
        if (n == host) {
            rank = 0;
            length = n.size();
            return true;
        }
    }
    bool found = false;
    for (const auto& n : leading_wildcards) {  // ".example.com" matches "a.example.com"
        if (ends_with(host, n) && (!found || n.size() > length)) {
            rank = 1;
            length = n.size();
            found = true;
        }
    }
    if (found) return true;
    for (const auto& n : trailing_wildcards) {  // "www." matches "www.example.org"
        if (host.substr(0, n.size()) == n && (!found || n.size() > length)) {
            rank = 2;
            length = n.size();
            found = true;
        }
    }
    if (found) return true;
    for (const auto& re : regex_names) {
        if (re->matches(host)) {
            rank = 3;
            length = 0;
            return true;
        }
    }
    return false;
}

const Server* Listen::find_server(std::string_view host) const {
    if (servers.size() == 1 || host.empty()) return default_server;
    const Server* best = nullptr;
    int best_rank = 4;
    size_t best_len = 0;
    for (const Server* s : servers) {
        int rank;
        size_t len;
        if (!s->matches_name(host, rank, len)) continue;
        // Regexes are tried in config order: the first regex match wins among regexes.
        if (rank < best_rank || (rank == best_rank && rank < 3 && len > best_len)) {
            best = s;
            best_rank = rank;
            best_len = len;
        }
        if (rank == 0) break;
    }
    return best != nullptr ? best : default_server;
}

}  // namespace tollgate::http
