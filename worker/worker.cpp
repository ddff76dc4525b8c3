#include "worker/worker.hpp"

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/core_module.hpp"
#include "core/http/subrequest.hpp"
#include "core/log.hpp"
#include "worker/http_connection.hpp"
#include "worker/libevent_loop.hpp"

namespace tollgate::worker {

namespace {
struct AcceptArg {
    Worker* worker;
    const ListenSocket* socket;
};
}  // namespace

Worker::Worker(const WorkerParams& params) : params_(params) {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base_ != nullptr) loop_ = std::make_unique<LibeventLoop>(base_);
    max_connections_ = core_conf(*params_.generation).connections();
}

Worker::~Worker() {
    for (event* e : accept_events_) {
        delete static_cast<AcceptArg*>(event_get_callback_arg(e));
        event_free(e);
    }
    for (event* e : signal_events_) event_free(e);
    if (shutdown_timer_ != nullptr) event_free(shutdown_timer_);
    if (base_ != nullptr) event_base_free(base_);
}

int Worker::run() {
    if (base_ == nullptr) {
        LOG_ERROR("event_base_new() failed");
        return 1;
    }
    for (const ListenSocket& s : params_.sockets) {
        auto* arg = new AcceptArg{this, &s};
        accept_events_.push_back(event_new(base_, s.fd, EV_READ | EV_PERSIST, on_accept, arg));
    }
    for (int sig : {SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGWINCH}) {
        event* e = evsignal_new(base_, sig, on_signal, this);
        evsignal_add(e, nullptr);
        signal_events_.push_back(e);
    }
    // Signals were blocked across fork; libevent's handlers are in place now.
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);

    http::subrequests_init(*loop_);
    for (const Module* m : compiled_modules()) {
        if (m->init_worker != nullptr) m->init_worker(generation(), *loop_);
    }
    set_accepting(true);
    event_base_dispatch(base_);
    close_all();
    // Subrequests still running (mirrors do not hold a draining worker) end first: their
    // upstream exchanges belong to modules whose exit_worker runs next.
    http::cancel_subrequests();
    for (const Module* m : compiled_modules()) {
        if (m->exit_worker != nullptr) m->exit_worker(generation());
    }
    return 0;
}

void Worker::set_accepting(bool on) {
    if (on == accepting_) return;
    accepting_ = on;
    for (event* e : accept_events_) {
        if (on) {
            event_add(e, nullptr);
        } else {
            event_del(e);
        }
    }
}

void Worker::on_accept(int, short, void* arg) {
    auto* a = static_cast<AcceptArg*>(arg);
    a->worker->accept_from(*a->socket);
}

void Worker::accept_from(const ListenSocket& socket) {
    // Take a bounded batch per wakeup so one busy socket cannot starve the loop.
    for (int i = 0; i < 64 && accepting_; ++i) {
        if (active_ >= max_connections_) {
            LOG_ERROR("%zu worker_connections are not enough", max_connections_);
            set_accepting(false);
            return;
        }
        int fd = accept4(socket.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == ECONNABORTED) continue;
            LOG_ERROR("accept4() failed (%s)", std::strerror(errno));
            return;
        }
        auto* c = new HttpConnection(*this, fd, socket, next_number_++);
        c->next = connections_;
        if (connections_ != nullptr) connections_->prev = c;
        connections_ = c;
        ++active_;
        if (!c->start()) c->close();
    }
}

void Worker::connection_closed(HttpConnection* c) {
    if (c->prev != nullptr) c->prev->next = c->next;
    if (c->next != nullptr) c->next->prev = c->prev;
    if (connections_ == c) connections_ = c->next;
    --active_;
    if (!draining_ && !accepting_ && active_ < max_connections_) set_accepting(true);
    exit_if_done();
}

void Worker::on_signal(int sig, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    switch (sig) {
        case SIGQUIT:
            w->begin_graceful_shutdown();
            break;
        case SIGTERM:
        case SIGINT:
            w->draining_ = true;
            event_base_loopbreak(w->base_);
            break;
        case SIGUSR1: {
            log::reopen();
            for (const Module* m : compiled_modules()) {
                if (m->before_reopen != nullptr) m->before_reopen(w->generation());
            }
            std::string error;
            for (const auto& f : w->generation().open_files.all()) {
                if (!f->reopen(error)) LOG_ERROR("%s", error.c_str());
            }
            break;
        }
        default:
            break;  // HUP and WINCH are the master's
    }
}

void Worker::begin_graceful_shutdown() {
    if (draining_) return;
    draining_ = true;
    set_accepting(false);
    for (const ListenSocket& s : params_.sockets) ::close(s.fd);  // the master keeps its copy
    LOG_NOTICE("gracefully shutting down");
    const CoreConf& core = core_conf(generation());
    if (core.worker_shutdown_timeout_ms) {
        shutdown_timer_ = evtimer_new(base_, on_shutdown_timeout, this);
        uint64_t ms = *core.worker_shutdown_timeout_ms;
        timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
        evtimer_add(shutdown_timer_, &tv);
    }
    for (HttpConnection* c = connections_; c != nullptr;) {
        HttpConnection* next = c->next;
        c->drain();
        c = next;
    }
    exit_if_done();
}

void Worker::on_shutdown_timeout(int, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    LOG_NOTICE("worker_shutdown_timeout expired: closing %zu connections", w->active_);
    w->close_all();
    event_base_loopbreak(w->base_);
}

void Worker::close_all() {
    while (connections_ != nullptr) connections_->close();
}

void Worker::exit_if_done() {
    if (draining_ && active_ == 0) event_base_loopbreak(base_);
}

int run_worker(const WorkerParams& params) {
    Worker w(params);
    return w.run();
}

}  // namespace tollgate::worker
