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
    // The sockets worker `slot` of `gen` serves: its own slot's, and those of slots beyond the
    // current worker count (left from a generation with more workers) with slot % workers ==
    // slot. Closing those would reset the connections queued on them, so they are handed on.
    std::vector<worker::ListenSocket> for_slot(const ConfigGeneration& gen, int slot,
                                               int workers) const;
    // Closes the sockets of addresses `gen` no longer listens on.
    void retain_only(const ConfigGeneration& gen);
    // Closes every socket (the master is stopping).
    void close_all();
    // Every fd (a worker closes those that are not its own).
    std::vector<int> all_fds() const;

  private:
    std::map<std::pair<std::string, int>, int> fds_;  // (address text, slot) -> fd
};

}  // namespace tollgate::master
