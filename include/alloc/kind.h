/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_KIND_H
#define ALLOC_KIND_H

/*
 * Kinds: memkind's heaps over allocd's pools (alloc_kind(3)).
 *
 * A kind takes large regions (2 MiB by default) from one pool through its
 * connection and carves them in this process, so that small allocations
 * never reach allocd, while allocd still accounts every byte to this uid and
 * takes it all back when the process ends.  Every pointer a kind returns
 * lies inside a region it holds; its bookkeeping is kept in this process's
 * heap, never in the regions, so a gpu pool's kind returns device pointers
 * that the CPU never writes.
 *
 * The functions follow memkind's, one for one (alloc_kind(3) has the
 * table): they return NULL and set errno on failure (ENOMEM, or EINVAL for
 * a bad argument), and alloc_last_error() then says why in words.
 * alloc_kind_create returns 0 or a negative errno value, as the rest of
 * liballoc-client does; alloc_kind_posix_memalign returns a positive one
 * and leaves errno alone, as POSIX says.  Everything is thread-safe.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <alloc/client.h>

#ifdef __cplusplus
extern "C" {
#endif

struct alloc_memkind;

/* Which arena a thread's allocations come from (memkind's get_arena operations). */
enum alloc_kind_arena_policy {
        ALLOC_KIND_ARENA_THREAD = 0,    /* 4 x CPUs arenas, picked by a hash of the thread id: the default */
        ALLOC_KIND_ARENA_BIJECTIVE = 1, /* one arena for the kind */
};

/* memkind_mem_usage_policy: how soon regions nothing lies in go back to allocd. */
enum alloc_kind_usage_policy {
        ALLOC_KIND_USAGE_DEFAULT = 0,      /* after decay_ms; each thread keeps a cache of freed blocks */
        ALLOC_KIND_USAGE_CONSERVATIVE = 1, /* at once; no per-thread cache (slower, no memory held back) */
};

#define ALLOC_KIND_REGION_UNIT (2u << 20) /* region sizes are multiples of this */
#define ALLOC_KIND_DECAY_MS 10000u        /* the default policy's decay, as jemalloc's dirty_decay_ms */
#define ALLOC_KIND_MAX 256                /* kinds alive at once in a process */

/* All zero (or a NULL pointer) means every default. */
struct alloc_kind_opts {
        enum alloc_kind_arena_policy arena;
        uint64_t region_size; /* of each region taken from allocd: 0 is 2 MiB; a multiple of 2 MiB */
        /*
         * For each region: ALLOC_NOWAIT (a full pool makes malloc fail at
         * once) or ALLOC_NOFAIL; 0 waits as allocd's wait_timeout says.
         * ALLOC_ZERO is per allocation (alloc_kind_calloc); it and the
         * flags that outlive the process (PERSIST, UNSEALED) are refused.
         */
        uint32_t region_flags;
        uint32_t timeout_ms; /* how long a region may wait for room; 0: allocd's wait_timeout */
        enum alloc_kind_usage_policy usage;
        uint32_t decay_ms; /* ALLOC_KIND_USAGE_DEFAULT: 0 is ALLOC_KIND_DECAY_MS */
        /*
         * pinned pools: return device pointers (the region's dev_ptr; the
         * pool must be DEVICEMAP or vmm).  gpu pools always do; host pools
         * cannot.
         */
        bool device_pointers;
};

/* What a kind holds, and what it cost allocd. */
struct alloc_kind_stats {
        uint64_t regions;      /* held from allocd now */
        uint64_t region_bytes; /* their bytes: what allocd charges this uid for the kind */
        uint64_t round_trips;  /* requests to allocd so far (regions taken and given back) */
};

/*
 * A kind on pool of connection c, as memkind_create_kind makes one: takes
 * its first region at once, so that a pool that does not exist (-ENODEV),
 * may not be used (-EACCES), is full (-EAGAIN, -ETIMEDOUT, -E2BIG), holds
 * no memory (fpga) or has no device pointers where they are asked for
 * (-EINVAL) is refused here; a bad option is -EINVAL.  Nothing is held then.
 * -EMFILE: ALLOC_KIND_MAX kinds are alive.  The kind lives until
 * alloc_kind_destroy or alloc_disconnect(c), which destroys it.
 */
