// The core HTTP variables, as nginx names them.
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "core/http/http_config.hpp"
#include "core/http/request.hpp"
#include "core/variables.hpp"

namespace tollgate::http {

namespace {

using Out = std::string_view&;

bool eq_header_name(std::string_view header, std::string_view var_suffix) {
    // $http_user_agent matches "User-Agent": '_' stands for '-', any case.
    if (header.size() != var_suffix.size()) return false;
    for (size_t i = 0; i < header.size(); ++i) {
        char a = static_cast<char>(std::tolower(static_cast<unsigned char>(header[i])));
        char b = static_cast<char>(std::tolower(static_cast<unsigned char>(var_suffix[i])));
        if (a == '-') a = '_';
        if (a != b) return false;
    }
    return true;
}

std::string_view number(Request& r, uint64_t v) {
    char buf[24];
    int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
    return r.copy(std::string_view(buf, n));
}

bool v_http(Request& r, std::string_view name, uintptr_t, Out out) {
    // Repeated headers are joined with ", " ("; " for Cookie), as nginx does.
    const Header* first = nullptr;
    std::pmr::string joined(r.arena);
    int count = 0;
    for (const Header& h : r.head.headers) {
        if (!eq_header_name(h.name, name)) continue;
        if (count == 0) {
            first = &h;
        } else {
            if (count == 1) joined = first->value;
            joined += eq_header_name("cookie", name) ? "; " : ", ";
            joined += h.value;
        }
        ++count;
    }
    if (count == 0) return false;
    out = count == 1 ? first->value : r.copy(joined);
    return true;
}

bool v_sent_http(Request& r, std::string_view name, uintptr_t, Out out) {
    if (eq_header_name("content_type", name) && !r.content_type.empty()) {
        out = r.content_type;
        return true;
    }
    if (eq_header_name("content_length", name) && r.content_length >= 0) {
        out = number(r, static_cast<uint64_t>(r.content_length));
        return true;
    }
    for (const ResponseHeader& h : r.out_headers) {
        if (eq_header_name(h.name, name)) {
            out = h.value;
            return true;
        }
    }
    return false;
}

// Finds NAME in an "a=1&b=2" or "a=1; b=2" list.
bool find_pair(std::string_view list, std::string_view name, char sep, Out out) {
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(sep, pos);
        if (end == std::string_view::npos) end = list.size();
        std::string_view item = list.substr(pos, end - pos);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        size_t eq = item.find('=');
        std::string_view key = item.substr(0, eq);
        if (key.size() == name.size()) {
            bool same = true;
            for (size_t i = 0; i < key.size() && same; ++i) {
                same = std::tolower(static_cast<unsigned char>(key[i])) ==
                       std::tolower(static_cast<unsigned char>(name[i]));
            }
            if (same) {
                out = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
                return true;
            }
        }
        pos = end + 1;
    }
    return false;
}

bool v_arg(Request& r, std::string_view name, uintptr_t, Out out) {
    return find_pair(r.args, name, '&', out);
}

bool v_cookie(Request& r, std::string_view name, uintptr_t, Out out) {
    for (const Header& h : r.head.headers) {
        if (eq_header_name(h.name, "cookie") && find_pair(h.value, name, ';', out)) return true;
    }
    return false;
}

bool v_remote_addr(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.conn.remote_addr;
    return true;
}
bool v_remote_port(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.conn.remote_port);
    return true;
}
bool v_server_addr(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.conn.server_addr;
    return true;
}
bool v_server_port(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.conn.server_port);
    return true;
}
bool v_method(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.head.method_name;
    return true;
}
bool v_request_uri(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.head.target;
    return true;
}
bool v_uri(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.uri;
    return true;
}
bool v_args(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.args;
    return true;
}
bool v_is_args(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.args.empty() ? "" : "?";
    return true;
}
bool v_host(Request& r, std::string_view, uintptr_t, Out out) {
    // nginx: Host without port, lowercased; else the server's first name.
    std::string_view h = r.head.host;
    if (!h.empty() && h.front() != '[') {
        if (size_t colon = h.rfind(':'); colon != std::string_view::npos) h = h.substr(0, colon);
    } else if (!h.empty()) {
        if (size_t close = h.find(']'); close != std::string_view::npos) h = h.substr(0, close + 1);
    }
    if (h.empty()) h = r.conn.server_addr;
    std::pmr::string lower(h, r.arena);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out = r.copy(lower);
    return true;
}
bool v_hostname(Request& r, std::string_view, uintptr_t, Out out) {
    char buf[256];
    if (gethostname(buf, sizeof(buf)) != 0) return false;
    buf[sizeof(buf) - 1] = 0;
    out = r.copy(buf);
    return true;
}
bool v_server_name(Request& r, std::string_view, uintptr_t, Out out) {
    if (r.server == nullptr || r.server->exact_names.empty()) {
        out = "";
    } else {
        out = r.server->exact_names.front();
    }
    return true;
}
bool v_protocol(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.head.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    return true;
}
bool v_scheme(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.conn.tls != nullptr ? "https" : "http";
    return true;
}
bool v_https(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.conn.tls != nullptr ? "on" : "";
    return true;
}
bool v_request(Request& r, std::string_view, uintptr_t, Out out) {
    std::pmr::string line(r.arena);
    line += r.head.method_name;
    line += ' ';
    line += r.head.target;
    line += r.head.version_minor == 0 ? " HTTP/1.0" : " HTTP/1.1";
    out = r.copy(line);
    return true;
}
bool v_status(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, static_cast<uint64_t>(r.status));
    return true;
}
bool v_body_bytes_sent(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.body_bytes_sent);
    return true;
}
bool v_bytes_sent(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.bytes_sent);
    return true;
}
bool v_request_length(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.request_length);
    return true;
}
bool v_request_time(Request& r, std::string_view, uintptr_t, Out out) {
    int64_t end = r.end_usec != 0 ? r.end_usec : now_usec();
    int64_t ms = (end - r.start_usec) / 1000;
    if (ms < 0) ms = 0;
    char buf[32];
    int n = std::snprintf(buf, sizeof(buf), "%lld.%03lld", static_cast<long long>(ms / 1000),
                          static_cast<long long>(ms % 1000));
    out = r.copy(std::string_view(buf, n));
    return true;
}
bool v_request_id(Request& r, std::string_view, uintptr_t, Out out) {
    out = r.request_id();
    return true;
}
bool v_time_iso8601(Request& r, std::string_view, uintptr_t, Out out) {
    time_t t = static_cast<time_t>(r.start_usec / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
    // %z prints +0000; ISO 8601 as nginx prints it wants +00:00.
    if (n == 24) {
        std::string s(buf, n);
        s.insert(22, ":");
        out = r.copy(s);
    } else {
        out = r.copy(std::string_view(buf, n));
    }
    return true;
}
bool v_time_local(Request& r, std::string_view, uintptr_t, Out out) {
    time_t t = static_cast<time_t>(r.start_usec / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%d/%b/%Y:%H:%M:%S %z", &tm);
    out = r.copy(std::string_view(buf, n));
    return true;
}
bool v_msec(Request& r, std::string_view, uintptr_t, Out out) {
    int64_t us = now_usec();
    char buf[32];
    int n = std::snprintf(buf, sizeof(buf), "%lld.%03lld", static_cast<long long>(us / 1000000),
                          static_cast<long long>((us / 1000) % 1000));
    out = r.copy(std::string_view(buf, n));
    return true;
}
bool v_connection(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.conn.number);
    return true;
}
bool v_connection_requests(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, r.conn.requests);
    return true;
}
bool v_content_length(Request& r, std::string_view, uintptr_t, Out out) {
    const Header* h = r.head.find("content-length");
    if (h == nullptr) return false;
    out = h->value;
    return true;
}
bool v_content_type(Request& r, std::string_view, uintptr_t, Out out) {
    const Header* h = r.head.find("content-type");
    if (h == nullptr) return false;
    out = h->value;
    return true;
}
bool v_pid(Request& r, std::string_view, uintptr_t, Out out) {
    out = number(r, static_cast<uint64_t>(getpid()));
    return true;
}
bool v_version(Request& r, std::string_view, uintptr_t, Out out) {
    out = TOLLGATE_VERSION;
    return true;
}

}  // namespace

