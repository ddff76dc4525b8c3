#include "worker/http_connection.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <strings.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>
#include <utility>

#include "core/http/http_config.hpp"
#include "core/http/http_core_module.hpp"
#include "core/http/phases.hpp"
#include "core/http/uri.hpp"
#include "core/log.hpp"
#include "worker/tls_stream.hpp"
#include "worker/worker.hpp"

namespace tollgate::worker {

namespace {

// Extra input allowed beyond the head limit, so the scanner can see that a head is too long.
constexpr size_t kReadSlack = 16384;
// nginx's lingering_time and lingering_timeout: the longest a closing connection keeps reading,
// and the longest it waits for the next bytes.
constexpr uint64_t kLingeringTimeMs = 30000;
constexpr uint64_t kLingeringTimeoutMs = 5000;
// The most a streamed body moves to the client per pull.
constexpr size_t kStreamChunk = 65536;
// Files up to this size are read into the output behind the head (as nginx with sendfile off
// and its 32k output buffers); bigger ones go out with sendfile.
constexpr uint64_t kInlineFileMax = 32 * 1024;

// Appends `length` bytes of `fd` from `offset` to `out`; false (and nothing appended) when the
// file is shorter now or unreadable.
bool append_file_range(evbuffer* out, int fd, uint64_t offset, uint64_t length) {
    evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, static_cast<ev_ssize_t>(length), &vec, 1) != 1) return false;
    auto* dst = static_cast<char*>(vec.iov_base);
    uint64_t got = 0;
    while (got < length) {
        ssize_t n = ::pread(fd, dst + got, length - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;  // reserved space left uncommitted is simply not used
        got += static_cast<uint64_t>(n);
    }
    vec.iov_len = length;
    return evbuffer_commit_space(out, &vec, 1) == 0;
}
// Pipelined requests answered from one read, recursively, before yielding to the loop.
constexpr int kMaxPipelineRecursion = 16;

void format_addr(const sockaddr_storage& ss, std::array<char, 48>& text, uint16_t& port) {
    if (ss.ss_family == AF_INET6) {
        const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &sin6->sin6_addr, text.data(), text.size());
        port = ntohs(sin6->sin6_port);
    } else {
        const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &sin->sin_addr, text.data(), text.size());
        port = ntohs(sin->sin_port);
    }
}

// The Date header value, formatted once per second.
std::string_view http_date() {
    thread_local time_t cached = 0;
    thread_local char buf[40];
    time_t now = time(nullptr);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return buf;
}

std::string_view format_http_time(std::pmr::string& out, int64_t t) {
    time_t tt = static_cast<time_t>(t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    out.assign(buf, n);
    return out;
}

// The host part of a Host value: no port, lowercased, into `out`.
std::string_view host_for_lookup(std::string_view host, std::array<char, 256>& out) {
    if (!host.empty() && host.front() != '[') {
        if (size_t colon = host.rfind(':'); colon != std::string_view::npos)
            host = host.substr(0, colon);
    }
    if (host.size() > out.size()) host = host.substr(0, out.size());
    for (size_t i = 0; i < host.size(); ++i) {
        out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(host[i])));
    }
    if (!host.empty() && out[host.size() - 1] == '.') host.remove_suffix(1);  // "example.com."
    return {out.data(), host.size()};
}

bool status_has_body(int status) {
    return status >= 200 && status != 204 && status != 304;
}

// Request arena first blocks. A connection holds one only while it has a request, as nginx
// holds a request pool: an idle keepalive connection costs little. Finished requests give their
// block back to this per-process list (a worker is single-threaded), bounded; the sanitizer
// build keeps none, so that a use after the request ended is caught.
constexpr size_t kArenaBlockSize = 8192;
constexpr size_t kMaxFreeArenaBlocks = 256;  // 2 MiB at most kept per worker
constexpr size_t round16(size_t n) {
    return (n + 15) & ~size_t{15};
}
constexpr size_t kArenaResourceSize = round16(sizeof(std::pmr::monotonic_buffer_resource));
constexpr size_t kArenaRequestSize = round16(sizeof(http::Request));
static_assert(kArenaResourceSize + kArenaRequestSize + 4096 <= kArenaBlockSize);

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TOLLGATE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(TOLLGATE_ASAN)
constexpr bool kCacheArenaBlocks = false;
#else
constexpr bool kCacheArenaBlocks = true;
#endif

