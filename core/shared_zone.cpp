#include "core/shared_zone.hpp"

#include <sys/mman.h>
#include <xxhash.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "core/log.hpp"

namespace tollgate {

// ---- ShmMutex ---------------------------------------------------------------------------------

void ShmMutex::init() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m_, &attr);
    pthread_mutexattr_destroy(&attr);
}

bool ShmMutex::lock() {
    int rc = pthread_mutex_lock(&m_);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&m_);
        LOG_WARN("a process died holding a shared zone lock; the zone is checked");
        return true;
    }
    return false;
}

void ShmMutex::unlock() {
    pthread_mutex_unlock(&m_);
}

// ---- SharedZone -------------------------------------------------------------------------------

namespace {

constexpr uint64_t kZoneMagic = 0x746f6c6c7a6f6e31ULL;  // "tollzon1"
constexpr size_t kZoneHeaderSize = 64;

struct ZoneHeader {
    uint64_t magic;
    uint64_t size;
    uint64_t layout;
};
static_assert(sizeof(ZoneHeader) <= kZoneHeaderSize);

// Live mappings of this process. The master is single-threaded; the lock keeps tests honest.
std::mutex registry_mutex;
std::vector<std::weak_ptr<SharedZone>>& registry() {
    static std::vector<std::weak_ptr<SharedZone>> zones;
    return zones;
}

}  // namespace

SharedZone::~SharedZone() {
    if (base_ != nullptr) munmap(base_, size_);
}

std::shared_ptr<SharedZone> SharedZone::acquire(std::string_view name, std::string_view kind,
                                                size_t size, uint64_t layout, std::string& error) {
    std::lock_guard<std::mutex> guard(registry_mutex);
    auto& zones = registry();
    std::erase_if(zones, [](const std::weak_ptr<SharedZone>& w) { return w.expired(); });
    for (const auto& w : zones) {
        auto z = w.lock();
        if (z && z->name_ == name && z->kind_ == kind && z->size_ == size && z->layout_ == layout) {
            // A new generation shares the mapping; `reused_` is per zone object, so hand out a
            // second object over the same memory would double-unmap: share the object itself.
            z->reused_ = true;
            return z;
        }
    }
    if (size < kZoneHeaderSize + 4096) {
        error = "too small";
        return nullptr;
    }
    void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        error = std::string("mmap(") + std::to_string(size) + ") failed: " + strerror(errno);
        return nullptr;
    }
    auto* hdr = static_cast<ZoneHeader*>(mem);
    hdr->magic = kZoneMagic;
    hdr->size = size;
    hdr->layout = layout;
    std::shared_ptr<SharedZone> z(new SharedZone());
    z->name_ = name;
    z->kind_ = kind;
    z->size_ = size;
    z->layout_ = layout;
    z->base_ = mem;
    z->data_ = static_cast<unsigned char*>(mem) + kZoneHeaderSize;
    z->data_size_ = size - kZoneHeaderSize;
    zones.push_back(z);
    return z;
}

size_t SharedZone::live_count() {
    std::lock_guard<std::mutex> guard(registry_mutex);
    size_t n = 0;
    for (const auto& w : registry()) n += w.expired() ? 0 : 1;
    return n;
}

ZoneKey zone_key(std::string_view bytes) {
    XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
    return ZoneKey{h.low64, h.high64};
}

// ---- SharedTableBase --------------------------------------------------------------------------

namespace {
constexpr uint32_t kTableMagic = 0x74626c31;  // "tbl1"

size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

uint32_t bucket_count(uint32_t capacity) {
    uint32_t b = 1;
    while (b < capacity && b < (1u << 31)) b <<= 1;
    return b;
}
}  // namespace

uint32_t SharedTableBase::capacity_for(size_t bytes, size_t value_size) {
    size_t head = align_up(sizeof(Header), 64);
    if (bytes <= head) return 0;
    size_t stride = align_up(sizeof(Node) + value_size, 8);
    // Each record costs its stride plus at most two bucket slots (buckets round up to 2^k).
    size_t n = (bytes - head) / (stride + 2 * sizeof(uint32_t));
    if (n > UINT32_MAX - 1) n = UINT32_MAX - 1;
    return static_cast<uint32_t>(n);
}

bool SharedTableBase::attach(void* mem, size_t bytes, size_t value_size, bool format) {
    size_t head = align_up(sizeof(Header), 64);
    stride_ = align_up(sizeof(Node) + value_size, 8);
    hdr_ = static_cast<Header*>(mem);
    uint32_t cap = capacity_for(bytes, value_size);
    uint32_t nb = bucket_count(cap);
    buckets_ = reinterpret_cast<uint32_t*>(static_cast<unsigned char*>(mem) + head);
    nodes_ = static_cast<unsigned char*>(mem) + head + align_up(nb * sizeof(uint32_t), 64);
    if (cap == 0 ||
        nodes_ + static_cast<size_t>(cap) * stride_ > static_cast<unsigned char*>(mem) + bytes) {
        return false;
    }
    if (format) {
        hdr_->mutex.init();
        hdr_->magic = kTableMagic;
        hdr_->value_size = static_cast<uint32_t>(value_size);
        hdr_->capacity = cap;
        hdr_->buckets = nb;
        hdr_->evictions = 0;
        hdr_->resets = 0;
        reset();
        hdr_->resets = 0;
        return true;
    }
    return hdr_->magic == kTableMagic && hdr_->value_size == value_size && hdr_->capacity == cap &&
           hdr_->buckets == nb;
}

