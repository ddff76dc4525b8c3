// Files a generation writes to (access logs): opened in the master at load, inherited by the
// workers, reopened on USR1 (the master re-creates and chowns them, then each worker reopens).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tollgate {

class OpenFile {
  public:
    explicit OpenFile(std::string path) : path_(std::move(path)) {}
    ~OpenFile();
    OpenFile(const OpenFile&) = delete;
    OpenFile& operator=(const OpenFile&) = delete;

    // Opens (creating, append mode). Returns false and sets `error` on failure.
    bool open(std::string& error);
    // Opens the path again and swaps it in under the same fd number.
    bool reopen(std::string& error);
    bool chown_to(unsigned uid, unsigned gid);
    // Appends all of `data` (retries short writes); false on error.
    bool write(const char* data, size_t len);
    const std::string& path() const { return path_; }
    int fd() const { return fd_; }

  private:
    std::string path_;
    int fd_ = -1;
};

// The set of a generation's open files, deduplicated by path.
class OpenFiles {
  public:
    // Returns the file for `path`, opening it on first use. Throws std::runtime_error with the
    // system's reason when it cannot be opened.
    std::shared_ptr<OpenFile> get(const std::string& path);
    const std::vector<std::shared_ptr<OpenFile>>& all() const { return files_; }

  private:
    std::vector<std::shared_ptr<OpenFile>> files_;
};

}  // namespace tollgate
