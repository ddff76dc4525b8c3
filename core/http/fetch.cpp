#include "core/http/fetch.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cctype>
#include <chrono>
#include <cstring>

#include "core/event_loop.hpp"
#include "core/http/chunked.hpp"
#include "core/http/http_token.hpp"
#include "core/http/response_head.hpp"
#include "core/stream.hpp"

namespace tollgate::http {

// ---- URLs -------------------------------------------------------------------------------------

std::string FetchUrl::authority() const {
    std::string a = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (port != (https ? 443 : 80)) a += ":" + std::to_string(port);
    return a;
}

bool parse_fetch_url(std::string_view url, FetchUrl& out, std::string& error) {
    out = FetchUrl();
    for (char c : url) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
            error = "a URL may not contain spaces or control characters";
            return false;
        }
    }
    size_t colon = url.find("://");
    if (colon == std::string_view::npos) {
        error = "the URL must start with http:// or https://";
        return false;
    }
    std::string_view scheme = url.substr(0, colon);
    if (token::iequals(scheme, "http")) {
        out.https = false;
    } else if (token::iequals(scheme, "https")) {
        out.https = true;
    } else {
        error = "the URL must start with http:// or https://";
        return false;
    }
    std::string_view rest = url.substr(colon + 3);
    if (rest.find('#') != std::string_view::npos) {
        error = "a URL with a fragment";
        return false;
    }
    size_t slash = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, slash);
    std::string_view target = slash == std::string_view::npos ? "" : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos) {
        error = "credentials in the URL are not supported";
        return false;
    }
    std::string_view host = authority;
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "unterminated IPv6 address";
            return false;
        }
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                error = "invalid host";
                return false;
            }
            port = after.substr(1);
            if (port.empty()) {
                error = "invalid port";
                return false;
            }
        }
        in6_addr a6;
        if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) {
            error = "invalid IPv6 address";
            return false;
        }
    } else {
        size_t c = authority.rfind(':');
        if (c != std::string_view::npos) {
            host = authority.substr(0, c);
            port = authority.substr(c + 1);
            if (port.empty()) {
                error = "invalid port";
                return false;
            }
        }
        for (char ch : host) {
            if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' ||
                  ch == '_')) {
                error = "invalid host";
                return false;
            }
        }
    }
    if (host.empty()) {
        error = "no host in the URL";
        return false;
    }
    uint32_t p = out.https ? 443 : 80;
    if (!port.empty()) {
        if (port.size() > 5) {
            error = "invalid port";
            return false;
        }
        p = 0;
        for (char ch : port) {
            if (ch < '0' || ch > '9') {
                error = "invalid port";
                return false;
            }
            p = p * 10 + static_cast<uint32_t>(ch - '0');
        }
        if (p == 0 || p > 65535) {
            error = "invalid port";
            return false;
        }
    }
    out.host = std::string(host);
    out.port = static_cast<uint16_t>(p);
    if (target.empty()) {
        out.target = "/";
    } else if (target.front() == '?') {
        out.target = "/" + std::string(target);
    } else {
        out.target = std::string(target);
    }
    return true;
}

bool resolve_fetch_host(const FetchUrl& url, std::vector<sockaddr_storage>& out,
                        std::string& error) {
    out.clear();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string port = std::to_string(url.port);
    int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
        error = "host not found in \"" + url.host + "\": " + gai_strerror(rc);
        return false;
    }
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
        sockaddr_storage ss{};
        std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        out.push_back(ss);
    }
    freeaddrinfo(res);
    if (out.empty()) {
        error = "no address for \"" + url.host + "\"";
        return false;
    }
    return true;
}

const std::string* FetchResult::header(std::string_view name) const {
    for (const auto& h : headers) {
        if (h.first == name) return &h.second;
    }
    return nullptr;
}

// ---- the exchange -----------------------------------------------------------------------------

