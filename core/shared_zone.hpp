// Named shared-memory zones, a robust process-shared mutex and a bounded LRU hash table that
// lives inside a zone.
//
// A module declares a zone while its directives are parsed (GenerationBuilder::shared_zone). The
// master maps it (mmap MAP_SHARED|MAP_ANONYMOUS) before the workers fork, so every worker of the
// generation sees the same memory. A process-global registry of live mappings lets a reload
// reuse a zone whose name, kind, size and layout did not change: counters survive a HUP. A
// module formats only zones that were not reused (SharedZone::reused()).
//
// Layout of a zone: ZoneHeader (core's, versioned), then the module's bytes (data()).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace tollgate {

// A mutex in shared memory, shared by processes, robust: when its owner dies holding it, the
// next locker gets it (EOWNERDEAD), makes it consistent and is told, so it can repair or reset
// what the lock protects. A killed worker never wedges the others.
class ShmMutex {
  public:
    // Initializes the mutex in place (fresh shared memory only).
    void init();
    // Locks. Returns true when the previous owner died holding the lock: the state it protected
    // may be half-updated and must be checked or reset by the caller.
    [[nodiscard]] bool lock();
    void unlock();

  private:
    pthread_mutex_t m_;
};

// RAII lock of a ShmMutex; owner_died() tells whether the protected state needs repair.
class ShmLock {
  public:
    explicit ShmLock(ShmMutex& m) : m_(m), owner_died_(m.lock()) {}
    ~ShmLock() { m_.unlock(); }
    ShmLock(const ShmLock&) = delete;
    ShmLock& operator=(const ShmLock&) = delete;
    bool owner_died() const { return owner_died_; }

  private:
    ShmMutex& m_;
    bool owner_died_;
};

class SharedZone {
  public:
    ~SharedZone();
    SharedZone(const SharedZone&) = delete;
    SharedZone& operator=(const SharedZone&) = delete;

    // Maps a zone, or returns the live one of the same name, kind, size and layout (then
    // reused() is true). `layout` is the module's tag of what its bytes mean (algorithm, record
    // size, key definition): a different tag gets a fresh zone. Returns nullptr (with `error`)
    // when mmap fails.
    static std::shared_ptr<SharedZone> acquire(std::string_view name, std::string_view kind,
                                               size_t size, uint64_t layout, std::string& error);
    // How many zones are mapped in this process (tests).
    static size_t live_count();

    const std::string& name() const { return name_; }
    const std::string& kind() const { return kind_; }
    size_t size() const { return size_; }
    uint64_t layout() const { return layout_; }
    // True when this zone was carried over from a previous generation (do not format it).
    bool reused() const { return reused_; }
    // The module's bytes and their count (the zone size minus the core header).
    void* data() const { return data_; }
    size_t data_size() const { return data_size_; }

  private:
    SharedZone() = default;
    std::string name_;
    std::string kind_;
    size_t size_ = 0;
    uint64_t layout_ = 0;
    bool reused_ = false;
    void* base_ = nullptr;
    void* data_ = nullptr;
    size_t data_size_ = 0;
};

// A 128-bit hash of a key (XXH3_128bits): what the shared table stores instead of the key.
struct ZoneKey {
    uint64_t lo = 0;
    uint64_t hi = 0;
    bool operator==(const ZoneKey&) const = default;
};
ZoneKey zone_key(std::string_view bytes);

// The untyped engine of SharedTable: fixed-size records, chained buckets, an LRU list and a free
// list, all as 32-bit indices inside one memory region. Callers hold lock() around every call.
class SharedTableBase {
  public:
    static constexpr uint32_t kNone = UINT32_MAX;
    // Binds to `mem` (`bytes` long) holding records of `value_size` bytes. With `format`, lays
    // the table out (fresh memory); otherwise checks the header and returns false if it does not
    // match (then the caller must not use the table).
    bool attach(void* mem, size_t bytes, size_t value_size, bool format);
    // How many records fit in `bytes`.
    static uint32_t capacity_for(size_t bytes, size_t value_size);

