#include "core/http/subrequest.hpp"

#include <unistd.h>

#include <memory>
#include <optional>

#include "core/event_loop.hpp"
#include "core/http/http_config.hpp"
#include "core/http/phases.hpp"
#include "core/log.hpp"

namespace tollgate::http {

namespace {

class Subrequest;
EventLoop* g_loop = nullptr;
Subrequest* g_list = nullptr;
size_t g_detached = 0;            // detached ones in flight (the mirror cap)
std::unique_ptr<Timer> g_reaper;  // frees finished subrequests from the loop

bool ieq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// The parent's side of an awaited subrequest, in the parent's arena: its task while it waits
// (abort() when the client leaves) and a cleanup (the parent ends otherwise). Either cuts the
// link both ways; the subrequest then ends on its own.
struct AwaitLink final : RequestTask {
    Request* parent = nullptr;
    Subrequest* sub = nullptr;
    SubrequestDone done = nullptr;
    void* data = nullptr;

    void abort() override;
    static void cleanup(void* p) { static_cast<AwaitLink*>(p)->abort(); }
};

class Subrequest final : public RequestDriver {
  public:
    Subrequest(const Request& parent, std::string_view uri, const Buffer* body, AwaitLink* link)
        : arena_(1024), generation_(parent.generation), link_(link), detached_(link == nullptr) {
        conn_ = parent.conn;
        conn_.remote_addr = copy(parent.conn.remote_addr);
        conn_.server_addr = copy(parent.conn.server_addr);
        conn_.tls = nullptr;
        r_.emplace(&arena_, generation_, conn_, now_usec());
        Request& r = *r_;
        r.driver = this;
        const RequestHead& h = parent.head;
        r.head.method = h.method;
        r.head.method_name = r.copy(h.method_name);
        r.head.target = r.copy(h.target);
        r.head.path = r.copy(h.path);
        r.head.query = r.copy(h.query);
        r.head.host = r.copy(h.host);
        r.head.version_minor = h.version_minor;
        r.head.keep_alive = h.keep_alive;
        for (const Header& hd : h.headers) {
            if (body == nullptr &&
                (ieq(hd.name, "content-length") || ieq(hd.name, "transfer-encoding"))) {
                continue;
            }
            if (ieq(hd.name, "expect")) continue;
            r.head.headers.push_back(Header{r.copy(hd.name), r.copy(hd.value)});
        }
        if (body != nullptr) {
            r.head.framing = h.framing;
            r.head.content_length = h.content_length;
            body_.copy_from(*body);
        }
        r.header_only = h.method == Method::Head;
        r.subrequest =
            detached_ ? Request::SubrequestKind::Detached : Request::SubrequestKind::Awaited;
        r.server = parent.server;
        r.uri = r.copy(uri);
        if (detached_) {
            r.args = r.copy(parent.args);
        } else {  // as ngx_http_subrequest: the subrequest's own path, no args
            r.head.path = r.uri;
            r.head.query = {};
        }
        r.location = r.server->find_location(r.uri);
        next_ = g_list;
        if (g_list != nullptr) g_list->prev_ = this;
        g_list = this;
        if (detached_) ++g_detached;
    }

    ~Subrequest() {
        if (prev_ != nullptr)
            prev_->next_ = next_;
        else
            g_list = next_;
        if (next_ != nullptr) next_->prev_ = prev_;
        if (detached_) --g_detached;
        if (link_ != nullptr) link_->sub = nullptr;  // worker exit: the parent is gone too
        if (r_ && r_->body.kind == BodyKind::File && r_->body.fd >= 0) ::close(r_->body.fd);
        r_.reset();
    }

    void start() {
        if (link_ != nullptr) notify_ = g_loop->make_timer([this] { notify(); });
        if (run_phases(*r_)) responded();
    }

    // Aborts what runs for the request; safe at any time.
    void cancel() {
        if (r_ && r_->task != nullptr) std::exchange(r_->task, nullptr)->abort();
        finished_ = true;
    }

    // The parent stopped waiting: end now (freed from the loop).
    void unlink() {
        link_ = nullptr;
        if (notify_) notify_->stop();
        finish();
        if (g_reaper) g_reaper->start(0);
    }