struct FreeArenaBlock {
    FreeArenaBlock* next;
};

struct ArenaBlockCache {
    FreeArenaBlock* head = nullptr;
    size_t count = 0;
    ~ArenaBlockCache() {
        while (head != nullptr) {
            FreeArenaBlock* b = head;
            head = b->next;
            ::operator delete (static_cast<void*>(b), std::align_val_t{alignof(std::max_align_t)});
        }
    }
};
ArenaBlockCache g_arena_blocks;

std::byte* take_arena_block() {
    if (FreeArenaBlock* b = g_arena_blocks.head; b != nullptr) {
        g_arena_blocks.head = b->next;
        --g_arena_blocks.count;
        return reinterpret_cast<std::byte*>(b);
    }
    return static_cast<std::byte*>(
        ::operator new (kArenaBlockSize, std::align_val_t{alignof(std::max_align_t)}));
}

// A streamed body's bytes between its source and the client's output, shared by the worker's
// connections: pump() always empties it before it returns.
Buffer& stream_scratch() {
    static Buffer scratch;
    return scratch;
}

void give_arena_block(std::byte* block) {
    if (!kCacheArenaBlocks || g_arena_blocks.count >= kMaxFreeArenaBlocks) {
        ::operator delete (static_cast<void*>(block), std::align_val_t{alignof(std::max_align_t)});
        return;
    }
    auto* b = reinterpret_cast<FreeArenaBlock*>(block);
    b->next = g_arena_blocks.head;
    g_arena_blocks.head = b;
    ++g_arena_blocks.count;
}

}  // namespace

HttpConnection::HttpConnection(Worker& worker, int fd, const ListenSocket& socket, uint64_t number)
    : worker_(worker),
      socket_(socket),
      stream_(make_accepted_stream(worker.base(), fd, *socket.listen, *this)),
      scanner_(http::HeadLimits{}) {
    const http::Server* server = socket.listen->default_server;
    const auto& sc = server->srv_conf<http::HttpCoreServerConf>(http::http_core_index());
    limits_ = http::header_limits(sc);
    scanner_ = http::HeadScanner(limits_);
    info_.number = number;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        format_addr(ss, remote_text_, info_.remote_port);
    }
    len = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        format_addr(ss, local_text_, info_.server_port);
    }
    info_.remote_addr = remote_text_.data();
    info_.server_addr = local_text_.data();
    if (stream_) info_.tls = tls_session(*stream_);
    timer_ = evtimer_new(worker.base(), on_timer, this);
}

HttpConnection::~HttpConnection() {
    end_request();
    if (timer_ != nullptr) event_free(timer_);
    if (resume_ev_ != nullptr) event_free(resume_ev_);
}

bool HttpConnection::start() {
    if (!stream_ || timer_ == nullptr) return false;
    stream_->set_read_limit(limits_.max_head + kReadSlack);
    stream_->resume_reading();
    const http::Server* server = socket_.listen->default_server;
    arm_timer(http::client_header_timeout_ms(
        server->srv_conf<http::HttpCoreServerConf>(http::http_core_index())));
    return true;
}

void HttpConnection::arm_timer(uint64_t ms) {
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    evtimer_add(timer_, &tv);
}

void HttpConnection::drain() {
    draining_ = true;
    if (state_ == State::Idle && evbuffer_get_length(stream_->input().chain()) == 0) {
        arm_timer(kDrainIdleGraceMs);
    }
}

void HttpConnection::close() {
    if (req_ && req_->task != nullptr) {
        http::RequestTask* task = std::exchange(req_->task, nullptr);
        task->abort();  // the upstream exchange releases its resources now
    }
    worker_.connection_closed(this);
    delete this;
}