    ShmMutex& mutex() const { return hdr_->mutex; }
    uint32_t capacity() const { return hdr_->capacity; }
    uint32_t count() const { return hdr_->count; }
    uint64_t evictions() const { return hdr_->evictions; }
    uint64_t resets() const { return hdr_->resets; }

    // Empties the table (after a lock whose owner died: the structure may be half-updated).
    void reset();
    // Walks every list and checks the counts; false when the structure is inconsistent.
    bool valid() const;

  protected:
    struct Header {
        ShmMutex mutex;
        uint32_t magic;
        uint32_t value_size;
        uint32_t capacity;
        uint32_t buckets;  // a power of two
        uint32_t count;
        uint32_t lru_head;  // most recently used
        uint32_t lru_tail;  // least recently used
        uint32_t free_head;
        uint64_t evictions;
        uint64_t resets;
    };
    struct Node {
        ZoneKey key;
        uint32_t chain;  // next in the bucket
        uint32_t prev;   // LRU list
        uint32_t next;
        uint32_t used;
    };

    // The record of `key`, moved to the front of the LRU list; kNone when absent.
    uint32_t find_index(const ZoneKey& key);
    // The record of `key`, inserted (value zeroed) when absent. A full table evicts its least
    // recently used record when `evict`, else returns kNone. `inserted` tells which happened.
    uint32_t find_or_insert_index(const ZoneKey& key, bool evict, bool& inserted);
    void erase_index(uint32_t i);
    // The least recently used record, kNone when empty.
    uint32_t oldest_index() const { return hdr_->lru_tail; }
    Node* node(uint32_t i) const {
        return reinterpret_cast<Node*>(nodes_ + static_cast<size_t>(i) * stride_);
    }
    void* value(uint32_t i) const {
        return nodes_ + static_cast<size_t>(i) * stride_ + sizeof(Node);
    }

  private:
    void unlink_lru(uint32_t i);
    void push_front(uint32_t i);
    void unlink_chain(uint32_t i);

    Header* hdr_ = nullptr;
    uint32_t* buckets_ = nullptr;
    unsigned char* nodes_ = nullptr;
    size_t stride_ = 0;
};

// A bounded hash table of trivially copyable V records keyed by ZoneKey, inside shared memory.
// O(1) find and insert; when full, the least recently used record is evicted; never grows.
template <class V>
class SharedTable : public SharedTableBase {
    static_assert(std::is_trivially_copyable_v<V>, "shared records must be plain data");

  public:
    bool attach(void* mem, size_t bytes, bool format) {
        return SharedTableBase::attach(mem, bytes, sizeof(V), format);
    }
    static uint32_t capacity_for(size_t bytes) {
        return SharedTableBase::capacity_for(bytes, sizeof(V));
    }
    V* find(const ZoneKey& key) {
        uint32_t i = find_index(key);
        return i == kNone ? nullptr : static_cast<V*>(value(i));
    }
    V* find_or_insert(const ZoneKey& key, bool evict, bool& inserted) {
        uint32_t i = find_or_insert_index(key, evict, inserted);
        return i == kNone ? nullptr : static_cast<V*>(value(i));
    }
    void erase(const ZoneKey& key) {
        uint32_t i = find_index(key);
        if (i != kNone) erase_index(i);
    }
    // Removes up to `n` least recently used records for which `stale(const V&)` is true,
    // stopping at the first that is not (nginx expires a couple of old states per request).
    template <class F>
    void expire(int n, F&& stale) {
        for (; n > 0; --n) {
            uint32_t i = oldest_index();
            if (i == kNone || !stale(*static_cast<const V*>(value(i)))) return;
            erase_index(i);
        }
    }
};

}  // namespace tollgate
