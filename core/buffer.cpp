#include "core/buffer.hpp"

#include <event2/buffer.h>

#include <algorithm>
#include <utility>

namespace tollgate {

Buffer::Buffer() : chain_(evbuffer_new()), owned_(true) {}

Buffer::~Buffer() {
    if (owned_ && chain_ != nullptr) evbuffer_free(chain_);
}

Buffer::Buffer(Buffer&& other) noexcept : chain_(other.chain_), owned_(other.owned_) {
    other.chain_ = nullptr;
    other.owned_ = false;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
    if (this != &other) {
        if (owned_ && chain_ != nullptr) evbuffer_free(chain_);
        chain_ = std::exchange(other.chain_, nullptr);
        owned_ = std::exchange(other.owned_, false);
    }
    return *this;
}

Buffer Buffer::borrow(evbuffer* chain) {
    return Buffer(chain, false);
}

size_t Buffer::size() const {
    return chain_ != nullptr ? evbuffer_get_length(chain_) : 0;
}

void Buffer::append(std::string_view bytes) {
    evbuffer_add(chain_, bytes.data(), bytes.size());
}

size_t Buffer::move_from(Buffer& from) {
    size_t n = from.size();
    evbuffer_add_buffer(chain_, from.chain_);
    return n;
}

size_t Buffer::move_from(Buffer& from, size_t max) {
    int n = evbuffer_remove_buffer(from.chain_, chain_, max);
    return n > 0 ? static_cast<size_t>(n) : 0;
}

void Buffer::drain(size_t n) {
    evbuffer_drain(chain_, n);
}

std::string_view Buffer::front() const {
    evbuffer_iovec vec;
    if (evbuffer_peek(chain_, -1, nullptr, &vec, 1) < 1) return {};
    return {static_cast<const char*>(vec.iov_base), vec.iov_len};
}

std::string_view Buffer::pullup(size_t n) {
    n = std::min(n, size());
    if (n == 0) return {};
    return {reinterpret_cast<const char*>(evbuffer_pullup(chain_, static_cast<ev_ssize_t>(n))), n};
}

size_t Buffer::peek_copy(char* out, size_t n) const {
    ev_ssize_t got = evbuffer_copyout(chain_, out, n);
    return got > 0 ? static_cast<size_t>(got) : 0;
}

size_t Buffer::copy_from(const Buffer& from) {
    // Walk the source's blocks and copy each (the source is left as it was).
    size_t total = 0;
    evbuffer_ptr pos;
    evbuffer_ptr_set(from.chain_, &pos, 0, EVBUFFER_PTR_SET);
    evbuffer_iovec vec[8];
    while (total < evbuffer_get_length(from.chain_)) {
        int n = evbuffer_peek(from.chain_, -1, &pos, vec, 8);
        if (n <= 0) break;
        size_t step = 0;
        for (int i = 0; i < n && i < 8; ++i) {
            evbuffer_add(chain_, vec[i].iov_base, vec[i].iov_len);
            step += vec[i].iov_len;
        }
        total += step;
        if (evbuffer_ptr_set(from.chain_, &pos, total, EVBUFFER_PTR_SET) != 0) break;
    }
    return total;
}

}  // namespace tollgate
