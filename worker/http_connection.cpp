#include "worker/http_connection.hpp"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>

#include "core/http/http_config.hpp"
#include "core/http/http_core_module.hpp"
#include "core/http/uri.hpp"
#include "core/log.hpp"
#include "worker/worker.hpp"

namespace tollgate::worker {

namespace {

// Extra input allowed beyond the head limit, so the scanner can see that a head is too long.
constexpr size_t kReadSlack = 16384;

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

}  // namespace

HttpConnection::HttpConnection(Worker& worker, int fd, const ListenSocket& socket, uint64_t number)
    : worker_(worker), socket_(socket), scanner_(http::HeadLimits{}) {
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
    bev_ = bufferevent_socket_new(worker.base(), fd, BEV_OPT_CLOSE_ON_FREE);
    timer_ = evtimer_new(worker.base(), on_timer, this);
}

HttpConnection::~HttpConnection() {
    req_.reset();
    if (timer_ != nullptr) event_free(timer_);
    if (bev_ != nullptr) bufferevent_free(bev_);
}

bool HttpConnection::start() {
    if (bev_ == nullptr || timer_ == nullptr) return false;
    int one = 1;
    setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bufferevent_setcb(bev_, on_read, on_write, on_event, this);
    bufferevent_setwatermark(bev_, EV_READ, 0, limits_.max_head + kReadSlack);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
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
    if (state_ == State::Idle && evbuffer_get_length(bufferevent_get_input(bev_)) == 0) {
        arm_timer(kDrainIdleGraceMs);
    }
}

void HttpConnection::close() {
    worker_.connection_closed(this);
    delete this;
}

// ---- reading ---------------------------------------------------------------------------------

void HttpConnection::on_read(bufferevent*, void* arg) {
    auto* self = static_cast<HttpConnection*>(arg);
    switch (self->state_) {
        case State::Idle:
        case State::ReadingHead:
            self->read_head();
            break;
        case State::Discarding:
            if (self->discard_body()) self->next_request();
            break;
        case State::Processing:
        case State::Writing:
            break;  // pipelined bytes wait; the watermark bounds them
    }
}

void HttpConnection::read_head() {
    evbuffer* in = bufferevent_get_input(bev_);
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

void HttpConnection::new_request() {
    req_.reset();
    arena_.reset();
    arena_.emplace(arena_block_.data(), arena_block_.size());
    ++info_.requests;
    req_.emplace(&*arena_, worker_.generation(), info_, http::now_usec());
    req_->driver = this;
    req_->server = socket_.listen->default_server;
    req_->location = req_->server->defaults.get();
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
    std::pmr::string uri(r.arena);
    if (!http::normalize_path(r.head.path, uri)) {
        r.location = r.server->defaults.get();
        fail_request(400);
        return;
    }
    r.uri = r.copy(uri);
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
        if (r.redirect_pending()) {
            run_phases(static_cast<size_t>(Phase::Rewrite), 0);
        } else {
            send_response();
        }
        return;
    }
    run_phases(0, 0);
}

void HttpConnection::fail_request(int status) {
    if (!req_) new_request();
    http::Request& r = *req_;
    set_state(State::Processing);
    evtimer_del(timer_);
    r.keep_alive = false;
    r.in_error_page = true;  // framing errors get the standard JSON body, not error_page
    body_framing_ = http::BodyFraming::None;
    LOG_INFO("client sent invalid request (%d), client: %s", status, info_.remote_addr.data());
    (void)r.respond_error(status);
    send_response();
}

// ---- phases ----------------------------------------------------------------------------------

void HttpConnection::run_phases(size_t phase, size_t step) {
    http::Request& r = *req_;
    constexpr size_t kContent = static_cast<size_t>(Phase::Content);
    for (;;) {
        bool responded = false;
        for (; phase <= kContent && !responded; ++phase, step = 0) {
            const auto& steps = r.location->phases[phase];
            for (; step < steps.size(); ++step) {
                Verdict v = steps[step].handler(r, steps[step].data);
                if (v == Verdict::Next) continue;
                if (v == Verdict::Suspend) {
                    phase_ = phase;
                    step_ = step + 1;
                    return;
                }
                responded = true;
                break;
            }
        }
        if (!responded) (void)r.respond_error(404);
        if (!r.redirect_pending()) break;
        r.clear_redirect();
        if (!r.uri.empty() && r.uri.front() == '@') {
            auto it = r.server->named.find(r.uri);
            if (it == r.server->named.end()) {
                LOG_ERROR("named location \"%.*s\" not found", static_cast<int>(r.uri.size()),
                          r.uri.data());
                r.in_error_page = true;
                (void)r.respond_error(500);
                break;
            }
            r.location = it->second;
        } else {
            r.location = r.server->find_location(r.uri);
        }
        phase = static_cast<size_t>(Phase::Rewrite);
        step = 0;
    }
    send_response();
}

void HttpConnection::resume(http::Request& r, Verdict v) {
    if (v == Verdict::Next) {
        run_phases(phase_, step_);
    } else if (v == Verdict::Respond && r.redirect_pending()) {
        // Let run_phases carry out the redirect: start past the end of the content phase.
        run_phases(static_cast<size_t>(Phase::Content) + 1, 0);
    } else if (v == Verdict::Respond) {
        send_response();
    }
    // Verdict::Suspend: the handler is waiting again and will resume once more.
}

// ---- writing ---------------------------------------------------------------------------------

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
    const auto& core = r.loc_conf<http::HttpCoreLocConf>(http::http_core_index());
    uint64_t keepalive_ms = core.keepalive_timeout_ms.value_or(75000);
    uint64_t keepalive_max = core.keepalive_requests.value_or(1000);
    if (!r.head.keep_alive || draining_ || worker_.draining() || keepalive_ms == 0 ||
        info_.requests >= keepalive_max) {
        r.keep_alive = false;
    }
    // A body we have not read: after a 100-continue request the client may never send it.
    if (body_framing_ != http::BodyFraming::None && r.head.expect_continue) r.keep_alive = false;