void SharedTableBase::reset() {
    std::memset(buckets_, 0xff, hdr_->buckets * sizeof(uint32_t));
    for (uint32_t i = 0; i < hdr_->capacity; ++i) {
        Node* n = node(i);
        n->used = 0;
        n->chain = i + 1 < hdr_->capacity ? i + 1 : kNone;  // the free list runs through chain
        n->prev = n->next = kNone;
    }
    hdr_->free_head = 0;
    hdr_->lru_head = hdr_->lru_tail = kNone;
    hdr_->count = 0;
    ++hdr_->resets;
}

bool SharedTableBase::valid() const {
    uint32_t cap = hdr_->capacity;
    // The LRU list, both ways, must hold exactly `count` used records.
    uint32_t n = 0;
    uint32_t prev = kNone;
    for (uint32_t i = hdr_->lru_head; i != kNone; i = node(i)->next) {
        if (i >= cap || ++n > cap || !node(i)->used || node(i)->prev != prev) return false;
        prev = i;
    }
    if (prev != hdr_->lru_tail || n != hdr_->count) return false;
    // Every chain holds used records of its bucket; all of them together are `count`.
    uint32_t chained = 0;
    for (uint32_t b = 0; b < hdr_->buckets; ++b) {
        for (uint32_t i = buckets_[b]; i != kNone; i = node(i)->chain) {
            if (i >= cap || ++chained > cap || !node(i)->used ||
                (node(i)->key.lo & (hdr_->buckets - 1)) != b) {
                return false;
            }
        }
    }
    if (chained != n) return false;
    uint32_t free_n = 0;
    for (uint32_t i = hdr_->free_head; i != kNone; i = node(i)->chain) {
        if (i >= cap || ++free_n > cap || node(i)->used) return false;
    }
    return free_n + n == cap;
}

void SharedTableBase::unlink_lru(uint32_t i) {
    Node* n = node(i);
    if (n->prev != kNone)
        node(n->prev)->next = n->next;
    else
        hdr_->lru_head = n->next;
    if (n->next != kNone)
        node(n->next)->prev = n->prev;
    else
        hdr_->lru_tail = n->prev;
    n->prev = n->next = kNone;
}

void SharedTableBase::push_front(uint32_t i) {
    Node* n = node(i);
    n->prev = kNone;
    n->next = hdr_->lru_head;
    if (hdr_->lru_head != kNone) node(hdr_->lru_head)->prev = i;
    hdr_->lru_head = i;
    if (hdr_->lru_tail == kNone) hdr_->lru_tail = i;
}

void SharedTableBase::unlink_chain(uint32_t i) {
    uint32_t* link = &buckets_[node(i)->key.lo & (hdr_->buckets - 1)];
    while (*link != kNone && *link != i) link = &node(*link)->chain;
    if (*link == i) *link = node(i)->chain;
}

uint32_t SharedTableBase::find_index(const ZoneKey& key) {
    for (uint32_t i = buckets_[key.lo & (hdr_->buckets - 1)]; i != kNone; i = node(i)->chain) {
        if (node(i)->key == key) {
            if (hdr_->lru_head != i) {
                unlink_lru(i);
                push_front(i);
            }
            return i;
        }
    }
    return kNone;
}

uint32_t SharedTableBase::find_or_insert_index(const ZoneKey& key, bool evict, bool& inserted) {
    inserted = false;
    uint32_t i = find_index(key);
    if (i != kNone) return i;
    if (hdr_->free_head == kNone) {
        if (!evict || hdr_->lru_tail == kNone) return kNone;
        erase_index(hdr_->lru_tail);
        ++hdr_->evictions;
    }
    i = hdr_->free_head;
    Node* n = node(i);
    hdr_->free_head = n->chain;
    n->key = key;
    n->used = 1;
    uint32_t& bucket = buckets_[key.lo & (hdr_->buckets - 1)];
    n->chain = bucket;
    bucket = i;
    push_front(i);
    std::memset(value(i), 0, hdr_->value_size);
    ++hdr_->count;
    inserted = true;
    return i;
}

void SharedTableBase::erase_index(uint32_t i) {
    unlink_chain(i);
    unlink_lru(i);
    Node* n = node(i);
    n->used = 0;
    n->chain = hdr_->free_head;
    hdr_->free_head = i;
    --hdr_->count;
}

}  // namespace tollgate
