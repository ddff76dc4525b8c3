// A chain of byte blocks (libevent's evbuffer behind an opaque type, so modules never include
// libevent). Bytes move between buffers without copying: that is how bodies stream from one
// connection to another.
#pragma once

#include <cstddef>
#include <string_view>

struct evbuffer;

namespace tollgate {

class Buffer {
  public:
    Buffer();  // owns a new, empty chain
    ~Buffer();
    Buffer(Buffer&& other) noexcept;
    Buffer& operator=(Buffer&& other) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    // A view of a chain owned elsewhere (a stream's input or output); not freed by this object.
    static Buffer borrow(evbuffer* chain);

    size_t size() const;
    bool empty() const { return size() == 0; }
    void append(std::string_view bytes);
    // Moves all of `from` to the end of this buffer, without copying. Returns the bytes moved.
    size_t move_from(Buffer& from);
    // Moves at most `max` bytes from the front of `from`. Returns the bytes moved.
    size_t move_from(Buffer& from, size_t max);
    void drain(size_t n);
    // The first contiguous block (empty when the buffer is).
    std::string_view front() const;
    // Makes the first `n` bytes (at most size()) contiguous and returns them.
    std::string_view pullup(size_t n);
    // Copies the first `n` bytes into `out` without draining them; returns the count copied.
    size_t peek_copy(char* out, size_t n) const;
    // Appends a copy of all of `from`, which keeps its bytes. Returns the bytes copied.
    size_t copy_from(const Buffer& from);

    evbuffer* chain() const { return chain_; }  // for worker/ only

  private:
    explicit Buffer(evbuffer* chain, bool owned) : chain_(chain), owned_(owned) {}
    evbuffer* chain_;
    bool owned_;
};

}  // namespace tollgate
