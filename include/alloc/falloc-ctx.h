/* SPDX-License-Identifier: MIT */
/*
 * falloc contexts: a stack of bytes in chunks, for one thread (falloc(3)).
 * Each chunk of a context begins with the offset of the chunk below it and
 * how many of its bytes are used; the context's header sits in its bottom
 * chunk and holds its own offset from the heap's start (so that the heap is
 * found from the context in any process) and those of its top chunk and of
 * one spare empty chunk, kept so that pushing and popping across a chunk
 * boundary does not take and free a chunk each time.  The top chunk is never
 * empty unless it is the bottom one, so a position (a chunk and how much of it
 * is used) has one address, which is what a mark is.
 */
#ifndef ALLOC_FALLOC_CTX_H
#define ALLOC_FALLOC_CTX_H

#ifndef ALLOC_FALLOC_H
#error "include <alloc/falloc.h>, not falloc-ctx.h"
#endif

struct falloc_ctx_node_ {
        uint64_t below; /* the chunk below, from the heap's start; 0: this is the bottom */
        uint32_t used;  /* bytes of this chunk in use, this header's included */
        uint32_t magic;
};

struct fallocCtx {
        struct falloc_ctx_node_ node;
        uint64_t self;  /* this chunk, from the heap's start */
        uint64_t top;   /* the top chunk, from the heap's start */
        uint64_t spare; /* an empty chunk kept for the next push; 0: none */
};

FALLOC_FN fallocDeviceHeap *falloc_ctx_heap_(fallocCtx *ctx) {
        return (fallocDeviceHeap *)((char *)ctx - ctx->self);
}

FALLOC_FN struct falloc_ctx_node_ *falloc_ctx_at_(fallocCtx *ctx, uint64_t offset) {
        return (struct falloc_ctx_node_ *)((char *)falloc_ctx_heap_(ctx) + offset);
}

FALLOC_FN fallocCtx *fallocCreateCtx(fallocDeviceHeap *heap) {
        heap = falloc_heap_or_default_(heap);
        if (!heap || heap->chunk_size < sizeof(fallocCtx))
                return FALLOC_NULL;
        fallocCtx *ctx = (fallocCtx *)fallocGetChunk(heap);
        if (!ctx)
                return FALLOC_NULL;
        ctx->node.below = 0;
        ctx->node.used = sizeof(fallocCtx);
        ctx->node.magic = FALLOC_CTX_MAGIC;
        ctx->self = ctx->top = (uint64_t)((char *)ctx - (char *)heap);
        ctx->spare = 0;
        return ctx;
}

FALLOC_FN void fallocDisposeCtx(fallocCtx *ctx) {
        if (!ctx)
                return;
        fallocDeviceHeap *heap = falloc_ctx_heap_(ctx);
        if (ctx->spare)
                fallocFreeChunk(falloc_ctx_at_(ctx, ctx->spare), heap);
        for (uint64_t off = ctx->top; off != ctx->self;) {
                struct falloc_ctx_node_ *node = falloc_ctx_at_(ctx, off);
                off = node->below;
                fallocFreeChunk(node, heap);
        }
        fallocFreeChunk(ctx, heap);
}

FALLOC_FN void *falloc(fallocCtx *ctx, unsigned short bytes, bool alloc) {
        (void)alloc; /* both take from the top, so that fallocRetract undoes either (falloc(3)) */
        uint32_t n = ((uint32_t)bytes + 7) & ~7u;
        fallocDeviceHeap *heap = falloc_ctx_heap_(ctx);
        struct falloc_ctx_node_ *top = falloc_ctx_at_(ctx, ctx->top);
        if (top->used + n <= heap->chunk_size) {
                top->used += n;
                return (char *)top + top->used - n;
        }
        if (n > heap->chunk_size - sizeof(struct falloc_ctx_node_))
                return FALLOC_NULL;
        struct falloc_ctx_node_ *node =
                ctx->spare ? falloc_ctx_at_(ctx, ctx->spare) : (struct falloc_ctx_node_ *)fallocGetChunk(heap);
        if (!node)
                return FALLOC_NULL;
        ctx->spare = 0;
        node->below = ctx->top;
        node->used = sizeof(*node) + n;
        node->magic = FALLOC_CTX_MAGIC;
        ctx->top = (uint64_t)((char *)node - (char *)heap);
        return node + 1;
}

FALLOC_FN void *fallocRetract(fallocCtx *ctx, unsigned short bytes) {
        uint32_t n = ((uint32_t)bytes + 7) & ~7u;
        bool bottom = ctx->top == ctx->self;
        uint32_t floor = bottom ? sizeof(fallocCtx) : sizeof(struct falloc_ctx_node_);
        struct falloc_ctx_node_ *top = falloc_ctx_at_(ctx, ctx->top);
        if (top->used - floor < n)
                return FALLOC_NULL;
        top->used -= n;
        if (top->used == floor && !bottom) {
                /* Empty: the chunk below is the top again (so a mark taken there holds), this one the spare. */
                if (ctx->spare)
                        fallocFreeChunk(falloc_ctx_at_(ctx, ctx->spare), falloc_ctx_heap_(ctx));
                ctx->spare = ctx->top;
                ctx->top = top->below;
        }
        return (char *)top + top->used;
}

FALLOC_FN bool falloc_at_(fallocCtx *ctx, void **mark, unsigned short *mark2, bool compare) {
        struct falloc_ctx_node_ *top = falloc_ctx_at_(ctx, ctx->top);
        void *at = (char *)top + top->used; /* one address per position: used is never 0 */
        if (compare)
                return *mark == at && *mark2 == (unsigned short)top->used;
        *mark = at;
        *mark2 = (unsigned short)top->used;
        return true;
}

#ifdef __cplusplus
FALLOC_FN void fallocMark(fallocCtx *ctx, void *&mark, unsigned short &mark2) {
        falloc_at_(ctx, &mark, &mark2, false);
}
#else
FALLOC_FN void fallocMark(fallocCtx *ctx, void **mark, unsigned short *mark2) {
        falloc_at_(ctx, mark, mark2, false);
}
#endif

FALLOC_FN bool fallocAtMark(fallocCtx *ctx, void *mark, unsigned short mark2) {
        return falloc_at_(ctx, &mark, &mark2, true);
}

#endif
