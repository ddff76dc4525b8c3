// A worker process: one libevent loop serving the listening sockets of its slot.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/generation.hpp"

struct event_base;
struct event;

namespace tollgate {
class EventLoop;
}

namespace tollgate::worker {

class HttpConnection;

struct ListenSocket {
    int fd;
    const http::Listen* listen;  // the generation's listen entry this socket serves
};

struct WorkerParams {
    int slot = 0;
    std::shared_ptr<const ConfigGeneration> generation;
    std::vector<ListenSocket> sockets;
};

// Runs the worker loop until it is told to stop. Returns the process exit code.
int run_worker(const WorkerParams& params);

// How long an idle keepalive connection stays open once a graceful shutdown begins, so a
// client that is about to send its next request is answered (with Connection: close) rather
// than racing a close.
inline constexpr uint64_t kDrainIdleGraceMs = 1000;

class Worker {
  public:
    explicit Worker(const WorkerParams& params);
    ~Worker();
    int run();

    event_base* base() const { return base_; }
    const ConfigGeneration& generation() const { return *params_.generation; }
    bool draining() const { return draining_; }
    void connection_closed(HttpConnection* c);

  private:
    static void on_accept(int fd, short what, void* arg);
    static void on_signal(int sig, short what, void* arg);
    static void on_shutdown_timeout(int fd, short what, void* arg);
    void accept_from(const ListenSocket& socket);
    void set_accepting(bool on);
    void begin_graceful_shutdown();
    void close_all();
    void exit_if_done();

    WorkerParams params_;
    event_base* base_ = nullptr;
    std::unique_ptr<EventLoop> loop_;
    std::vector<event*> accept_events_;
    std::vector<event*> signal_events_;
    event* shutdown_timer_ = nullptr;
    HttpConnection* connections_ = nullptr;
    size_t active_ = 0;
    size_t max_connections_ = 512;
    uint64_t next_number_ = 1;
    bool accepting_ = false;
    bool draining_ = false;
};

}  // namespace tollgate::worker
