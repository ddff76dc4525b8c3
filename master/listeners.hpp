// The master's listening sockets: one SO_REUSEPORT socket per listen address per worker slot.
// They outlive generations: a reload reuses the socket of every (address, slot) it keeps, so the
// connections queued on it are accepted by the new worker instead of being dropped.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/generation.hpp"
#include "worker/worker.hpp"

namespace tollgate::master {

class Listeners {
  public:
    ~Listeners();
    // Makes sure a socket exists for every listen of `gen` and every slot below `slots`.
    // Returns false with `error` set when a socket cannot be opened; nothing is closed then.
    bool prepare(const ConfigGeneration& gen, int slots, std::string& error);
    // The sockets a worker in `slot` of `gen` serves.
    std::vector<worker::ListenSocket> for_slot(const ConfigGeneration& gen, int slot) const;
    // Closes every socket that `gen` with `slots` workers does not use.
    void retain_only(const ConfigGeneration& gen, int slots);
    // Every fd (a worker closes those that are not its own).
    std::vector<int> all_fds() const;

  private:
    std::map<std::pair<std::string, int>, int> fds_;  // (address text, slot) -> fd
};

}  // namespace tollgate::master
