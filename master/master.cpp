#include "master/master.hpp"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/config/error.hpp"
#include "core/core_module.hpp"
#include "core/log.hpp"
#include "worker/worker.hpp"

namespace tollgate::master {

namespace {

uint64_t monotonic_usec() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

const char* signal_name(int sig) {
    const char* name = sigdescr_np(sig);
    return name != nullptr ? name : "unknown";
}

// How long TERM waits for workers before KILL.
constexpr int kFastStopGraceSeconds = 5;

}  // namespace

Master::Master(std::shared_ptr<const ConfigGeneration> generation, BuildOptions options,
               std::string cmdline_error_log)
    : current_(std::move(generation)),
      options_(std::move(options)),
      cmdline_error_log_(std::move(cmdline_error_log)) {}

bool Master::apply_logging(const ConfigGeneration& gen) {
    const CoreConf& core = core_conf(gen);
    std::string path = !cmdline_error_log_.empty() ? cmdline_error_log_ : *core.error_log_path;
    std::string error;
    if (!log::open(path, core.error_log_level, error)) {
        LOG_ERROR("%s", error.c_str());
        return false;
    }
    return true;
}

// Looks up the worker user and group of the current generation. Returns false (and logs why)
// when they cannot be resolved: workers must then not start, rather than run as root.
bool Master::resolve_user() {
    drop_privileges_ = false;
    if (geteuid() != 0) return true;
    const CoreConf& core = core_conf(*current_);
    user_name_ = core.user.value_or("nobody");
    struct passwd* pw = getpwnam(user_name_.c_str());
    if (pw == nullptr) {
        LOG_ERROR("getpwnam(\"%s\") failed", user_name_.c_str());
        return false;
    }
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    if (core.group) {
        struct group* gr = getgrnam(core.group->c_str());
        if (gr == nullptr) {
            LOG_ERROR("getgrnam(\"%s\") failed", core.group->c_str());
            return false;
        }
        gid_ = gr->gr_gid;
    }
    drop_privileges_ = uid_ != 0;
    if (drop_privileges_) {
        log::chown_to(uid_, gid_);
        for (const auto& f : current_->open_files.all()) f->chown_to(uid_, gid_);
    }
    return true;
}

pid_t Master::spawn(int slot, const std::shared_ptr<const ConfigGeneration>& gen) {
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERROR("fork() failed (%s)", std::strerror(errno));
        return -1;
    }
    if (pid > 0) return pid;

    // The worker.
    log::set_worker_slot(slot);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    worker::WorkerParams params;
    params.slot = slot;
    params.generation = gen;
    params.sockets = listeners_.for_slot(*gen, slot, core_conf(*gen).workers());
    for (int fd : listeners_.all_fds()) {
        bool mine = std::any_of(params.sockets.begin(), params.sockets.end(),
                                [fd](const worker::ListenSocket& s) { return s.fd == fd; });
        if (!mine) ::close(fd);
    }
    const CoreConf& core = core_conf(*gen);
    if (core.worker_rlimit_nofile) {
        rlimit rl{*core.worker_rlimit_nofile, *core.worker_rlimit_nofile};
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            LOG_ERROR("setrlimit(RLIMIT_NOFILE, %llu) failed (%s)",
                      static_cast<unsigned long long>(*core.worker_rlimit_nofile),
                      std::strerror(errno));
        }
    }
    if (drop_privileges_) {
        if (setgid(gid_) != 0 || initgroups(user_name_.c_str(), gid_) != 0 || setuid(uid_) != 0) {
            LOG_ERROR("cannot switch to user \"%s\" (%s)", user_name_.c_str(),
                      std::strerror(errno));
            _exit(2);
        }
        prctl(PR_SET_DUMPABLE, 1);
    }
    if (getppid() == 1) _exit(0);  // the master died before we set PDEATHSIG
    int rc = worker::run_worker(params);
    _exit(rc);
}

bool Master::start_generation(std::shared_ptr<const ConfigGeneration> gen) {
    int slots = core_conf(*gen).workers();
    std::string error;
    WorkerOwner owner{drop_privileges_, static_cast<uint32_t>(uid_), static_cast<uint32_t>(gid_)};
    for (const Module* m : compiled_modules()) {
        if (m->init_master != nullptr && !m->init_master(*gen, owner, error)) {
            LOG_ERROR("%s", error.c_str());
            return false;
        }
    }
    if (!listeners_.prepare(*gen, slots, error)) {
        LOG_ERROR("%s", error.c_str());
        return false;
    }
    ++generation_number_;
    for (int slot = 0; slot < slots; ++slot) {
        pid_t pid = spawn(slot, gen);
        if (pid > 0) workers_.push_back({pid, slot, generation_number_, gen});
    }
    return true;
}

void Master::signal_workers(int sig, bool old_only) {
    for (WorkerProc& w : workers_) {
        if (old_only && w.generation_number == generation_number_) continue;
        if (sig == SIGQUIT || sig == SIGTERM) w.exiting = true;
        kill(w.pid, sig);
    }
}

