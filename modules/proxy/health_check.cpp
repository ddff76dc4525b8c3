#include "modules/proxy/health_check.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "core/http/response_head.hpp"
#include "core/log.hpp"

namespace tollgate::proxy {

namespace {

constexpr size_t kMaxProbeHead = 16384;

bool process_alive(int32_t pid) {
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

class UpstreamChecker;

// One server's probe: connect, send the GET, read the response head, judge, close.
class Probe final : public StreamHandler {
  public:
    Probe(UpstreamChecker& owner, size_t server, EventLoop& loop);
    bool active() const { return conn_ != nullptr; }
    void start();
    void on_connected() override;
    void on_readable() override;
    void on_drained() override {}
    void on_stream_event(StreamEvent e) override {
        done(false, e == StreamEvent::ConnectTimeout ? "connect timed out"
                    : e == StreamEvent::Eof          ? "connection closed before a response"
                                                     : "connect() failed or connection lost");
    }

  private:
    void done(bool ok, const char* why);

    UpstreamChecker& owner_;
    size_t server_;
    EventLoop& loop_;
    std::unique_ptr<Stream> conn_;
    std::unique_ptr<Timer> timer_;
    http::ResponseLimits limits_{8192, kMaxProbeHead, 100};
    http::ResponseHeadScanner scanner_{limits_};
    int status_ = 0;
};

class UpstreamChecker {
  public:
    UpstreamChecker(const Upstream& up, EventLoop& loop)
        : up_(up),
          shm_(UpstreamShm::attach(up.zone->data(), static_cast<uint32_t>(up.servers.size()))),
          loop_(loop),
          pid_(getpid()) {
        for (size_t i = 0; i < up.servers.size(); ++i) {
            probes_.push_back(std::make_unique<Probe>(*this, i, loop));
        }
        tick_ = loop.make_timer([this] { on_tick(); });
        tick_->start(0);  // at once: a fresh worker (or generation) checks without waiting
    }
    ~UpstreamChecker() {
        tick_->stop();
        probes_.clear();  // closes probes under way; their verdicts are dropped
        ShmLock lock(shm_->mutex);
        if (shm_->prober_pid.load(std::memory_order_relaxed) == pid_) {
            shm_->prober_pid.store(0, std::memory_order_relaxed);
            shm_->prober_lease_until_ms.store(0, std::memory_order_relaxed);
        }
    }
    UpstreamChecker(const UpstreamChecker&) = delete;
    UpstreamChecker& operator=(const UpstreamChecker&) = delete;

    const Upstream& upstream() const { return up_; }
    const HealthCheckConf& conf() const { return up_.health; }

    // A probe's verdict on server `i`.
    void result(size_t i, bool ok, const char* why) {
        const UpstreamServer& s = up_.servers[i];
        PeerShm& p = shm_->peers()[i];
        HealthEvent ev;
        {
            ShmLock lock(shm_->mutex);
            ev = health_result(p, up_.health, ok);
        }
        if (!ok) {
            LOG_INFO("health check of server %s in upstream \"%s\" failed: %s", s.addr_text.c_str(),
                     up_.name.c_str(), why);
        }
        if (ev == HealthEvent::Down) {
            LOG_NOTICE(
                "upstream server %s in upstream \"%s\" is down: health check failed %d "
                "time(s) (%s)",
                s.addr_text.c_str(), up_.name.c_str(), up_.health.fails, why);
        } else if (ev == HealthEvent::Up) {
            LOG_NOTICE(
                "upstream server %s in upstream \"%s\" is up: health check passed %d "
                "time(s)",
                s.addr_text.c_str(), up_.name.c_str(), up_.health.passes);
        }
    }
    void count_probe(size_t i) {
        shm_->peers()[i].health_probes.fetch_add(1, std::memory_order_relaxed);
    }

  private:
    // Takes or renews the prober lease; true when this worker is the prober.
    bool take_lease(int64_t now) {
        ShmLock lock(shm_->mutex);
        int32_t owner = shm_->prober_pid.load(std::memory_order_relaxed);
        int64_t until = shm_->prober_lease_until_ms.load(std::memory_order_relaxed);
        if (owner != pid_ && owner != 0 && now < until && process_alive(owner)) return false;
        if (owner != pid_) {
            LOG_INFO("health checks of upstream \"%s\" run in this worker", up_.name.c_str());
        }
        shm_->prober_pid.store(pid_, std::memory_order_relaxed);
        int64_t lease =
            2 * static_cast<int64_t>(up_.health.interval_ms + up_.health.timeout_ms) + 1000;
        shm_->prober_lease_until_ms.store(now + lease, std::memory_order_relaxed);
        return true;
    }

    void on_tick() {
        tick_->start(up_.health.interval_ms);
        if (shm_ == nullptr || !take_lease(mono_ms())) return;
        for (size_t i = 0; i < probes_.size(); ++i) {
            if (up_.servers[i].down || probes_[i]->active()) continue;
            probes_[i]->start();  // may complete at once (no socket): never touches probes_
        }
    }

    const Upstream& up_;
    UpstreamShm* shm_;
    EventLoop& loop_;
    int32_t pid_;
    std::vector<std::unique_ptr<Probe>> probes_;
    std::unique_ptr<Timer> tick_;
};

Probe::Probe(UpstreamChecker& owner, size_t server, EventLoop& loop)
    : owner_(owner), server_(server), loop_(loop) {
    timer_ = loop.make_timer([this] { done(false, "timed out"); });
}

void Probe::start() {
    const UpstreamServer& s = owner_.upstream().servers[server_];
    scanner_.reset();
    status_ = 0;
    owner_.count_probe(server_);
    timer_->start(owner_.conf().timeout_ms);
    conn_ = loop_.connect(reinterpret_cast<const sockaddr*>(&s.addr), s.addr_len, *this,
                          owner_.conf().timeout_ms);
    if (conn_ == nullptr) {
        timer_->stop();
        owner_.result(server_, false, "socket() failed");
    }
}

void Probe::on_connected() {
    const Upstream& up = owner_.upstream();
    std::string req = "GET " + owner_.conf().uri + " HTTP/1.1\r\nHost: " + up.name +
                      "\r\nUser-Agent: tollgate-health-check\r\nConnection: close\r\n\r\n";
    conn_->set_read_limit(kMaxProbeHead + 1);
    conn_->output().append(req);
    conn_->resume_reading();
    conn_->flush(owner_.conf().timeout_ms);  // last: a failure reports through on_stream_event
}

void Probe::on_readable() {
    Buffer& in = conn_->input();
    std::string_view bytes = in.pullup(std::min(in.size(), kMaxProbeHead));
    auto st = scanner_.scan(bytes);
    if (st == http::ResponseHeadScanner::Status::NeedMore) {
        if (in.size() >= kMaxProbeHead) done(false, "response head too big");
        return;
    }
    if (st == http::ResponseHeadScanner::Status::Error) {
        done(false, "invalid response head");
        return;
    }
    http::ResponseHead head;
    if (!http::parse_response_head(bytes.substr(0, scanner_.head_length()), limits_,
                                   http::Method::Get, head)) {
        done(false, "invalid response head");
        return;
    }
    if (head.informational()) {  // 100, 103: the final response follows
        in.drain(scanner_.head_length());
        scanner_.reset();
        if (!in.empty()) on_readable();
        return;
    }
    status_ = head.status;
    const HealthCheckConf& c = owner_.conf();
    if (status_ >= c.status_min && status_ <= c.status_max) {
        done(true, "");
    } else {
        char why[48];
        std::snprintf(why, sizeof(why), "status %d", status_);
        done(false, why);
    }
}

void Probe::done(bool ok, const char* why) {
    timer_->stop();
    conn_.reset();  // from inside the stream's own callback: streams allow it (as the pool does)
    owner_.result(server_, ok, why);
}

class WorkerHealthChecks final : public HealthChecks {
  public:
    std::vector<std::unique_ptr<UpstreamChecker>> checkers;
};

}  // namespace

std::unique_ptr<HealthChecks> start_health_checks(const ProxyMainConf& main, EventLoop& loop) {
    auto all = std::make_unique<WorkerHealthChecks>();
    for (const auto& up : main.upstreams) {
        if (!up->health.enabled || !up->zone) continue;
        all->checkers.push_back(std::make_unique<UpstreamChecker>(*up, loop));
    }
    if (all->checkers.empty()) return nullptr;
    return all;
}

}  // namespace tollgate::proxy