// ---- reading ---------------------------------------------------------------------------------

void HttpConnection::on_readable() {
    switch (state_) {
        case State::Idle:
        case State::ReadingHead:
            read_head();
            break;
        case State::Discarding:
            if (discard_body()) next_request();
            break;
        case State::Processing:
        case State::Writing:
            // A handler reading the body hears of it; anything else waits (pipelined bytes are
            // bounded by the stream's read limit).
            if (req_ && req_->task != nullptr && body_framing_ != http::BodyFraming::None) {
                req_->task->on_body_available();
            }
            break;
        case State::Tunnel:
            break;  // the tunnel is the stream's handler now
        case State::Lingering:
            evbuffer_drain(stream_->input().chain(), evbuffer_get_length(stream_->input().chain()));
            if (http::now_usec() >= linger_deadline_usec_) {
                close();
                return;
            }
            arm_timer(kLingeringTimeoutMs);
            stream_->resume_reading();
            break;
    }
}

// Closes after the last response the way nginx's lingering_close does: half-close, then read and
// drop what the client still sends until it closes too (or a bound passes). Closing a socket that
// has unread input makes the kernel send RST, which can destroy response bytes the client has not
// read yet.
void HttpConnection::linger() {
    // As nginx: linger only when the client may still be sending (unread input, an unread body,
    // or a request we refused); otherwise close at once.
    bool may_send = evbuffer_get_length(stream_->input().chain()) > 0 ||
                    body_framing_ != http::BodyFraming::None || refused_;
    if (peer_closed_ || !may_send) {
        stream_->shutdown_write();
        close();
        return;
    }
    stream_->shutdown_write();
    set_state(State::Lingering);
    end_request();
    linger_deadline_usec_ = http::now_usec() + kLingeringTimeMs * 1000;
    evbuffer_drain(stream_->input().chain(), evbuffer_get_length(stream_->input().chain()));
    arm_timer(kLingeringTimeoutMs);
    stream_->resume_reading();
}

void HttpConnection::read_head() {
    evbuffer* in = stream_->input().chain();
    size_t len = evbuffer_get_length(in);
    if (len == 0) return;
    if (state_ == State::Idle) {
        set_state(State::ReadingHead);
        const auto& sc = socket_.listen->default_server->srv_conf<http::HttpCoreServerConf>(
            http::http_core_index());
        arm_timer(http::client_header_timeout_ms(sc));
    }
    auto* data = reinterpret_cast<const char*>(evbuffer_pullup(in, -1));
    switch (scanner_.scan(std::string_view(data, len))) {
        case http::HeadScanner::Status::NeedMore:
            return;
        case http::HeadScanner::Status::Error:
            fail_request(scanner_.error_status());
            return;
        case http::HeadScanner::Status::Complete:
            break;
    }
    size_t head_len = scanner_.head_length();
    new_request();
    std::string_view head = req_->copy(std::string_view(data, head_len));
    evbuffer_drain(in, head_len);
    begin_request(head);
}

void HttpConnection::end_request() {
    if (req_ != nullptr) std::exchange(req_, nullptr)->~Request();
    if (arena_ != nullptr) std::exchange(arena_, nullptr)->~monotonic_buffer_resource();
    if (arena_block_ != nullptr) give_arena_block(std::exchange(arena_block_, nullptr));
}

void HttpConnection::new_request() {
    end_request();
    // The block holds the arena resource, the arena's first bytes, then the request.
    arena_block_ = take_arena_block();
    std::byte* p = arena_block_;
    arena_ = new (p) std::pmr::monotonic_buffer_resource(
        p + kArenaResourceSize, kArenaBlockSize - kArenaResourceSize - kArenaRequestSize);
    std::byte* request_mem = p + kArenaBlockSize - kArenaRequestSize;
    ++info_.requests;
    continue_sent_ = false;
    streaming_ = false;
    discard_stream_ = false;
    chunked_out_ = false;
    req_ = new (request_mem) http::Request(arena_, worker_.generation(), info_, http::now_usec());
    req_->driver = this;
    req_->server = socket_.listen->default_server;
    req_->location = req_->server->defaults.get();
}