void Master::reload() {
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               static_cast<unsigned long long>(monotonic_usec()));
    LOG_NOTICE("reconfiguring");
    std::shared_ptr<const ConfigGeneration> gen;
    try {
        gen = GenerationBuilder::build(options_);
    } catch (const conf::ConfigError& e) {
        LOG_ERROR("reload failed, keeping the running configuration: %s", e.what());
        sd_notify(0, "READY=1\nSTATUS=reload failed, old configuration kept");
        return;
    } catch (const std::exception& e) {
        LOG_ERROR("reload failed, keeping the running configuration: %s", e.what());
        sd_notify(0, "READY=1\nSTATUS=reload failed, old configuration kept");
        return;
    }
    auto previous = current_;
    current_ = gen;
    apply_logging(*gen);
    if (!resolve_user() || !start_generation(gen)) {
        LOG_ERROR("reload failed, keeping the running configuration");
        current_ = previous;
        apply_logging(*previous);
        resolve_user();
        sd_notify(0, "READY=1");
        return;
    }
    signal_workers(SIGQUIT, true);
    // Sockets the new generation does not use close in the master now; old workers still hold
    // their copies until they finish.
    listeners_.retain_only(*current_);
    sd_notify(0, "READY=1\nSTATUS=configuration reloaded");
}

void Master::reopen_logs() {
    LOG_NOTICE("reopening logs");
    log::reopen();
    std::string error;
    for (const auto& f : current_->open_files.all()) {
        if (!f->reopen(error)) LOG_ERROR("%s", error.c_str());
        if (drop_privileges_) f->chown_to(uid_, gid_);
    }
    if (drop_privileges_) log::chown_to(uid_, gid_);
    signal_workers(SIGUSR1, false);
}

void Master::reap() {
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        auto it = std::find_if(workers_.begin(), workers_.end(),
                               [pid](const WorkerProc& w) { return w.pid == pid; });
        if (it == workers_.end()) continue;
        WorkerProc w = *it;
        workers_.erase(it);
        if (WIFSIGNALED(status)) {
            LOG_ERROR("worker process %d (slot %d) exited on signal %d (%s)", pid, w.slot,
                      WTERMSIG(status), signal_name(WTERMSIG(status)));
        } else if (!w.exiting) {
            LOG_ERROR("worker process %d (slot %d) exited with code %d", pid, w.slot,
                      WEXITSTATUS(status));
        } else {
            LOG_NOTICE("worker process %d (slot %d) exited with code %d", pid, w.slot,
                       WEXITSTATUS(status));
        }
        bool current = w.generation_number == generation_number_;
        bool fatal = WIFEXITED(status) && WEXITSTATUS(status) == 2;
        if (current && !w.exiting && !stopping_ && !fatal) {
            pid_t np = spawn(w.slot, current_);
            if (np > 0) {
                LOG_NOTICE("respawned worker process %d into slot %d", np, w.slot);
                workers_.push_back({np, w.slot, generation_number_, current_});
            }
        }
    }
}

int Master::run() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGCHLD, SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGWINCH, SIGUSR2}) {
        sigaddset(&set, sig);
    }
    sigprocmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);

    apply_logging(*current_);
    if (!resolve_user() || !start_generation(current_)) return 1;
    sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=serving", static_cast<int>(getpid()));
    LOG_NOTICE("tollgate/%s started, %d worker processes", TOLLGATE_VERSION,
               core_conf(*current_).workers());

    uint64_t stop_deadline = 0;
    for (;;) {
        timespec timeout{1, 0};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &timeout);
        if (sig == SIGCHLD) {
            reap();
        } else if (sig == SIGHUP && !stopping_) {
            reload();
        } else if (sig == SIGUSR1) {
            reopen_logs();
        } else if (sig == SIGQUIT && !stopping_) {
            LOG_NOTICE("gracefully shutting down");
            sd_notify(0, "STOPPING=1");
            stopping_ = true;
            listeners_.close_all();  // new connections are refused, not queued for nobody
            signal_workers(SIGQUIT, false);
        } else if ((sig == SIGTERM || sig == SIGINT) && !fast_stop_) {
            LOG_NOTICE("exiting");
            sd_notify(0, "STOPPING=1");
            stopping_ = true;
            fast_stop_ = true;
            listeners_.close_all();
            signal_workers(SIGTERM, false);
            stop_deadline = monotonic_usec() + kFastStopGraceSeconds * 1000000ull;
        }
        reap();  // a SIGCHLD may have been merged with another signal
        if (stopping_ && workers_.empty()) break;
        if (fast_stop_ && monotonic_usec() > stop_deadline) {
            signal_workers(SIGKILL, false);
            stop_deadline = monotonic_usec() + 1000000;
        }
    }
    LOG_NOTICE("exit");
    return 0;
}

}  // namespace tollgate::master
