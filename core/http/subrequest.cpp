#include "core/http/subrequest.hpp"

#include <unistd.h>

#include <memory>
#include <optional>

#include "core/event_loop.hpp"
#include "core/http/http_config.hpp"
#include "core/log.hpp"

namespace tollgate::http {

namespace {

class Subrequest;
EventLoop* g_loop = nullptr;
Subrequest* g_list = nullptr;
size_t g_count = 0;
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

class Subrequest final : public RequestDriver {
  public:
    Subrequest(const Request& parent, std::string_view uri, const Buffer* body)
        : arena_(1024), generation_(parent.generation) {
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
        r.server = parent.server;
        r.uri = r.copy(uri);
        r.args = r.copy(parent.args);
        r.location = r.server->find_location(r.uri);
        next_ = g_list;
        if (g_list != nullptr) g_list->prev_ = this;
        g_list = this;
        ++g_count;
    }

    ~Subrequest() {
        if (prev_ != nullptr)
            prev_->next_ = next_;
        else
            g_list = next_;
        if (next_ != nullptr) next_->prev_ = prev_;
        --g_count;
        if (r_ && r_->body.kind == BodyKind::File && r_->body.fd >= 0) ::close(r_->body.fd);
        r_.reset();
    }

    void start() { run_phases(0, 0); }

    // Aborts what runs for the request; safe at any time.
    void cancel() {
        if (r_ && r_->task != nullptr) std::exchange(r_->task, nullptr)->abort();
        finished_ = true;
    }

    void resume(Request& r, Verdict v) override {
        if (finished_) return;
        if (v == Verdict::Next) {
            run_phases(phase_, step_);
        } else if (v == Verdict::Respond && r.redirect_pending()) {
            run_phases(static_cast<size_t>(Phase::Content) + 1, 0);
        } else if (v == Verdict::Respond) {
            responded();
        }
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

    void run_phases(size_t phase, size_t step) {
        Request& r = *r_;
        constexpr size_t kContent = static_cast<size_t>(Phase::Content);
        for (;;) {
            bool done = false;
            for (; phase <= kContent && !done; ++phase, step = 0) {
                const auto& steps = r.location->phases[phase];
                for (; step < steps.size(); ++step) {
                    Verdict v = steps[step].handler(r, steps[step].data);
                    if (v == Verdict::Next) continue;
                    if (v == Verdict::Suspend) {
                        phase_ = phase;
                        step_ = step + 1;
                        return;
                    }
                    done = true;
                    break;
                }
            }
            if (!done) (void)r.respond_error(404);
            if (!r.redirect_pending() || ++redirects_ > 10) break;
            std::string_view named = r.named_target();
            r.clear_redirect();
            if (!named.empty()) {
                auto it = r.server->named.find(named);
                if (it == r.server->named.end()) break;
                r.location = it->second;
            } else {
                r.location = r.server->find_location(r.uri);
            }
            phase = static_cast<size_t>(Phase::Rewrite);
            step = 0;
        }
        responded();
    }

    void responded() {
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
        if (g_reaper) g_reaper->start(0);
    }

  public:
    bool finished() const { return finished_; }

  private:
    std::pmr::monotonic_buffer_resource arena_;
    const ConfigGeneration& generation_;
    ConnectionInfo conn_;
    std::optional<Request> r_;
    Buffer body_;
    size_t phase_ = 0;
    size_t step_ = 0;
    int redirects_ = 0;
    bool finished_ = false;
};

void reap() {
    for (Subrequest* s = g_list; s != nullptr;) {
        Subrequest* next = s->next_;
        if (s->finished()) delete s;
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
    if (g_loop == nullptr || g_count >= max_in_flight) return false;
    auto* s = new Subrequest(parent, uri, body);
    s->start();
    return true;
}

bool is_subrequest(const Request& r) {
    return r.driver != nullptr && dynamic_cast<Subrequest*>(r.driver) != nullptr;
}

size_t detached_subrequests_in_flight() {
    return g_count;
}

void cancel_detached_subrequests() {
    while (g_list != nullptr) {
        Subrequest* s = g_list;
        s->cancel();
        delete s;
    }
    g_reaper.reset();
    g_loop = nullptr;
}

}  // namespace tollgate::http