void register_http_variables(VariableRegistry& reg) {
    reg.add_prefix("http_", v_http);
    reg.add_prefix("sent_http_", v_sent_http);
    reg.add_prefix("arg_", v_arg);
    reg.add_prefix("cookie_", v_cookie);
    reg.add("remote_addr", v_remote_addr);
    reg.add("remote_port", v_remote_port);
    reg.add("server_addr", v_server_addr);
    reg.add("server_port", v_server_port);
    reg.add("request_method", v_method);
    reg.add("request_uri", v_request_uri);
    reg.add("uri", v_uri, 0, false);  // changes on internal redirect
    reg.add("document_uri", v_uri, 0, false);
    reg.add("args", v_args, 0, false);
    reg.add("query_string", v_args, 0, false);
    reg.add("is_args", v_is_args, 0, false);
    reg.add("host", v_host);
    reg.add("hostname", v_hostname);
    reg.add("server_name", v_server_name);
    reg.add("server_protocol", v_protocol);
    reg.add("scheme", v_scheme);
    reg.add("https", v_https);
    reg.add("request", v_request);
    reg.add("status", v_status, 0, false);
    reg.add("body_bytes_sent", v_body_bytes_sent, 0, false);
    reg.add("bytes_sent", v_bytes_sent, 0, false);
    reg.add("request_length", v_request_length, 0, false);
    reg.add("request_time", v_request_time, 0, false);
    reg.add("request_id", v_request_id);
    reg.add("time_iso8601", v_time_iso8601);
    reg.add("time_local", v_time_local);
    reg.add("msec", v_msec, 0, false);
    reg.add("connection", v_connection);
    reg.add("connection_requests", v_connection_requests);
    reg.add("content_length", v_content_length);
    reg.add("content_type", v_content_type);
    reg.add("pid", v_pid);
    reg.add("tollgate_version", v_version);
}

}  // namespace tollgate::http