// Sets r.uri to the decoded, normalized request path. Returns false for a path that cannot be
// normalized (the caller answers 400).
bool HttpConnection::normalize_uri(http::Request& r) {
    std::pmr::string uri(r.arena);
    if (!http::normalize_path(r.head.path, uri)) return false;
    r.uri = r.copy(uri);
    return true;
}

void HttpConnection::begin_request(std::string_view head_bytes) {
    http::Request& r = *req_;
    r.request_length = head_bytes.size();
    set_state(State::Processing);
    evtimer_del(timer_);
    int status = http::parse_request_head(head_bytes, limits_, r.head);
    if (status != 0) {
        fail_request(status);
        return;
    }
    std::array<char, 256> host_buf;
    r.server = socket_.listen->find_server(host_for_lookup(r.head.host, host_buf));
    if (!normalize_uri(r)) {
        r.location = r.server->defaults.get();
        fail_request(400);
        return;
    }
    r.args = r.head.query;
    r.location = r.server->find_location(r.uri);
    r.header_only = r.head.method == http::Method::Head;
    body_framing_ = r.head.framing;
    body_remaining_ =
        r.head.framing == http::BodyFraming::ContentLength ? r.head.content_length : 0;
    if (body_framing_ == http::BodyFraming::ContentLength && body_remaining_ == 0) {
        body_framing_ = http::BodyFraming::None;
    }
    if (body_framing_ == http::BodyFraming::Chunked) chunked_.reset();
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    uint64_t max_body = core.client_max_body_size.value_or(1 << 20);
    if (max_body != 0 && body_framing_ == http::BodyFraming::ContentLength &&
        r.head.content_length > max_body) {
        LOG_ERROR("client intended to send too large body: %llu bytes, client: %s",
                  static_cast<unsigned long long>(r.head.content_length), info_.remote_addr.data());
        r.keep_alive = false;
        r.in_error_page = false;
        (void)r.respond_error(413);
        if (!r.redirect_pending() || http::run_phases_from_rewrite(r)) send_response();
        return;
    }
    if (core.internal) {  // only internal redirects and subrequests reach it
        (void)r.respond_error(404);
        if (!r.redirect_pending() || http::run_phases_from_rewrite(r)) send_response();
        return;
    }
    run_phases();
}

void HttpConnection::fail_request(int status) {
    if (!req_) new_request();
    http::Request& r = *req_;
    set_state(State::Processing);
    evtimer_del(timer_);
    refused_ = true;
    r.keep_alive = false;
    r.in_error_page = true;  // framing errors get the standard JSON body, not error_page
    body_framing_ = http::BodyFraming::None;
    LOG_INFO("client sent invalid request (%d), client: %s", status, info_.remote_addr.data());
    (void)r.respond_error(status);
    send_response();
}

// ---- phases ----------------------------------------------------------------------------------

void HttpConnection::run_phases() {
    if (http::run_phases(*req_)) send_response();
}

void HttpConnection::resume(http::Request& r, Verdict v) {
    if (http::resume_phases(r, v)) send_response();
    // Otherwise a handler is waiting (again) and will resume once more.
}

// ---- writing ---------------------------------------------------------------------------------

