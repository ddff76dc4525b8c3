// One client connection speaking HTTP/1.1: reads heads, runs the phases, writes responses,
// discards unread bodies and keeps the connection alive or closes it.
#pragma once

#include <array>
#include <memory>
#include <memory_resource>
#include <optional>

#include "core/http/chunked.hpp"
#include "core/http/request.hpp"
#include "core/http/request_head.hpp"
#include "worker/socket_stream.hpp"

struct event;

namespace tollgate::worker {

class Worker;
struct ListenSocket;

class HttpConnection final : public http::RequestDriver, private StreamHandler {
  public:
    HttpConnection(Worker& worker, int fd, const ListenSocket& socket, uint64_t number);
    ~HttpConnection();
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    // Begins reading the first request. Returns false (and the caller deletes this) on failure.
    bool start();
    // The worker is shutting down gracefully: finish what is in flight, then close.
    void drain();
    // Closes at once (fast shutdown, worker_shutdown_timeout); deletes this.
    void close();

    void resume(http::Request& r, Verdict v) override;
    http::BodyRead read_body(http::Request& r, Buffer& out, size_t max) override;
    void body_ready(http::Request& r) override;
    void end_tunnel(http::Request& r) override;

    // Intrusive list links, owned by Worker.
    HttpConnection* prev = nullptr;
    HttpConnection* next = nullptr;

  private:
    enum class State : uint8_t {
        Idle,
        ReadingHead,
        Processing,
        Writing,
        Discarding,
        Lingering,
        Tunnel
    };

    void on_readable() override;
    void on_drained() override;
    void on_stream_event(StreamEvent e) override;
    static void on_timer(int fd, short what, void* arg);
    static void on_resume(int fd, short what, void* arg);

    void read_head();
    void begin_request(std::string_view head_bytes);
    bool normalize_uri(http::Request& r);
    void run_phases();
    void send_response();
    void write_head_and_body(http::Request& r);
    void response_sent();
    bool discard_body();
    void next_request();
    void pump();
    void linger();
    void fail_request(int status);
    void new_request();
    void end_request();  // destroys the request and gives its arena back
    void arm_timer(uint64_t ms);
    void set_state(State s) { state_ = s; }

    Worker& worker_;
    const ListenSocket& socket_;
    std::unique_ptr<Stream> stream_;  // plain TCP or TLS (worker/tls_stream.hpp)
    event* timer_ = nullptr;
    event* resume_ev_ = nullptr;  // continues a long pipelined burst from the loop (made then)
    State state_ = State::Idle;
    bool draining_ = false;
    bool peer_closed_ = false;
    bool refused_ = false;  // a malformed request was answered: the client may keep sending
    bool continue_sent_ = false;
    bool streaming_ = false;       // the response body comes from a BodySource
    bool discard_stream_ = false;  // ... and is pulled but not sent (HEAD)
    bool chunked_out_ = false;     // the response is sent with chunked framing
    bool pumping_ = false;
    bool drained_while_pumping_ = false;
    uint64_t send_timeout_ms_ = 60000;
    int64_t linger_deadline_usec_ = 0;
    uint64_t keepalive_ms_ = 75000;  // the last request's location's keepalive_timeout

    http::HeadLimits limits_;
    http::HeadScanner scanner_;
    http::ConnectionInfo info_;
    std::array<char, 48> remote_text_{};
    std::array<char, 48> local_text_{};

    // The arena: a first block taken from the worker's free list when a request starts and
    // given back when it ends (an idle connection holds none), then heap blocks that are
    // released per request.
    std::byte* arena_block_ = nullptr;
    // In arena_block_ while a request lives (null otherwise): the resource at its start, the
    // request at its end.
    std::pmr::monotonic_buffer_resource* arena_ = nullptr;
    http::Request* req_ = nullptr;

    // Request body still to be read (and, in the core, discarded).
    http::BodyFraming body_framing_ = http::BodyFraming::None;
    uint64_t body_remaining_ = 0;
    http::ChunkedDecoder chunked_;
};

}  // namespace tollgate::worker
