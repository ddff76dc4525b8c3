#include "master/listeners.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace tollgate::master {

namespace {
int open_listener(const http::ListenSpec& spec, std::string& error) {
    int fd = ::socket(spec.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = "socket() for " + spec.text + " failed (" + std::strerror(errno) + ")";
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (spec.addr.ss_family == AF_INET6) {
        int v6only = spec.ipv6only ? 1 : 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&spec.addr), spec.addr_len) != 0) {
        error = "bind() to " + spec.text + " failed (" + std::strerror(errno) + ")";
        ::close(fd);
        return -1;
    }
    if (::listen(fd, spec.backlog) != 0) {
        error = "listen() to " + spec.text + " failed (" + std::strerror(errno) + ")";
        ::close(fd);
        return -1;
    }
    return fd;
}
}  // namespace

Listeners::~Listeners() {
    for (auto& [key, fd] : fds_) ::close(fd);
}

bool Listeners::prepare(const ConfigGeneration& gen, int slots, std::string& error) {
    std::vector<std::pair<std::pair<std::string, int>, int>> opened;
    for (const http::Listen& l : gen.http->listens) {
        for (int slot = 0; slot < slots; ++slot) {
            auto key = std::make_pair(l.spec.text, slot);
            if (fds_.count(key) != 0) continue;
            int fd = open_listener(l.spec, error);
            if (fd < 0) {
                for (auto& [k, f] : opened) ::close(f);
                return false;
            }
            opened.emplace_back(key, fd);
        }
    }
    for (auto& [k, f] : opened) fds_[k] = f;
    return true;
}

std::vector<worker::ListenSocket> Listeners::for_slot(const ConfigGeneration& gen, int slot,
                                                      int workers) const {
    std::vector<worker::ListenSocket> out;
    for (const http::Listen& l : gen.http->listens) {
        for (const auto& [key, fd] : fds_) {
            if (key.first == l.spec.text && key.second % workers == slot) out.push_back({fd, &l});
        }
    }
    return out;
}

void Listeners::retain_only(const ConfigGeneration& gen) {
    std::set<std::string> keep;
    for (const http::Listen& l : gen.http->listens) keep.insert(l.spec.text);
    for (auto it = fds_.begin(); it != fds_.end();) {
        if (keep.count(it->first.first) == 0) {
            ::close(it->second);
            it = fds_.erase(it);
        } else {
            ++it;
        }
    }
}

void Listeners::close_all() {
    for (auto& [key, fd] : fds_) ::close(fd);
    fds_.clear();
}

std::vector<int> Listeners::all_fds() const {
    std::vector<int> out;
    for (const auto& [k, fd] : fds_) out.push_back(fd);
    return out;
}

}  // namespace tollgate::master