// Serializes the status line, headers and body of `r` into the output buffer.
void HttpConnection::write_head_and_body(http::Request& r) {
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    bool has_body = status_has_body(r.status);
    std::pmr::string head(r.arena);
    head.reserve(512);
    head += r.head.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
    head += std::to_string(r.status);
    head += ' ';
    head += http::reason_phrase(r.status);
    head += "\r\n";
    // A handler may pass its own Server or Date on (proxy_pass_header); then ours are left out.
    bool own_server = true;
    bool own_date = true;
    for (const auto& h : r.out_headers) {
        if (h.name.size() == 6 && strncasecmp(h.name.data(), "server", 6) == 0) own_server = false;
        if (h.name.size() == 4 && strncasecmp(h.name.data(), "date", 4) == 0) own_date = false;
    }
    if (own_server) {
        head += core.server_tokens.value_or(true) ? "Server: tollgate/" TOLLGATE_VERSION "\r\n"
                                                  : "Server: tollgate\r\n";
    }
    if (own_date) {
        head += "Date: ";
        head += http_date();
        head += "\r\n";
    }
    if (!r.content_type.empty() && has_body) {
        head += "Content-Type: ";
        head += r.content_type;
        head += "\r\n";
    }
    uint64_t body_len = r.body.kind == http::BodyKind::File     ? r.body.length
                        : r.body.kind == http::BodyKind::Memory ? r.body.memory.size()
                                                                : 0;
    chunked_out_ = false;
    if (has_body && r.body.kind == http::BodyKind::Stream && r.content_length < 0) {
        // Length unknown: chunked for HTTP/1.1, delimited by the close for HTTP/1.0.
        if (r.head.version_minor >= 1) {
            chunked_out_ = !r.header_only;
            head += "Transfer-Encoding: chunked\r\n";
        } else {
            r.keep_alive = false;
        }
    } else if (has_body) {
        head += "Content-Length: ";
        head += std::to_string(r.content_length >= 0 ? static_cast<uint64_t>(r.content_length)
                                                     : body_len);
        head += "\r\n";
    }
    if (r.last_modified >= 0) {
        std::pmr::string t(r.arena);
        head += "Last-Modified: ";
        head += format_http_time(t, r.last_modified);
        head += "\r\n";
    }
    for (const auto& h : r.out_headers) {
        head += h.name;
        head += ": ";
        head += h.value;
        head += "\r\n";
    }
    if (r.status == 101) {
        // The handler's Connection/Upgrade headers stand: the connection changes protocol.
    } else if (r.keep_alive) {
        if (r.head.version_minor == 0) head += "Connection: keep-alive\r\n";
    } else {
        head += "Connection: close\r\n";
    }
    head += "\r\n";

    evbuffer* out = stream_->output().chain();
    evbuffer_add(out, head.data(), head.size());
    r.bytes_sent = head.size();
    bool send_body = has_body && !r.header_only;
    if (send_body && r.body.kind == http::BodyKind::Memory) {
        evbuffer_add(out, r.body.memory.data(), r.body.memory.size());
        r.body_bytes_sent = r.body.memory.size();
    } else if (send_body && r.body.kind == http::BodyKind::File && r.body.length > 0) {
        if (r.body.length <= kInlineFileMax) {
            // A small file is read behind the head: one write and one segment, no sendfile.
            if (append_file_range(out, r.body.fd, r.body.offset, r.body.length)) {
                r.body_bytes_sent = r.body.length;
            } else {
                r.keep_alive = false;  // as below: the connection closes short of the body
            }
        } else if (evbuffer_add_file(out, r.body.fd, static_cast<ev_off_t>(r.body.offset),
                                     static_cast<ev_off_t>(r.body.length)) == 0) {
            // libevent takes the fd and sends it with sendfile().
            r.body.fd = -1;
            r.body_bytes_sent = r.body.length;
        } else {
            r.keep_alive = false;
        }
    }
    r.bytes_sent += r.body_bytes_sent;
    streaming_ = r.body.kind == http::BodyKind::Stream && r.body.source != nullptr;
    discard_stream_ = streaming_ && !send_body;
}

