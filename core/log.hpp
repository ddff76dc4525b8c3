// The error log: one per process, nginx's line format and levels.
//   2026/11/22 10:00:00 [error] 1234#0: message
#pragma once

#include <string>
#include <string_view>

namespace tollgate::log {

enum class Level : int { Debug = 0, Info, Notice, Warn, Error, Crit, Alert, Emerg };

// Parses "debug" ... "emerg"; returns false on an unknown name.
bool parse_level(std::string_view name, Level& out);

// Points the error log at `path` ("stderr" for standard error) with minimum `level`.
// Returns false (and keeps the old target) when the file cannot be opened; `error` says why.
bool open(const std::string& path, Level level, std::string& error);
// Reopens the current file (USR1, after logrotate moved it).
void reopen();
// The error log's fd, so a worker can hand it to children or dup it over stderr.
int fd();
// Changes the owner of the log file (the master does this before workers drop privileges).
void chown_to(unsigned uid, unsigned gid);
// Tag printed after the pid ("#0" for worker 0); -1 for the master.
void set_worker_slot(int slot);

void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
bool enabled(Level level);

}  // namespace tollgate::log

#define TG_LOG(level, ...)                                                               \
    do {                                                                                 \
        if (::tollgate::log::enabled(level)) ::tollgate::log::write(level, __VA_ARGS__); \
    } while (0)
#define LOG_ERROR(...) TG_LOG(::tollgate::log::Level::Error, __VA_ARGS__)
#define LOG_WARN(...) TG_LOG(::tollgate::log::Level::Warn, __VA_ARGS__)
#define LOG_NOTICE(...) TG_LOG(::tollgate::log::Level::Notice, __VA_ARGS__)
#define LOG_INFO(...) TG_LOG(::tollgate::log::Level::Info, __VA_ARGS__)
#define LOG_DEBUG(...) TG_LOG(::tollgate::log::Level::Debug, __VA_ARGS__)
