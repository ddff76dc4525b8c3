// A small asynchronous HTTP/1.1 client for modules: one GET or POST with a few headers and a
// small body, over TCP or TLS, on the worker's EventLoop (auth_jwt_jwks_uri, auth_introspect).
// Every exchange is bounded: one total timeout (connect, TLS handshake, request and the whole
// response), a response body limit, and the head limits of ResponseHeadScanner. The response
// is parsed with the proxy's strict codec (response_head.hpp, chunked.hpp). Nothing blocks but
// resolve_fetch_host(), which is for config load in the master.
//
// Every request says "Connection: close": one connection per exchange, no pooling (these are
// rare control-plane calls, not the data path).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate {
class EventLoop;
class DirectiveContext;
}  // namespace tollgate

namespace tollgate::http {

// An absolute http or https URL split into what a fetch needs.
struct FetchUrl {
    bool https = false;
    std::string host;  // a name or an address literal, without IPv6 brackets
    uint16_t port = 0;
    std::string target;  // the request target: path and query ("/" when the URL has no path)
    // The Host header value: host, bracketed when IPv6, with ":port" when not the default.
    std::string authority() const;
};

// parse_fetch_url: `url` is "http://HOST[:PORT][/PATH][?QUERY]" or https (scheme
// case-insensitive; no userinfo, no fragment, no spaces or control bytes). Returns true and
// fills `out`, or false with `error` set.
bool parse_fetch_url(std::string_view url, FetchUrl& out, std::string& error);

// resolve_fetch_host: BLOCKING (getaddrinfo), for config load only. Fills `out` with the
// addresses of `url.host` at `url.port` (an address literal without a lookup). Returns false
// with `error` when there is none.
bool resolve_fetch_host(const FetchUrl& url, std::vector<sockaddr_storage>& out,
                        std::string& error);

// A TLS client context for fetches (an OpenSSL SSL_CTX), made at config load in the master and
// shared by the workers. Defined in worker/fetch_tls.cpp (core does not link OpenSSL).
class FetchTlsContext {
  public:
    ~FetchTlsContext();
    FetchTlsContext(const FetchTlsContext&) = delete;
    FetchTlsContext& operator=(const FetchTlsContext&) = delete;
    // make: `verify` checks the peer's certificate chain and its name against the URL's host;
    // `ca_file` (PEM) is the trust store, or empty for the system's default paths. Returns
    // nullptr with `error` (the OpenSSL reason) on failure.
    static std::shared_ptr<FetchTlsContext> make(bool verify, const std::string& ca_file,
                                                 std::string& error);
    void* ssl_ctx() const { return ctx_; }
    bool verify() const { return verify_; }

  private:
    FetchTlsContext() = default;
    void* ctx_ = nullptr;  // SSL_CTX*
    bool verify_ = false;
};

struct FetchRequest {
    std::string method = "GET";  // GET or POST
    FetchUrl url;
    std::vector<sockaddr_storage> addresses;  // tried in order while connecting fails
    std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
    std::string body;             // sent with Content-Length when not empty (or when POST)
    uint64_t timeout_ms = 10000;  // the whole exchange
    size_t max_body = 1 << 20;    // a longer response body is an error
    // https: the context to use (required; its verify() decides SNI and name checking too).
    std::shared_ptr<const FetchTlsContext> tls;
};

// Where the fetches of one directive go (auth_jwt_jwks_uri, auth_introspect): read at load.
struct FetchTarget {
    std::string url_text;  // as written, for logs
    FetchUrl url;
    std::vector<sockaddr_storage> addresses;     // resolved at load
    std::shared_ptr<const FetchTlsContext> tls;  // https only
    // A request to this target (url, addresses and tls set; the rest as FetchRequest's defaults).
    FetchRequest request() const;
};

// read_fetch_target: reads the target of a directive at load: argument 0 is the URL, and among
// the others "ssl_verify=on|off" (on) and "ssl_trusted_certificate=FILE" (the system's CAs),
// https only. `option(i)` sees every other argument first and returns true when it took it;
// anything else is an invalid value. Resolves the host (blocking; config load only). Throws
// the directive's FILE:LINE error on any failure. Defined in worker/fetch_target.cpp.
void read_fetch_target(DirectiveContext& ctx, FetchTarget& out,
                       const std::function<bool(size_t)>& option);

struct FetchResult {
    bool ok = false;    // a complete response was received (any status)
    std::string error;  // why not, when !ok ("timeout", "connect failed: ...", ...)
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
    std::string body;                                          // decoded (chunked removed)
    // The first header named `name` (lowercase), or nullptr.
    const std::string* header(std::string_view name) const;
};

// A running fetch. Destroying it cancels the exchange; the callback then never runs.
class Fetch {
  public:
    virtual ~Fetch() = default;
};

// fetch: starts `req` on `loop`. `done` runs exactly once, always later from the loop (never
// from inside this call), unless the handle is destroyed first; it may destroy the handle.
std::unique_ptr<Fetch> fetch(EventLoop& loop, FetchRequest req,
                             std::function<void(FetchResult&)> done);

}  // namespace tollgate::http
