#include "core/log.hpp"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace tollgate::log {

namespace {
int g_fd = STDERR_FILENO;
std::string g_path = "stderr";
Level g_level = Level::Warn;  // until error_log is opened: config warnings show (as nginx -t)
int g_slot = -1;
bool g_opened = false;  // before the config's error_log: "tollgate: [level] ..." on stderr

constexpr const char* kNames[] = {"debug", "info", "notice", "warn",
                                  "error", "crit", "alert",  "emerg"};

int open_file(const std::string& path, std::string& error) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) error = "open() \"" + path + "\" failed (" + std::strerror(errno) + ")";
    return fd;
}
}  // namespace

bool parse_level(std::string_view name, Level& out) {
    for (int i = 0; i < 8; ++i) {
        if (name == kNames[i]) {
            out = static_cast<Level>(i);
            return true;
        }
    }
    return false;
}

bool open(const std::string& path, Level level, std::string& error) {
    int fd = STDERR_FILENO;
    if (path != "stderr") {
        fd = open_file(path, error);
        if (fd < 0) return false;
    }
    if (g_fd != STDERR_FILENO && g_fd != fd) ::close(g_fd);
    g_fd = fd;
    g_path = path;
    g_level = level;
    g_opened = true;
    return true;
}

void reopen() {
    if (g_path == "stderr") return;
    std::string error;
    int fd = open_file(g_path, error);
    if (fd < 0) {
        write(Level::Alert, "%s", error.c_str());
        return;
    }
    // dup2 keeps the fd number, so anything holding it (a child's stderr) follows the new file.
    ::dup2(fd, g_fd);
    ::close(fd);
}

int fd() {
    return g_fd;
}

void chown_to(unsigned uid, unsigned gid) {
    if (g_path != "stderr") {
        if (::fchown(g_fd, uid, gid) != 0) { /* the file may be on a filesystem without owners */
        }
    }
}

void set_worker_slot(int slot) {
    g_slot = slot;
}

bool enabled(Level level) {
    return level >= g_level;
}

void write(Level level, const char* fmt, ...) {
    char buf[4096];
    const char* name = kNames[static_cast<int>(level)];
    int n;
    if (!g_opened) {  // while the configuration is read: as nginx, "tollgate: [warn] ..."
        n = snprintf(buf, sizeof(buf), "tollgate: [%s] ", name);
    } else {
        struct timeval tv;
        gettimeofday(&tv, nullptr);
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        n = static_cast<int>(strftime(buf, sizeof(buf), "%Y/%m/%d %H:%M:%S", &tm));
        if (g_slot >= 0) {
            n += snprintf(buf + n, sizeof(buf) - n, " [%s] %d#%d: ", name,
                          static_cast<int>(getpid()), g_slot);
        } else {
            n += snprintf(buf + n, sizeof(buf) - n, " [%s] %d#master: ", name,
                          static_cast<int>(getpid()));
        }
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : std::min<int>(n + m, sizeof(buf) - 2);
    buf[n++] = '\n';
    ssize_t ignored = ::write(g_fd, buf, n);  // a failed log write has nowhere to be reported
    (void)ignored;
}

}  // namespace tollgate::log