void HttpConnection::send_response() {
    http::Request& r = *req_;
    if (r.error_page_status > 0) r.status = r.error_page_status;
    if (r.status == 444) {  // nginx's "close the connection without a response"
        r.end_usec = http::now_usec();
        for (const auto& step : r.location->phases[static_cast<size_t>(Phase::Log)]) {
            (void)step.handler(r, step.data);
        }
        close();
        return;
    }
    // The final status is known: the location's header filters (add_header) run, once.
    for (const auto& f : r.location->header_filters) f.filter(r, f.data);
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    keepalive_ms_ = core.keepalive_timeout_ms.value_or(75000);
    uint64_t keepalive_max = core.keepalive_requests.value_or(1000);
    if (!r.head.keep_alive || draining_ || worker_.draining() || keepalive_ms_ == 0 ||
        info_.requests >= keepalive_max) {
        r.keep_alive = false;
    }
    // A body we have not read: after a 100-continue request the client may never send it.
    if (body_framing_ != http::BodyFraming::None && r.head.expect_continue) r.keep_alive = false;

    write_head_and_body(r);
    set_state(State::Writing);
    send_timeout_ms_ = core.send_timeout_ms.value_or(60000);
    // Last statement: once the output drains, on_drained() may finish and free this request.
    if (streaming_) {
        // The head goes out together with the body bytes the source already holds (a proxied
        // response's first upstream read usually carries all of a small body): one write.
        pump();
    } else {
        stream_->flush(send_timeout_ms_);
    }
}

void HttpConnection::on_drained() {
    if (state_ != State::Writing) return;
    if (!streaming_) {
        response_sent();
        return;
    }
    if (pumping_) {
        drained_while_pumping_ = true;  // the pump loop below goes on; no recursion
        return;
    }
    pump();
}

// Pulls a streamed body from its source while the client takes it: after each flush that
// drains, pull again; stop when the source has nothing (it calls body_ready() later) or is done.
void HttpConnection::pump() {
    http::Request& r = *req_;
    pumping_ = true;
    for (;;) {
        drained_while_pumping_ = false;
        Buffer& chunk = stream_scratch();  // shared: no allocation per pull or connection
        if (!chunk.empty()) chunk.drain(chunk.size());  // left by a pull that failed
        auto pulled = r.body.source->pull(chunk, kStreamChunk);
        if (pulled == http::BodySource::Pull::Wait) {
            // Nothing more yet (body_ready() follows): send what is queued now (on the first
            // pull, the head).
            if (evbuffer_get_length(stream_->output().chain()) > 0 &&
                !stream_->flush(send_timeout_ms_)) {
                return;  // failed: the connection is closed
            }
            break;
        }
        if (pulled == http::BodySource::Pull::Error) {
            pumping_ = false;
            LOG_ERROR("upstream body failed mid-response, closing client connection %s",
                      info_.remote_addr.data());
            close();  // a truncated body must not look complete
            return;
        }
        Buffer out = Buffer::borrow(stream_->output().chain());
        size_t n = chunk.size();
        if (discard_stream_) {
            chunk.drain(n);
        } else if (n > 0) {
            if (chunked_out_) {
                char line[24];
                int len = std::snprintf(line, sizeof(line), "%zx\r\n", n);
                out.append(std::string_view(line, static_cast<size_t>(len)));
                out.move_from(chunk);
                out.append("\r\n");
                r.bytes_sent += static_cast<size_t>(len) + 2;
            } else {
                out.move_from(chunk);
            }
            r.body_bytes_sent += n;
            r.bytes_sent += n;
        }
        if (pulled == http::BodySource::Pull::Done) {
            if (chunked_out_) {
                out.append("0\r\n\r\n");
                r.bytes_sent += 5;
            }
            streaming_ = false;
            pumping_ = false;
            stream_->flush(send_timeout_ms_);  // drained: response_sent(); this may be gone
            return;
        }
        if (!stream_->flush(send_timeout_ms_)) return;  // failed: the connection is closed
        if (!drained_while_pumping_) break;  // the kernel is full: on_drained() resumes us
    }
    pumping_ = false;
}

void HttpConnection::end_tunnel(http::Request& r) {
    r.end_usec = http::now_usec();
    for (const auto& step : r.location->phases[static_cast<size_t>(Phase::Log)]) {
        (void)step.handler(r, step.data);
    }
    r.task = nullptr;
    close();
}

void HttpConnection::body_ready(http::Request& r) {
    if (state_ == State::Writing && streaming_ && !pumping_ &&
        evbuffer_get_length(stream_->output().chain()) == 0) {
        pump();
    }
}

