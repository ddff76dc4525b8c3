// One HTTP request as phase handlers and variables see it. The worker owns the I/O; a handler
// reads the parsed head and sets the response here. Everything per request lives in `arena`.
#pragma once

#include <cstdint>
#include <memory_resource>
#include <string>
#include <string_view>

#include "core/buffer.hpp"
#include "core/http/request_head.hpp"
#include "core/module.hpp"
#include "core/stream.hpp"

namespace tollgate {
struct ConfigGeneration;
class VariableRegistry;
}  // namespace tollgate

namespace tollgate::http {

struct HttpConfig;
struct Server;
struct Location;

// Facts about the client connection, set by the worker.
struct ConnectionInfo {
    std::string_view remote_addr;  // text form, no port
    uint16_t remote_port = 0;
    std::string_view server_addr;
    uint16_t server_port = 0;
    uint64_t number = 0;    // $connection
    uint32_t requests = 0;  // $connection_requests: requests so far on this connection
    // The connection's OpenSSL SSL* when it is TLS (opaque here: core does not include OpenSSL);
    // modules/ssl reads it for $ssl_* variables. nullptr on plain TCP.
    void* tls = nullptr;
};

struct ResponseHeader {
    std::string_view name;
    std::string_view value;
};

enum class BodyKind : uint8_t { None, Memory, File, Stream };

// A response body produced over time (an upstream's). The worker pulls when the client can take
// more; a source that had nothing (Wait) calls Request::body_ready() once it has.
class BodySource {
  public:
    enum class Pull : uint8_t { Data, Wait, Done, Error };
    // Moves at most `max` bytes into `out`. Error: the body cannot be completed (the client
    // connection is then closed, so a truncated body is never mistaken for a whole one).
    virtual Pull pull(Buffer& out, size_t max) = 0;

  protected:
    ~BodySource() = default;
};

// Work a handler keeps running for a request (an upstream exchange). While attached, the worker
// tells it when more request body arrived, and aborts it if the request ends early (client
// gone, timeout, fast shutdown). The handler detaches it when done.
class RequestTask {
  public:
    virtual void abort() = 0;
    virtual void on_body_available() {}

  protected:
    ~RequestTask() = default;
};

// What a 101 (Switching Protocols) response hands the client connection to: once the worker
// has sent the response head, the raw client stream belongs to the tunnel until it calls
// Request::end_tunnel().
class Tunnel {
  public:
    virtual void on_client_stream(Stream& client) = 0;

  protected:
    ~Tunnel() = default;
};

// The result of reading the request body.
enum class BodyRead : uint8_t { Data, Wait, Done, Error };

struct ResponseBody {
    BodyKind kind = BodyKind::None;
    std::string_view memory;  // lives in the arena or static storage
    int fd = -1;              // owned by the request once set; the worker closes it
    uint64_t offset = 0;
    uint64_t length = 0;
    BodySource* source = nullptr;  // BodyKind::Stream
};

class Request;

// The worker side of a request: what a suspended handler's resume() reaches.
class RequestDriver {
  public:
    virtual void resume(Request& r, Verdict v) = 0;
    virtual BodyRead read_body(Request& r, Buffer& out, size_t max) = 0;
    virtual void body_ready(Request& r) = 0;
    virtual void end_tunnel(Request& r) = 0;

  protected:
    ~RequestDriver() = default;
};

class Request {
  public:
    Request(std::pmr::memory_resource* arena, const ConfigGeneration& generation,
            const ConnectionInfo& conn, int64_t start_usec);
    ~Request();
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    std::pmr::memory_resource* const arena;
    const ConfigGeneration& generation;
    const ConnectionInfo& conn;
    const int64_t start_usec;  // wall clock, microseconds

    const Server* server = nullptr;
    const Location* location = nullptr;
    RequestHead head;
    std::string_view uri;          // normalized, decoded path ($uri); changes on internal redirect
    std::string_view args;         // query string ($args)
    uint64_t request_length = 0;   // bytes of head and body read
    uint64_t body_bytes_read = 0;  // request body bytes

    // The response, set by the handler that answers.
    int status = 0;
    std::pmr::vector<ResponseHeader> out_headers;
    std::string_view content_type;
    int64_t content_length = -1;  // -1: unknown (chunked for 1.1, close-delimited for 1.0)
    int64_t last_modified = -1;   // seconds since the epoch, -1: none
    ResponseBody body;
    bool keep_alive = true;    // the worker may turn it off; a handler may too
    bool header_only = false;  // HEAD, or a status that has no body
    // Set by the worker as the response goes out.
    uint64_t bytes_sent = 0;
    uint64_t body_bytes_sent = 0;
    int64_t end_usec = 0;

    // The module's location config for this request's location, O(1) by module index.
    template <class T>
    const T& loc_conf(size_t module_index) const {
        return static_cast<const T&>(*location_conf(module_index));
    }
    template <class T>
    const T& srv_conf(size_t module_index) const {
        return static_cast<const T&>(*server_conf(module_index));
    }
    const ModuleConf* location_conf(size_t module_index) const;
    const ModuleConf* server_conf(size_t module_index) const;

