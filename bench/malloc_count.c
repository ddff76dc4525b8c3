// Counts heap allocations per process, for bench/run_allocs.sh (LD_PRELOAD).
//
//   cc -O2 -shared -fPIC -o malloc_count.so bench/malloc_count.c
//   MALLOC_COUNT_DIR=/tmp/dir LD_PRELOAD=./malloc_count.so tollgate ...
//
// Each process (a forked worker too) keeps its counters in a small file MALLOC_COUNT_DIR/PID,
// mapped shared, so a reader sees them live: four little-endian uint64 values, the calls to
// malloc (with calloc, posix_memalign, aligned_alloc, memalign), realloc, free (non-null) and the
// bytes requested. operator new goes through malloc, so it is counted too. The real allocator
// is glibc's own (__libc_malloc and friends), so no dlsym bootstrap is needed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);
extern void* __libc_memalign(size_t, size_t);

struct counters {
    uint64_t mallocs;
    uint64_t reallocs;
    uint64_t frees;
    uint64_t bytes;
};

static struct counters* g_map;   // the shared file, once made for this pid
static struct counters g_early;  // before the file exists (or when it cannot be made)
static int g_opening;
static int g_registered;

static void after_fork_child(void) {
    g_map = NULL;  // the parent's file: the child gets its own on its next allocation
}

static struct counters* counters(void) {
    if (g_map != NULL) return g_map;
    if (g_opening) return &g_early;
    g_opening = 1;
    const char* dir = getenv("MALLOC_COUNT_DIR");
    if (dir != NULL) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd >= 0) {
            fchmod(fd, 0666);
            if (ftruncate(fd, sizeof(struct counters)) == 0) {
                void* p =
                    mmap(NULL, sizeof(struct counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p != MAP_FAILED) g_map = p;
            }
            close(fd);
        }
    }
    if (!g_registered) {
        g_registered = 1;
        pthread_atfork(NULL, NULL, after_fork_child);
    }
    g_opening = 0;
    return g_map != NULL ? g_map : &g_early;
}

static void count_alloc(size_t n) {
    struct counters* c = counters();
    c->mallocs++;
    c->bytes += n;
}

void* malloc(size_t n) {
    count_alloc(n);
    return __libc_malloc(n);
}

void* calloc(size_t a, size_t b) {
    count_alloc(a * b);
    return __libc_calloc(a, b);
}

void* realloc(void* p, size_t n) {
    struct counters* c = counters();
    c->reallocs++;
    c->bytes += n;
    return __libc_realloc(p, n);
}

void free(void* p) {
    if (p == NULL) return;
    counters()->frees++;
    __libc_free(p);
}

int posix_memalign(void** out, size_t align, size_t n) {
    count_alloc(n);
    void* p = __libc_memalign(align, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

void* aligned_alloc(size_t align, size_t n) {
    count_alloc(n);
    return __libc_memalign(align, n);
}

void* memalign(size_t align, size_t n) {
    count_alloc(n);
    return __libc_memalign(align, n);
}