namespace {

constexpr size_t kReadChunk = 16384;

socklen_t addr_len(const sockaddr_storage& ss) {
    return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

uint64_t now_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

class FetchImpl final : public Fetch, public StreamHandler {
  public:
    FetchImpl(EventLoop& loop, FetchRequest req, std::function<void(FetchResult&)> done)
        : loop_(loop), req_(std::move(req)), done_(std::move(done)), scanner_(limits_) {
        limits_.max_head = 65536;
        scanner_ = ResponseHeadScanner(limits_);
        timer_ = loop_.make_timer([this] { on_timer(); });
        deadline_ = now_ms() + req_.timeout_ms;
        std::string why = build_request();
        if (!why.empty()) {
            defer_failure(why);
            return;
        }
        timer_->start(req_.timeout_ms);
        connect_next();
    }

  private:
    enum class State : uint8_t { Connecting, Head, Body, Done };

    std::string build_request() {
        if (req_.method != "GET" && req_.method != "POST") return "unsupported method";
        if (req_.url.https && (!req_.tls || req_.tls->ssl_ctx() == nullptr)) {
            return "no TLS context for an https URL";
        }
        if (req_.addresses.empty()) return "no address to connect to";
        std::string& o = request_;
        o.reserve(256 + req_.body.size());
        o += req_.method;
        o += ' ';
        o += req_.url.target;
        o += " HTTP/1.1\r\nHost: ";
        o += req_.url.authority();
        o += "\r\nUser-Agent: tollgate/" TOLLGATE_VERSION "\r\nConnection: close\r\n";
        for (const auto& [name, value] : req_.headers) {
            if (name.empty() || !token::is_token(name)) return "invalid request header name";
            for (char c : value) {
                if (c == '\r' || c == '\n' || c == '\0') return "invalid request header value";
            }
            o += name;
            o += ": ";
            o += value;
            o += "\r\n";
        }
        if (!req_.body.empty() || req_.method == "POST") {
            o += "Content-Length: " + std::to_string(req_.body.size()) + "\r\n";
        }
        o += "\r\n";
        o += req_.body;
        return {};
    }

    // A failure found before anything started is reported from the loop, never from fetch().
    void defer_failure(const std::string& why) {
        deferred_ = why;
        timer_->start(0);
    }

    void connect_next() {
        while (next_addr_ < req_.addresses.size()) {
            const sockaddr_storage& ss = req_.addresses[next_addr_++];
            uint64_t now = now_ms();
            uint64_t left = deadline_ > now ? deadline_ - now : 1;
            const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
            state_ = State::Connecting;
            if (req_.url.https) {
                TlsClientOptions o;
                o.ssl_ctx = req_.tls->ssl_ctx();
                o.server_name = req_.url.host;
                if (req_.tls->verify()) o.verify_name = req_.url.host;
                o.reuse_session = false;
                stream_ = loop_.connect_tls(sa, addr_len(ss), *this, left, o);
            } else {
                stream_ = loop_.connect(sa, addr_len(ss), *this, left);
            }
            if (stream_) return;
            last_error_ = "socket() failed";
        }
        defer_failure(last_error_.empty() ? "connect failed" : last_error_);
    }

    void on_connected() override {
        state_ = State::Head;
        stream_->set_read_limit(kReadChunk);
        stream_->output().append(request_);
        stream_->resume_reading();
        uint64_t now = now_ms();
        if (!stream_->flush(deadline_ > now ? deadline_ - now : 1)) fail("write failed");
    }

    void on_drained() override {}

    void on_readable() override {
        Buffer& in = stream_->input();
        while (!in.empty()) {
            std::string_view f = in.front();
            pending_.append(f);
            in.drain(f.size());
        }
        if (!process()) return;  // finished (and perhaps destroyed)
        if (pending_.size() > limits_.max_head + req_.max_body + 65536) {
            fail("response too large");
            return;
        }
        stream_->resume_reading();
    }

    void on_stream_event(StreamEvent e) override {
        switch (e) {
            case StreamEvent::Eof:
                eof_ = true;
                if (!process()) return;
                fail(state_ == State::Head ? "connection closed before the response head"
                                           : "connection closed before the end of the body");
                return;
            case StreamEvent::Error:
                if (state_ == State::Connecting) {
                    last_error_ =
                        req_.url.https ? "connect or TLS handshake failed" : "connect failed";
                    stream_.reset();
                    connect_next();
                    return;
                }
                fail("connection error");
                return;
            case StreamEvent::ConnectTimeout:
            case StreamEvent::WriteTimeout:
                fail("timeout");
                return;
        }
    }

    void on_timer() {
        if (!deferred_.empty()) {
            fail(deferred_);
            return;
        }
        fail("timeout");
    }

    // Consumes pending_. Returns false once the exchange finished (the object may be gone).
    bool process() {
        while (true) {
            if (state_ == State::Head) {
                ResponseHeadScanner::Status st = scanner_.scan(pending_);
                if (st == ResponseHeadScanner::Status::NeedMore) return true;
                if (st == ResponseHeadScanner::Status::Error) {
                    fail("invalid response head");
                    return false;
                }
                size_t len = scanner_.head_length();
                ResponseHead head;
                if (!parse_response_head(std::string_view(pending_).substr(0, len), limits_, false,
                                         head)) {
                    fail("invalid response head");
                    return false;
                }
                if (head.informational() || head.status == 101) {
                    if (head.status == 101) {
                        fail("unexpected 101 response");
                        return false;
                    }
                    pending_.erase(0, len);
                    scanner_.reset();
                    continue;
                }
                result_.status = head.status;
                for (const Header& h : head.headers) {
                    std::string name(h.name);
                    for (char& c : name) {
                        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
                    }
                    result_.headers.emplace_back(std::move(name), std::string(h.value));
                }
                framing_ = head.framing;
                content_length_ = head.content_length;
                pending_.erase(0, len);
                state_ = State::Body;
                if (framing_ == ResponseFraming::None) {
                    succeed();
                    return false;
                }
                if (framing_ == ResponseFraming::ContentLength && content_length_ > req_.max_body) {
                    fail("response body too large");
                    return false;
                }
                continue;
            }
            // State::Body
            switch (framing_) {
                case ResponseFraming::ContentLength: {
                    size_t want = static_cast<size_t>(content_length_ - result_.body.size());
                    size_t n = std::min(want, pending_.size());
                    result_.body.append(pending_, 0, n);
                    pending_.erase(0, n);
                    if (result_.body.size() == content_length_) {
                        succeed();
                        return false;
                    }
                    return true;
                }
                case ResponseFraming::Chunked: {
                    std::string_view in = pending_;
                    size_t used = 0;
                    while (true) {
                        ChunkedDecoder::Step s = chunked_.next(in.substr(used));
                        if (s.status == ChunkedDecoder::Status::Error) {
                            fail("invalid chunked body");
                            return false;
                        }
                        used += s.framing;
                        if (result_.body.size() + s.data > req_.max_body) {
                            fail("response body too large");
                            return false;
                        }
                        result_.body.append(in.substr(used, s.data));
                        used += s.data;
                        if (s.status == ChunkedDecoder::Status::Done) {
                            succeed();
                            return false;
                        }
                        if (s.framing == 0 && s.data == 0) break;  // NeedMore
                    }
                    pending_.erase(0, used);
                    return true;
                }
                case ResponseFraming::UntilClose:
                    if (result_.body.size() + pending_.size() > req_.max_body) {
                        fail("response body too large");
                        return false;
                    }
                    result_.body += pending_;
                    pending_.clear();
                    if (eof_) {
                        succeed();
                        return false;
                    }
                    return true;
                default:
                    fail("unsupported response framing");
                    return false;
            }
        }
    }

    void succeed() {
        result_.ok = true;
        finish();
    }

    void fail(const std::string& why) {
        result_.ok = false;
        result_.error = why;
        result_.status = 0;
        result_.headers.clear();
        result_.body.clear();
        finish();
    }

    // Stops everything, then calls back last: the callback may destroy this object.
    void finish() {
        if (state_ == State::Done) return;
        state_ = State::Done;
        stream_.reset();
        timer_->stop();
        auto done = std::move(done_);
        FetchResult result = std::move(result_);
        done(result);
    }

    EventLoop& loop_;
    FetchRequest req_;
    std::function<void(FetchResult&)> done_;
    ResponseLimits limits_;
    ResponseHeadScanner scanner_;
    ChunkedDecoder chunked_;
    std::unique_ptr<Timer> timer_;
    std::unique_ptr<Stream> stream_;
    std::string request_;
    std::string pending_;
    std::string deferred_;
    std::string last_error_;
    FetchResult result_;
    uint64_t deadline_ = 0;
    uint64_t content_length_ = 0;
    size_t next_addr_ = 0;
    ResponseFraming framing_ = ResponseFraming::None;
    State state_ = State::Connecting;
    bool eof_ = false;
};

}  // namespace

std::unique_ptr<Fetch> fetch(EventLoop& loop, FetchRequest req,
                             std::function<void(FetchResult&)> done) {
    return std::make_unique<FetchImpl>(loop, std::move(req), std::move(done));
}

FetchRequest FetchTarget::request() const {
    FetchRequest req;
    req.url = url;
    req.addresses = addresses;
    req.tls = tls;
    return req;
}

}  // namespace tollgate::http
