// The master process: owns the config generations and listening sockets, forks and reaps
// workers, and turns signals into reloads and shutdowns.
//   HUP  reload: parse anew; if good, start a new generation on the same sockets and QUIT the old
//   QUIT graceful stop        TERM, INT  fast stop        USR1 reopen log files
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "core/generation.hpp"
#include "master/listeners.hpp"

namespace tollgate::master {

class Master {
  public:
    Master(std::shared_ptr<const ConfigGeneration> generation, BuildOptions options,
           std::string cmdline_error_log);
    // Runs until the workers are gone after QUIT or TERM. Returns the exit code.
    int run();

  private:
    struct WorkerProc {
        pid_t pid;
        int slot;
        uint64_t generation_number;
        std::shared_ptr<const ConfigGeneration> generation;
        bool exiting = false;
    };

    bool start_generation(std::shared_ptr<const ConfigGeneration> gen);
    pid_t spawn(int slot, const std::shared_ptr<const ConfigGeneration>& gen);
    void reload();
    void reopen_logs();
    void reap();
    void signal_workers(int sig, bool old_only);
    bool apply_logging(const ConfigGeneration& gen);
    bool resolve_user();

    std::shared_ptr<const ConfigGeneration> current_;
    uint64_t generation_number_ = 0;
    BuildOptions options_;
    std::string cmdline_error_log_;
    Listeners listeners_;
    std::vector<WorkerProc> workers_;
    bool stopping_ = false;
    bool fast_stop_ = false;
    bool drop_privileges_ = false;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
    std::string user_name_;
};

}  // namespace tollgate::master