    void resume(Request& r, Verdict v) override {
        if (finished_) return;
        if (resume_phases(r, v)) responded();
    }
    BodyRead read_body(Request& r, Buffer& out, size_t max) override {
        size_t n = out.move_from(body_, max);
        r.body_bytes_read += n;
        return n > 0 ? BodyRead::Data : BodyRead::Done;
    }
    void body_ready(Request&) override {
        if (!finished_) discard();
    }
    void end_tunnel(Request&) override { finish(); }

    Subrequest* next_ = nullptr;
    Subrequest* prev_ = nullptr;

  private:
    std::string_view copy(std::string_view s) {
        if (s.empty()) return {};
        char* p = static_cast<char*>(arena_.allocate(s.size(), 1));
        std::copy(s.begin(), s.end(), p);
        return {p, s.size()};
    }

    void responded() {
        if (link_ != nullptr) notify_->start(0);  // the parent hears from the loop
        if (r_->body.kind == BodyKind::Stream && r_->body.source != nullptr) {
            discard();
        } else {
            finish();
        }
    }

    // Pulls the response body and drops it, until it ends or must wait.
    void discard() {
        Buffer scratch;
        for (;;) {
            BodySource::Pull p = r_->body.source->pull(scratch, 64 * 1024);
            scratch.drain(scratch.size());
            if (p == BodySource::Pull::Data) continue;
            if (p == BodySource::Pull::Wait) return;
            break;
        }
        finish();
    }

    // Ends the subrequest; it is freed from the loop (never inside a handler's callback).
    void finish() {
        if (finished_) return;
        finished_ = true;
        if (r_->task != nullptr) std::exchange(r_->task, nullptr)->abort();
        if (g_reaper && link_ == nullptr) g_reaper->start(0);
    }

    // Hands the response head to the waiting parent, which may resume (and even end) inside.
    void notify() {
        AwaitLink* link = std::exchange(link_, nullptr);
        if (link == nullptr) return;
        link->sub = nullptr;
        Request& parent = *link->parent;
        if (parent.task == link) parent.task = nullptr;
        link->done(parent, *r_, link->data);
        if (finished_ && g_reaper) g_reaper->start(0);
    }

  public:
    // Freed by the reaper once finished and no parent waits to hear from it.
    bool reapable() const { return finished_ && link_ == nullptr; }

  private:
    std::pmr::monotonic_buffer_resource arena_;
    const ConfigGeneration& generation_;
    ConnectionInfo conn_;
    std::optional<Request> r_;
    Buffer body_;
    AwaitLink* link_;  // the waiting parent, until notified or it stops waiting
    std::unique_ptr<Timer> notify_;
    const bool detached_;
    bool finished_ = false;
};

void AwaitLink::abort() {
    if (sub != nullptr) std::exchange(sub, nullptr)->unlink();
}

void reap() {
    for (Subrequest* s = g_list; s != nullptr;) {
        Subrequest* next = s->next_;
        if (s->reapable()) delete s;
        s = next;
    }
}

}  // namespace

void subrequests_init(EventLoop& loop) {
    g_loop = &loop;
    g_reaper = loop.make_timer(reap);
}

bool start_detached_subrequest(const Request& parent, std::string_view uri, const Buffer* body,
                               size_t max_in_flight) {
    if (g_loop == nullptr || g_detached >= max_in_flight) return false;
    auto* s = new Subrequest(parent, uri, body, nullptr);
    s->start();
    return true;
}

bool start_awaited_subrequest(Request& parent, std::string_view uri, SubrequestDone done,
                              void* data) {
    if (g_loop == nullptr || parent.task != nullptr) return false;
    void* p = parent.arena->allocate(sizeof(AwaitLink), alignof(AwaitLink));
    auto* link = new (p) AwaitLink();
    link->parent = &parent;
    link->done = done;
    link->data = data;
    parent.add_cleanup(AwaitLink::cleanup, link);
    parent.task = link;
    link->sub = new Subrequest(parent, uri, nullptr, link);
    link->sub->start();  // may respond at once: the parent still hears from the loop
    return true;
}

bool is_subrequest(const Request& r) {
    return r.subrequest != Request::SubrequestKind::None;
}

size_t detached_subrequests_in_flight() {
    return g_detached;
}

void cancel_subrequests() {
    while (g_list != nullptr) {
        Subrequest* s = g_list;
        s->cancel();
        delete s;
    }
    g_reaper.reset();
    g_loop = nullptr;
}

}  // namespace tollgate::http