int alloc_kind_create(struct alloc_client *c, const char *pool, const struct alloc_kind_opts *opts,
                      struct alloc_memkind **ret);
/*
 * Gives every region back to allocd and frees the kind: its pointers are
 * invalid from then on, whatever thread holds them.  Accepts NULL; returns NULL.
 * In a child of fork(), a kind made before the fork is the parent's: the
 * child cannot allocate from it (EINVAL), and its destroy gives nothing back.
 */
struct alloc_memkind *alloc_kind_destroy(struct alloc_memkind *kind);
/* memkind_update_memory_usage_policy; conservative gives empty regions back at once.  0 or -EINVAL. */
int alloc_kind_update_memory_usage_policy(struct alloc_memkind *kind, enum alloc_kind_usage_policy usage);
/* Its regions and round trips to allocd so far; 0 or -EINVAL. */
int alloc_kind_stats(struct alloc_memkind *kind, struct alloc_kind_stats *ret);

/* malloc(3) from the kind; size 0 gives a unique pointer.  NULL and errno ENOMEM when there is no room. */
void *alloc_kind_malloc(struct alloc_memkind *kind, size_t size);
/* Zeroed; NULL and ENOMEM when count x size overflows.  Device-pointer kinds: NULL and ENOTSUP. */
void *alloc_kind_calloc(struct alloc_memkind *kind, size_t count, size_t size);
/*
 * realloc(3): ptr NULL is malloc, size 0 frees ptr and returns NULL.  Keeps
 * the block where it is when size fits its usable size (and is over half of
 * it), else moves it, keeping the bytes; NULL and ENOMEM leave ptr as it was.
 * kind NULL: the kind ptr belongs to (alloc_kind_detect), or realloc(3) for
 * memory of no kind.  Device-pointer kinds cannot move a block (ENOTSUP).
 */
void *alloc_kind_realloc(struct alloc_memkind *kind, void *ptr, size_t size);
/*
 * posix_memalign(3): 0, EINVAL (alignment not a power of two or not a
 * multiple of sizeof(void *)) or ENOMEM; *memptr is set only on 0, and
 * errno is never changed.
 */
int alloc_kind_posix_memalign(struct alloc_memkind *kind, void **memptr, size_t alignment, size_t size);
/* free(3).  kind NULL: the kind ptr belongs to, or free(3) for memory of no kind.  NULL is ignored. */
void alloc_kind_free(struct alloc_memkind *kind, void *ptr);
/* The bytes usable at ptr (at least what was asked); 0 for NULL or memory of no kind. */
size_t alloc_kind_malloc_usable_size(struct alloc_memkind *kind, void *ptr);
/*
 * The kind whose regions ptr lies in; NULL for memory of no kind (this
 * process's own heap, a stack, a region taken with alloc_region_new).  A
 * few nanoseconds and no lock: a lookup in a table by the pointer's 2 MiB.
 */
struct alloc_memkind *alloc_kind_detect(const void *ptr);

/*
 * For CUDA frameworks' pluggable allocators (PyTorch's
 * torch.cuda.memory.CUDAPluggableAllocator loads exactly this pair from
 * the shared library): device memory from a kind on the gpu pool named by
 * $ALLOCD_KIND_POOL_<device>, else $ALLOCD_KIND_POOL, else "gpu", made on a
 * connection of its own ($ALLOCD_SOCKET) at the first call for that device.
 * The stream is not used: the memory is mapped and usable by every stream
 * at once, and a block freed is reused at once, as with cudaFree.  NULL
 * when there is no room or the pool's device is not device (alloc_last_error() says why).
 */
void *alloc_kind_cuda_malloc(size_t size, int device, void *stream);
void alloc_kind_cuda_free(void *ptr, size_t size, int device, void *stream);

#ifdef __cplusplus
}
#endif

#endif
