#include "core/http/request.hpp"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "core/generation.hpp"
#include "core/http/http_core_module.hpp"

namespace tollgate::http {

Request::Request(std::pmr::memory_resource* arena, const ConfigGeneration& generation,
                 const ConnectionInfo& conn, int64_t start_usec)
    : arena(arena),
      generation(generation),
      conn(conn),
      start_usec(start_usec),
      head(arena),
      out_headers(arena) {}

Request::~Request() {
    for (Cleanup* c = cleanups_; c != nullptr; c = c->next) c->fn(c->arg);
    if (body.kind == BodyKind::File && body.fd >= 0) ::close(body.fd);
}

BodyRead Request::read_body(Buffer& out, size_t max) {
    if (preread != nullptr && !preread->empty() && max > 0) {
        out.move_from(*preread, max);
        return BodyRead::Data;
    }
    return driver->read_body(*this, out, max);
}

void* Request::module_ctx(size_t module_index) const {
    return module_ctx_ != nullptr ? module_ctx_[module_index] : nullptr;
}

void Request::set_module_ctx(size_t module_index, void* ctx) {
    if (module_ctx_ == nullptr) {
        size_t n = compiled_modules().size();
        module_ctx_ = static_cast<void**>(arena->allocate(sizeof(void*) * n, alignof(void*)));
        for (size_t i = 0; i < n; ++i) module_ctx_[i] = nullptr;
    }
    module_ctx_[module_index] = ctx;
}

void Request::add_cleanup(void (*fn)(void*), void* arg) {
    void* p = arena->allocate(sizeof(Cleanup), alignof(Cleanup));
    cleanups_ = new (p) Cleanup{fn, arg, cleanups_};
}

const ModuleConf* Request::location_conf(size_t module_index) const {
    return location->confs[module_index].get();
}

const ModuleConf* Request::server_conf(size_t module_index) const {
    return server->srv_confs[module_index].get();
}

const VariableRegistry& Request::variables() const {
    return generation.variables;
}

std::string_view Request::copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = static_cast<char*>(arena->allocate(s.size(), 1));
    std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
}

Verdict Request::respond(int st, std::string_view type, std::string_view text) {
    if (body.kind == BodyKind::File && body.fd >= 0) ::close(body.fd);
    status = st;
    content_type = type;
    body = ResponseBody{};
    if (!text.empty()) {
        body.kind = BodyKind::Memory;
        body.memory = copy(text);
    }
    content_length = static_cast<int64_t>(text.size());
    return Verdict::Respond;
}

namespace {
void append_json_string(std::pmr::string& out, std::string_view s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}
}  // namespace

Verdict Request::respond_error(int st, std::string_view message) {
    // An error while serving an error page stands on its own (nginx resets err_status too).
    if (in_error_page) error_page_status = 0;
    if (location != nullptr && !in_error_page && !phase_cursor.collecting) {
        const auto& core = loc_conf<HttpCoreLocConf>(http_core_index());
        if (const ErrorPage* page = core.error_page_for(st)) {
            std::string_view target = page->uri.evaluate(*this);
            in_error_page = true;
            if (!target.empty() && target[0] != '/' && target[0] != '@') {
                // A URL: redirect the client (302 unless "=CODE" says otherwise).
                int code = page->override_status > 0 ? page->override_status : 302;
                return redirect(code, target);
            }
            error_page_status = page->override_status < 0 ? st : page->override_status;
            std::string_view path = target;
            std::string_view query;
            if (size_t q = target.find('?'); q != std::string_view::npos) {
                path = target.substr(0, q);
                query = target.substr(q + 1);
            }
            if (head.method != Method::Head) {  // as nginx: the error page is fetched with GET
                head.method = Method::Get;
                head.method_name = "GET";
            }
            return internal_redirect(path, query);
        }
    }
    std::pmr::string json(arena);
    json += "{\"error\":";
    append_json_string(json, error_code(st));
    json += ",\"message\":";
    append_json_string(json, message.empty() ? reason_phrase(st) : message);
    json += ",\"status\":" + std::to_string(st) + ",\"request_id\":";
    append_json_string(json, request_id());
    json += "}\n";
    return respond(st, "application/json", json);
}

Verdict Request::redirect(int st, std::string_view target) {
    std::pmr::string json(arena);
    json += "{\"status\":" + std::to_string(st) + ",\"location\":";
    append_json_string(json, target);
    json += "}\n";
    Verdict v = respond(st, "application/json", json);
    add_header("Location", copy(target));
    return v;
}

void Request::add_header(std::string_view name, std::string_view value) {
    out_headers.push_back({name, value});
}

Verdict Request::internal_redirect(std::string_view new_uri, std::string_view new_args) {
    if (++redirects > 10) {
        redirect_pending_ = false;
        named_target_ = {};
        in_error_page = true;  // no error_page for a loop
        return respond_error(500, "rewrite or internal redirection cycle");
    }
    redirect_pending_ = true;
    if (!new_uri.empty() && new_uri.front() == '@') {
        named_target_ = copy(new_uri);  // a named location keeps $uri and $args, as nginx
        return Verdict::Respond;
    }
    named_target_ = {};
    uri = copy(new_uri);
    args = copy(new_args);
    if (variable_cache_ != nullptr) {
        std::memset(static_cast<void*>(variable_cache_), 0,
                    sizeof(CachedValue) * variables().size());
    }
    return Verdict::Respond;
}

std::string_view Request::request_id() {
    if (request_id_.empty()) {
        thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
        char buf[33];
        std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(rng()),
                      static_cast<unsigned long long>(rng()));
        request_id_ = copy(std::string_view(buf, 32));
    }
    return request_id_;
}

Request::CachedValue* Request::variable_cache() {
    if (variable_cache_ == nullptr) {
        size_t n = variables().size();
        void* p = arena->allocate(sizeof(CachedValue) * n, alignof(CachedValue));
        variable_cache_ = static_cast<CachedValue*>(p);
        for (size_t i = 0; i < n; ++i) new (&variable_cache_[i]) CachedValue();
    }
    return variable_cache_;
}

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 101:
            return "Switching Protocols";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 206:
            return "Partial Content";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 417:
            return "Expectation Failed";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}

std::string_view error_code(int status) {
    switch (status) {
        case 400:
            return "bad_request";
        case 401:
            return "unauthorized";
        case 403:
            return "forbidden";
        case 404:
            return "not_found";
        case 405:
            return "method_not_allowed";
        case 408:
            return "request_timeout";
        case 411:
            return "length_required";
        case 413:
            return "payload_too_large";
        case 414:
            return "uri_too_long";
        case 416:
            return "range_not_satisfiable";
        case 429:
            return "rate_limited";
        case 431:
            return "header_fields_too_large";
        case 500:
            return "internal_error";
        case 501:
            return "not_implemented";
        case 502:
            return "bad_gateway";
        case 503:
            return "service_unavailable";
        case 504:
            return "gateway_timeout";
        case 505:
            return "http_version_not_supported";
        default:
            return status >= 500 ? "server_error" : "client_error";
    }
}

int64_t now_usec() {
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

}  // namespace tollgate::http
