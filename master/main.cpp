// tollgate's command line, as nginx's: -c -p -e -g -t -T -s -v -V -h.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "core/config/error.hpp"
#include "core/core_module.hpp"
#include "core/generation.hpp"
#include "core/log.hpp"
#include "master/master.hpp"

namespace {

using tollgate::BuildOptions;
using tollgate::ConfigGeneration;

void usage(std::FILE* out) {
    std::fprintf(out,
                 "Usage: tollgate [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] "
                 "[-g directives]\n\n"
                 "Options:\n"
                 "  -?,-h         : this help\n"
                 "  -v            : show version and exit\n"
                 "  -V            : show version, compiled-in modules and defaults, and exit\n"
                 "  -t            : test configuration and exit\n"
                 "  -T            : test configuration, dump it and exit\n"
                 "  -q            : suppress non-error messages during configuration testing\n"
                 "  -s signal     : send signal to a master process: stop, quit, reopen, reload\n"
                 "  -p prefix     : set prefix path (default: %s)\n"
                 "  -e filename   : set error log file (default: %s)\n"
                 "  -c filename   : set configuration file (default: %s)\n"
                 "  -g directives : set global directives out of configuration file\n",
                 TOLLGATE_DEFAULT_PREFIX, TOLLGATE_DEFAULT_ERROR_LOG_PATH,
                 TOLLGATE_DEFAULT_CONF_PATH);
    for (const tollgate::Module* m : tollgate::compiled_modules()) {  // subcommands
        if (m->run_command == nullptr) continue;
        std::fprintf(out, "\nCommand: tollgate %.*s ... (tollgate %.*s -h for help)\n",
                     static_cast<int>(m->command.size()), m->command.data(),
                     static_cast<int>(m->command.size()), m->command.data());
    }
}

void version(bool full) {
    std::fprintf(stderr, "tollgate version: tollgate/%s\n", TOLLGATE_VERSION);
    if (!full) return;
    std::fprintf(stderr, "built with OpenSSL 3, libevent 2.1, PCRE2 (JIT)\n");
    std::fprintf(stderr, "defaults: prefix=%s conf=%s pid=%s error_log=%s\n",
                 TOLLGATE_DEFAULT_PREFIX, TOLLGATE_DEFAULT_CONF_PATH, TOLLGATE_DEFAULT_PID_PATH,
                 TOLLGATE_DEFAULT_ERROR_LOG_PATH);
    std::fprintf(stderr, "modules:");
    for (const tollgate::Module* m : tollgate::compiled_modules()) {
        std::fprintf(stderr, " %.*s", static_cast<int>(m->name.size()), m->name.data());
    }
    std::fprintf(stderr, "\n");
}

int send_signal(const ConfigGeneration& gen, const std::string& name) {
    int sig = name == "stop"     ? SIGTERM
              : name == "quit"   ? SIGQUIT
              : name == "reload" ? SIGHUP
              : name == "reopen" ? SIGUSR1
                                 : 0;
    if (sig == 0) {
        std::fprintf(stderr, "tollgate: invalid option: \"-s %s\"\n", name.c_str());
        return 1;
    }
    const std::string& pid_path = *tollgate::core_conf(gen).pid_path;
    std::ifstream in(pid_path);
    if (!in) {
        std::fprintf(stderr, "tollgate: [error] open() \"%s\" failed (%s)\n", pid_path.c_str(),
                     std::strerror(errno));
        return 1;
    }
    long pid = 0;
    if (!(in >> pid) || pid <= 0) {
        std::fprintf(stderr, "tollgate: [error] invalid PID number in \"%s\"\n", pid_path.c_str());
        return 1;
    }
    if (kill(static_cast<pid_t>(pid), sig) != 0) {
        std::fprintf(stderr, "tollgate: [error] kill(%ld, %d) failed (%s)\n", pid, sig,
                     std::strerror(errno));
        return 1;
    }
    return 0;
}

bool write_pid(const std::string& path) {
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        std::fprintf(stderr, "tollgate: [emerg] open() \"%s\" failed (%s)\n", tmp.c_str(),
                     std::strerror(errno));
        return false;
    }
    std::string text = std::to_string(getpid()) + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok && ::rename(tmp.c_str(), path.c_str()) == 0;
}