http::BodyRead HttpConnection::read_body(http::Request& r, Buffer& out, size_t max) {
    // A phase reading the body ahead (core/http/body_preread.hpp) waits for the client alone:
    // client_body_timeout bounds each wait (armed below), and the connection closes when it passes.
    if (r.preread_active) evtimer_del(timer_);
    if (body_framing_ == http::BodyFraming::None) return http::BodyRead::Done;
    evbuffer* in = stream_->input().chain();
    if (r.head.expect_continue && !continue_sent_ && evbuffer_get_length(in) == 0) {
        continue_sent_ = true;
        if (state_ == State::Processing) {
            evbuffer_add(stream_->output().chain(), "HTTP/1.1 100 Continue\r\n\r\n", 25);
            stream_->flush(send_timeout_ms_);
        }
    }
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    uint64_t max_body = core.client_max_body_size.value_or(1 << 20);
    size_t before = out.size();
    if (body_framing_ == http::BodyFraming::ContentLength) {
        size_t n =
            std::min<uint64_t>({body_remaining_, uint64_t{evbuffer_get_length(in)}, uint64_t{max}});
        if (n > 0) {
            Buffer input = Buffer::borrow(in);
            out.move_from(input, n);
            body_remaining_ -= n;
        }
        if (body_remaining_ == 0) body_framing_ = http::BodyFraming::None;
    } else {
        Buffer input = Buffer::borrow(in);
        while (out.size() - before < max) {
            // The decoder counts the data it reports as consumed: show it no more than fits.
            std::string_view seg = input.front().substr(0, max - (out.size() - before));
            if (seg.empty()) break;
            auto step = chunked_.next(seg);
            input.drain(step.framing);
            size_t take = step.data;
            if (take > 0) out.move_from(input, take);
            if (step.status == http::ChunkedDecoder::Status::Error) {
                r.body_error_status = 400;
                return http::BodyRead::Error;
            }
            if (step.status == http::ChunkedDecoder::Status::Done) {
                body_framing_ = http::BodyFraming::None;
                break;
            }
            if (step.framing == 0 && take == 0) break;
        }
        if (max_body != 0 && chunked_.body_bytes() > max_body) {
            r.body_error_status = 413;
            return http::BodyRead::Error;
        }
    }
    size_t got = out.size() - before;
    r.body_bytes_read += got;
    r.request_length += got;
    stream_->resume_reading();  // we made room
    if (got > 0) return http::BodyRead::Data;
    if (body_framing_ == http::BodyFraming::None) return http::BodyRead::Done;
    if (peer_closed_) {
        r.body_error_status = 0;  // the client went away mid-body
        return http::BodyRead::Error;
    }
    if (r.preread_active) arm_timer(core.client_body_timeout_ms.value_or(60000));
    return http::BodyRead::Wait;
}

void HttpConnection::response_sent() {
    http::Request& r = *req_;
    if (r.status == 101 && r.tunnel != nullptr) {
        // The connection now carries another protocol; the tunnel owns its bytes until it ends.
        set_state(State::Tunnel);
        evtimer_del(timer_);
        r.tunnel->on_client_stream(*stream_);
        return;
    }
    r.end_usec = http::now_usec();
    for (const auto& step : r.location->phases[static_cast<size_t>(Phase::Log)]) {
        (void)step.handler(r, step.data);
    }
    if (!r.keep_alive || peer_closed_) {
        linger();
        return;
    }
    if (body_framing_ != http::BodyFraming::None) {
        set_state(State::Discarding);
        const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
        uint64_t ms = core.client_body_timeout_ms.value_or(60000);
        arm_timer(ms);
        if (!discard_body()) return;
    }
    next_request();
}

