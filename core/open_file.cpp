#include "core/open_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tollgate {

namespace {
int open_append(const std::string& path, std::string& error) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) error = "open() \"" + path + "\" failed (" + std::strerror(errno) + ")";
    return fd;
}
}  // namespace

OpenFile::~OpenFile() {
    if (fd_ >= 0) ::close(fd_);
}

bool OpenFile::open(std::string& error) {
    int fd = open_append(path_, error);
    if (fd < 0) return false;
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    return true;
}

bool OpenFile::reopen(std::string& error) {
    int fd = open_append(path_, error);
    if (fd < 0) return false;
    if (fd_ < 0) {
        fd_ = fd;
        return true;
    }
    ::dup2(fd, fd_);
    ::close(fd);
    return true;
}

bool OpenFile::chown_to(unsigned uid, unsigned gid) {
    return ::fchown(fd_, uid, gid) == 0;
}

bool OpenFile::write(const char* data, size_t len) {
    while (len > 0) {
        ssize_t n = ::write(fd_, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

std::shared_ptr<OpenFile> OpenFiles::get(const std::string& path) {
    for (const auto& f : files_) {
        if (f->path() == path) return f;
    }
    auto f = std::make_shared<OpenFile>(path);
    std::string error;
    if (!f->open(error)) throw std::runtime_error(error);
    files_.push_back(f);
    return f;
}

}  // namespace tollgate