// Detaches from the terminal (daemon on). The parent returns only in the child.
bool daemonize() {
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid > 0) _exit(0);
    setsid();
    int fd = ::open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        if (fd > STDERR_FILENO) ::close(fd);
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    // `tollgate COMMAND ...`: a module's subcommand (tollgate key add ...), no config involved.
    if (argc > 1 && argv[1][0] != '-') {
        for (const tollgate::Module* m : tollgate::compiled_modules()) {
            if (m->run_command != nullptr && m->command == argv[1]) {
                return m->run_command(argc - 1, argv + 1);
            }
        }
    }  // otherwise "invalid option", as before
    BuildOptions options;
    options.running_as_root = geteuid() == 0;
    bool test = false;
    bool dump = false;
    bool quiet = false;
    std::string signal_name;
    std::string error_log;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto need_value = [&](const char* opt) -> std::string {
            if (a.size() > 2) return a.substr(2);
            if (i + 1 >= argc) {
                std::fprintf(stderr, "tollgate: option \"%s\" requires %s\n", opt,
                             opt[1] == 's' ? "signal name" : "file name");
                std::exit(1);
            }
            return argv[++i];
        };
        if (a == "-h" || a == "-?") {
            usage(stdout);
            return 0;
        } else if (a == "-v") {
            version(false);
            return 0;
        } else if (a == "-V") {
            version(true);
            return 0;
        } else if (a == "-t") {
            test = true;
        } else if (a == "-T") {
            test = dump = true;
        } else if (a == "-q") {
            quiet = true;
        } else if (a.rfind("-s", 0) == 0) {
            signal_name = need_value("-s");
        } else if (a.rfind("-p", 0) == 0) {
            options.prefix = need_value("-p");
        } else if (a.rfind("-c", 0) == 0) {
            options.conf_path = need_value("-c");
        } else if (a.rfind("-e", 0) == 0) {
            error_log = need_value("-e");
        } else if (a.rfind("-g", 0) == 0) {
            options.global_directives = need_value("-g");
        } else {
            std::fprintf(stderr, "tollgate: invalid option: \"%s\"\n", a.c_str());
            usage(stderr);
            return 1;
        }
    }

    std::shared_ptr<const ConfigGeneration> gen;
    try {
        gen = tollgate::GenerationBuilder::build(options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tollgate: [emerg] %s\n", e.what());
        if (test) {
            std::fprintf(stderr, "tollgate: configuration file %s test failed\n",
                         tollgate::GenerationBuilder::resolve_conf_path(options).c_str());
        }
        return 1;
    }
    if (test) {
        if (!quiet) {
            std::fprintf(stderr, "tollgate: the configuration file %s syntax is ok\n",
                         gen->conf_path.c_str());
            std::fprintf(stderr, "tollgate: configuration file %s test is successful\n",
                         gen->conf_path.c_str());
        }
        if (dump) {
            for (const auto& f : gen->files) {
                std::printf("# configuration file %s:\n%s\n", f.path.c_str(), f.content.c_str());
            }
        }
        return 0;
    }
    if (!signal_name.empty()) return send_signal(*gen, signal_name);

    if (!error_log.empty() && error_log != "stderr") {
        error_log = error_log[0] == '/' ? error_log : gen->prefix + error_log;
    }
    const tollgate::CoreConf& core = tollgate::core_conf(*gen);
    if (core.daemon.value_or(true) && !daemonize()) {
        std::fprintf(stderr, "tollgate: [emerg] fork() failed (%s)\n", std::strerror(errno));
        return 1;
    }
    if (!write_pid(*core.pid_path)) {
        std::fprintf(stderr, "tollgate: [emerg] cannot write pid file \"%s\"\n",
                     core.pid_path->c_str());
        return 1;
    }
    std::string pid_path = *core.pid_path;
    int rc;
    {
        tollgate::master::Master master(gen, options, error_log);
        gen.reset();
        rc = master.run();
    }
    ::unlink(pid_path.c_str());
    return rc;
}