    // Copies `s` into the arena.
    std::string_view copy(std::string_view s);
    // Sets a response with a body from memory (copied into the arena). Returns Verdict::Respond.
    Verdict respond(int status, std::string_view content_type, std::string_view body);
    // Sets an error response: error_page if one matches, else the standard JSON body
    // {"error":CODE,"message":MESSAGE,"status":N,"request_id":ID}. Returns Verdict::Respond.
    Verdict respond_error(int status, std::string_view message = {});
    // Sets a redirect (301, 302, 303, 307, 308) to `location`. Returns Verdict::Respond.
    Verdict redirect(int status, std::string_view location);
    void add_header(std::string_view name, std::string_view value);
    // Moves the request to `uri` ("/path" or "@named"): the location is matched again and the
    // phases rerun from Rewrite. Returns Verdict::Respond; on a redirect loop (more than 10),
    // responds 500 instead.
    Verdict internal_redirect(std::string_view uri, std::string_view args);
    // True while an internal redirect waits to be carried out by the runner.
    bool redirect_pending() const { return redirect_pending_; }
    // The "@name" of a pending redirect to a named location, else empty.
    std::string_view named_target() const { return named_target_; }
    void clear_redirect() {
        redirect_pending_ = false;
        named_target_ = {};
    }
    // Continues a request whose handler returned Verdict::Suspend: `v` is what that handler
    // would have returned. Called exactly once per Suspend, from the event loop.
    void resume(Verdict v) { driver->resume(*this, v); }
    RequestDriver* driver = nullptr;

    // True when the request carries a body (Content-Length > 0 or chunked).
    bool has_body() const {
        return head.framing == BodyFraming::Chunked ||
               (head.framing == BodyFraming::ContentLength && head.content_length > 0);
    }
    // Moves decoded request body bytes (at most `max`) into `out`. Wait: none yet (the task's
    // on_body_available() follows). Done: the body is complete. Error: malformed, too large or
    // cut short (body_error_status is then 400 or 413, or 0 when the client went away). Sends
    // "100 Continue" on the first read when the client asked for it.
    // Bytes an earlier phase pre-read (preread_body(), core/http/body_preread.hpp) come first,
    // unchanged, so the content handler sees the whole body either way.
    BodyRead read_body(Buffer& out, size_t max);
    int body_error_status = 0;
    // The body bytes pre-read and not yet handed to read_body() (null when none were read).
    Buffer* preread = nullptr;
    // True while a phase reads the body ahead: the worker then bounds each wait for more of it
    // by client_body_timeout (and closes the connection when it passes).
    bool preread_active = false;
    // A Stream body source that returned Wait has more now.
    void body_ready() { driver->body_ready(*this); }
    RequestTask* task = nullptr;
    // Set with a 101 response: takes over the client connection after the head is sent.
    Tunnel* tunnel = nullptr;
    // The tunnel is over: the worker closes the client connection (and logs the request).
    void end_tunnel() { driver->end_tunnel(*this); }

    // A module's per-request state (its NameRequestCtx), by module index; null until set.
    void* module_ctx(size_t module_index) const;
    void set_module_ctx(size_t module_index, void* ctx);
    // Runs `fn(arg)` when the request is destroyed, last registered first (objects a handler
    // placed in the arena that own resources).
    void add_cleanup(void (*fn)(void*), void* arg);

    // The request id: 32 hex digits, made on first use.
    std::string_view request_id();

    // Per-request variable cache, indexed as the registry; allocated on first use.
    struct CachedValue {
        uint8_t state = 0;  // 0 unknown, 1 found, 2 not found
        std::string_view value;
    };
    CachedValue* variable_cache();
    const VariableRegistry& variables() const;

    // The phase runner's state (core/http/phases.cpp): where a suspended handler resumes, and
    // what `satisfy any` keeps while the Access checks run. While `collecting`, respond_error()
    // does not apply error_page (the runner applies it to the denial it finally sends).
    struct PhaseCursor {
        size_t phase = 0;
        size_t step = 0;
        bool collecting = false;
        void* denial = nullptr;  // in the arena
    };
    PhaseCursor phase_cursor;
    // Set for a subrequest (core/http/subrequest.hpp): it skips the Access phase. An awaited
    // one has its own path (head.path is its URI, with no query) but the parent's target.
    enum class SubrequestKind : uint8_t { None, Detached, Awaited };
    SubrequestKind subrequest = SubrequestKind::None;
    // Values of variables modules set at runtime (VariableRegistry::add_settable, e.g.
    // auth_request_set), indexed as the registry; null until the first is set.
    std::string_view* set_values = nullptr;

    // Set when error_page sends the request elsewhere: the status to answer with there.
    int error_page_status = 0;
    bool in_error_page = false;
    uint8_t redirects = 0;

  private:
    bool redirect_pending_ = false;
    std::string_view named_target_;
    std::string_view request_id_;
    void** module_ctx_ = nullptr;
    struct Cleanup {
        void (*fn)(void*);
        void* arg;
        Cleanup* next;
    };
    Cleanup* cleanups_ = nullptr;
    CachedValue* variable_cache_ = nullptr;
};

// The standard reason phrase ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status);
// The machine-readable error code used in JSON error bodies ("not_found").
std::string_view error_code(int status);
// Microseconds since the epoch (wall clock).
int64_t now_usec();

}  // namespace tollgate::http