    bool has_body = status_has_body(r.status);
    std::pmr::string head(r.arena);
    head.reserve(512);
    head += r.head.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
    head += std::to_string(r.status);
    head += ' ';
    head += http::reason_phrase(r.status);
    head += "\r\nServer: tollgate\r\nDate: ";
    head += http_date();
    head += "\r\n";
    if (!r.content_type.empty() && has_body) {
        head += "Content-Type: ";
        head += r.content_type;
        head += "\r\n";
    }
    uint64_t body_len = r.body.kind == http::BodyKind::File     ? r.body.length
                        : r.body.kind == http::BodyKind::Memory ? r.body.memory.size()
                                                                : 0;
    if (has_body) {
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
    if (r.keep_alive) {
        if (r.head.version_minor == 0) head += "Connection: keep-alive\r\n";
    } else {
        head += "Connection: close\r\n";
    }
    head += "\r\n";

    evbuffer* out = bufferevent_get_output(bev_);
    evbuffer_add(out, head.data(), head.size());
    r.bytes_sent = head.size();
    bool send_body = has_body && !r.header_only;
    if (send_body && r.body.kind == http::BodyKind::Memory) {
        evbuffer_add(out, r.body.memory.data(), r.body.memory.size());
        r.body_bytes_sent = r.body.memory.size();
    } else if (send_body && r.body.kind == http::BodyKind::File && r.body.length > 0) {
        // libevent takes the fd and sends it with sendfile().
        if (evbuffer_add_file(out, r.body.fd, static_cast<ev_off_t>(r.body.offset),
                              static_cast<ev_off_t>(r.body.length)) == 0) {
            r.body.fd = -1;
            r.body_bytes_sent = r.body.length;
        } else {
            r.keep_alive = false;
        }
    }
    r.bytes_sent += r.body_bytes_sent;
    set_state(State::Writing);
    uint64_t send_ms = core.send_timeout_ms.value_or(60000);
    timeval tv{static_cast<time_t>(send_ms / 1000),
               static_cast<suseconds_t>((send_ms % 1000) * 1000)};
    bufferevent_set_timeouts(bev_, nullptr, &tv);
    if (evbuffer_get_length(out) == 0) response_sent();
}

void HttpConnection::on_write(bufferevent*, void* arg) {
    auto* self = static_cast<HttpConnection*>(arg);
    if (self->state_ == State::Writing &&
        evbuffer_get_length(bufferevent_get_output(self->bev_)) == 0) {
        self->response_sent();
    }
}

void HttpConnection::response_sent() {
    http::Request& r = *req_;
    bufferevent_set_timeouts(bev_, nullptr, nullptr);
    r.end_usec = http::now_usec();
    for (const auto& step : r.location->phases[static_cast<size_t>(Phase::Log)]) {
        (void)step.handler(r, step.data);
    }
    if (!r.keep_alive || peer_closed_) {
        // Half-close and let the client see the whole response before the socket goes away.
        shutdown(bufferevent_getfd(bev_), SHUT_WR);
        close();
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
    evbuffer* in = bufferevent_get_input(bev_);
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
    req_.reset();
    arena_.reset();
    scanner_.reset();
    set_state(State::Idle);
    if (draining_ || worker_.draining()) {
        draining_ = true;
        arm_timer(kDrainIdleGraceMs);
    } else {
        const auto* loc = socket_.listen->default_server->defaults.get();
        const auto& core = loc->confs[http::http_core_index()];
        arm_timer(
            static_cast<const http::HttpCoreLocConf&>(*core).keepalive_timeout_ms.value_or(75000));
    }
    if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) read_head();
}

// ---- events ----------------------------------------------------------------------------------

void HttpConnection::on_event(bufferevent*, short what, void* arg) {
    auto* self = static_cast<HttpConnection*>(arg);
    if ((what & BEV_EVENT_EOF) != 0 && self->state_ == State::Processing) {
        // The client half-closed after sending its request: finish the response first.
        self->peer_closed_ = true;
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) != 0) {
        LOG_INFO("client timed out, client: %s", self->info_.remote_addr.data());
    }
    if (self->req_ && self->state_ == State::Writing) {
        // The response did not complete; still log it.
        self->req_->end_usec = http::now_usec();
        self->req_->status = self->req_->status == 0 ? 499 : self->req_->status;
        for (const auto& step : self->req_->location->phases[static_cast<size_t>(Phase::Log)]) {
            (void)step.handler(*self->req_, step.data);
        }
    }
    self->close();
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
