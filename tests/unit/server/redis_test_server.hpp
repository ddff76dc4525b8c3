// A real redis-server for tests (the Debian package's /usr/bin/redis-server): started on a free
// loopback port with no persistence, and killed, paused or restarted on the same port.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace tollgate::testing {

inline constexpr const char* kRedisServerBin = "/usr/bin/redis-server";

inline bool redis_server_installed() {
    return ::access(kRedisServerBin, X_OK) == 0;
}

class RedisTestServer {
  public:
    // `extra`: more "--name value" arguments (e.g. {"--requirepass", "pw"}).
    explicit RedisTestServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
        port_ = free_port();
        char tmpl[] = "/tmp/tollgate-redis-XXXXXX";
        if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
    }
    ~RedisTestServer() {
        kill();
        if (!dir_.empty()) {
            ::unlink((dir_ + "/redis.sock").c_str());
            ::rmdir(dir_.c_str());
        }
    }
    RedisTestServer(const RedisTestServer&) = delete;
    RedisTestServer& operator=(const RedisTestServer&) = delete;

    uint16_t port() const { return port_; }
    std::string unix_path() const { return dir_ + "/redis.sock"; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

    // Starts the server and waits (at most 10 s) until it accepts connections.
    bool start() {
        if (pid_ > 0) return true;
        std::vector<std::string> args = {kRedisServerBin,
                                         "--port",
                                         std::to_string(port_),
                                         "--bind",
                                         "127.0.0.1",
                                         "--save",
                                         "",
                                         "--appendonly",
                                         "no",
                                         "--daemonize",
                                         "no",
                                         "--dir",
                                         dir_,
                                         "--unixsocket",
                                         unix_path(),
                                         "--enable-debug-command",
                                         "local"};
        args.insert(args.end(), extra_.begin(), extra_.end());
        pid_ = ::fork();
        if (pid_ < 0) return false;
        if (pid_ == 0) {
            const int null = ::open("/dev/null", O_RDWR);
            if (null >= 0) {
                ::dup2(null, 0);
                ::dup2(null, 1);
                ::dup2(null, 2);
            }
            std::vector<char*> argv;
            for (std::string& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(kRedisServerBin, argv.data());
            ::_exit(127);
        }
        for (int i = 0; i < 1000; ++i) {
            if (accepts()) return true;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    // SIGKILL, and reaped: connections see a reset or EOF.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);  // kills a stopped process too (no SIGCONT: it would answer first)
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    // SIGSTOP / SIGCONT: the server holds connections but answers nothing. pause() returns once
    // the process is really stopped (the signal is asynchronous), waiting at most 5 s.
    void pause() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGSTOP);
        const std::string stat = "/proc/" + std::to_string(pid_) + "/stat";
        for (int i = 0; i < 5000; ++i) {
            std::ifstream in(stat);
            std::string text((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
            const size_t paren = text.rfind(')');
            if (paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'T') {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    void resume() {
        if (pid_ > 0) ::kill(pid_, SIGCONT);
    }
    bool restart() {
        kill();
        return start();
    }

  private:
    static uint16_t free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(sin);
        ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
        ::close(fd);
        return ntohs(sin.sin_port);
    }

    bool accepts() const {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port = htons(port_);
        const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
        ::close(fd);
        return ok;
    }

    std::vector<std::string> extra_;
    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace tollgate::testing