// Reads and drops request body bytes. Returns true once the whole body is gone; closes the
// connection (and returns false) on a framing error.
bool HttpConnection::discard_body() {
    evbuffer* in = stream_->input().chain();
    stream_->resume_reading();  // whatever we drain below makes room
    if (body_framing_ == http::BodyFraming::ContentLength) {
        size_t n = std::min<uint64_t>(body_remaining_, evbuffer_get_length(in));
        evbuffer_drain(in, n);
        body_remaining_ -= n;
        req_->request_length += n;
        if (body_remaining_ > 0) return false;
    } else if (body_framing_ == http::BodyFraming::Chunked) {
        for (;;) {
            evbuffer_iovec vec;
            if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1 || vec.iov_len == 0) return false;
            auto step =
                chunked_.next(std::string_view(static_cast<char*>(vec.iov_base), vec.iov_len));
            evbuffer_drain(in, step.framing + step.data);
            req_->request_length += step.framing + step.data;
            if (step.status == http::ChunkedDecoder::Status::Error) {
                close();
                return false;
            }
            if (step.status == http::ChunkedDecoder::Status::Done) break;
            if (step.framing + step.data == 0) return false;
        }
    }
    body_framing_ = http::BodyFraming::None;
    return true;
}

void HttpConnection::next_request() {
    evtimer_del(timer_);
    end_request();
    scanner_.reset();
    set_state(State::Idle);
    if (draining_ || worker_.draining()) {
        draining_ = true;
        arm_timer(kDrainIdleGraceMs);
    } else {
        arm_timer(keepalive_ms_);
    }
    stream_->resume_reading();
    if (evbuffer_get_length(stream_->input().chain()) == 0) return;
    // Pipelined requests are answered recursively from here; past a bound, continue from the
    // loop instead of growing the stack. The depth is per process (workers are single-threaded)
    // because this connection may be gone when read_head() returns.
    static int depth = 0;
    if (depth >= kMaxPipelineRecursion) {
        if (resume_ev_ == nullptr) resume_ev_ = event_new(worker_.base(), -1, 0, on_resume, this);
        if (resume_ev_ == nullptr) {
            close();  // out of memory
            return;
        }
        event_active(resume_ev_, EV_TIMEOUT, 1);
        return;
    }
    ++depth;
    read_head();
    --depth;
}

void HttpConnection::on_resume(int, short, void* arg) {
    auto* self = static_cast<HttpConnection*>(arg);
    if (self->state_ == State::Idle) self->read_head();
}

// ---- events ----------------------------------------------------------------------------------

void HttpConnection::on_stream_event(StreamEvent e) {
    if (state_ == State::Lingering) {
        close();
        return;
    }
    if (e == StreamEvent::Eof && state_ == State::Processing && req_ && req_->task != nullptr) {
        // As nginx: a client that closes while an upstream works on its request has gone away
        // ("client prematurely closed connection"), so the upstream work is cancelled. 499.
        LOG_INFO("client prematurely closed connection, client: %s", info_.remote_addr.data());
        req_->status = 499;
        req_->end_usec = http::now_usec();
        for (const auto& step : req_->location->phases[static_cast<size_t>(Phase::Log)]) {
            (void)step.handler(*req_, step.data);
        }
        close();
        return;
    }
    if (e == StreamEvent::Eof && (state_ == State::Processing || state_ == State::Writing)) {
        // The client half-closed after sending its request: finish the response first.
        peer_closed_ = true;
        return;
    }
    if (e == StreamEvent::WriteTimeout) {
        LOG_INFO("client timed out (send_timeout), client: %s", info_.remote_addr.data());
    }
    if (req_ && state_ == State::Writing) {
        // The response did not complete; still log it.
        req_->end_usec = http::now_usec();
        for (const auto& step : req_->location->phases[static_cast<size_t>(Phase::Log)]) {
            (void)step.handler(*req_, step.data);
        }
    }
    close();
}

void HttpConnection::on_timer(int, short, void* arg) {
    auto* self = static_cast<HttpConnection*>(arg);
    if (self->state_ == State::ReadingHead) {
        // nginx answers a header timeout with 408 and closes without a log line; so do we.
        LOG_INFO("client timed out reading the request head, client: %s",
                 self->info_.remote_addr.data());
    }
    self->close();
}

}  // namespace tollgate::worker
