// The system's libnghttp2 (1.52) for Swift. Composite macros that do not import are given as
// static values below, and a few accessors make nghttp2_frame (a C union) easier to read from Swift.
//
// Only the HTTP2 module imports this (tests may too).
#ifndef LIFELINE_CNGHTTP2_SHIM_H
#define LIFELINE_CNGHTTP2_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>

// ---- Composite macros (they do not import into Swift) ----------------------------------------

/// NGHTTP2_INITIAL_WINDOW_SIZE: the protocol's default stream window, 65535.
static const int32_t CNGHTTP2_INITIAL_WINDOW_SIZE = NGHTTP2_INITIAL_WINDOW_SIZE;
/// NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE: the protocol's default connection window, 65535.
static const int32_t CNGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE = NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE;
/// NGHTTP2_MAX_WINDOW_SIZE: 2^31 - 1.
static const int32_t CNGHTTP2_MAX_WINDOW_SIZE = NGHTTP2_MAX_WINDOW_SIZE;
/// NGHTTP2_INITIAL_MAX_CONCURRENT_STREAMS: 2^31 - 1 (no limit until SETTINGS say otherwise).
static const uint32_t CNGHTTP2_INITIAL_MAX_CONCURRENT_STREAMS = NGHTTP2_INITIAL_MAX_CONCURRENT_STREAMS;
/// NGHTTP2_DEFAULT_HEADER_TABLE_SIZE: 4096.
static const uint32_t CNGHTTP2_DEFAULT_HEADER_TABLE_SIZE = NGHTTP2_DEFAULT_HEADER_TABLE_SIZE;
/// The length of the client connection preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
static const size_t CNGHTTP2_CLIENT_MAGIC_LEN = NGHTTP2_CLIENT_MAGIC_LEN;

/// The client connection preface as bytes (NGHTTP2_CLIENT_MAGIC is a string macro).
static inline const uint8_t *cnghttp2_client_magic(void) {
    return (const uint8_t *)NGHTTP2_CLIENT_MAGIC;
}

/// The version string of the library that is actually loaded (e.g. "1.52.0").
static inline const char *cnghttp2_version_string(void) {
    nghttp2_info *info = nghttp2_version(0);
    return info ? info->version_str : "unknown";
}

// ---- nghttp2_frame accessors ------------------------------------------------------------------

static inline uint8_t cnghttp2_frame_type(const nghttp2_frame *frame) { return frame->hd.type; }
static inline uint8_t cnghttp2_frame_flags(const nghttp2_frame *frame) { return frame->hd.flags; }
static inline int32_t cnghttp2_frame_stream_id(const nghttp2_frame *frame) { return frame->hd.stream_id; }
static inline size_t cnghttp2_frame_length(const nghttp2_frame *frame) { return frame->hd.length; }

/// For a HEADERS frame: its category (NGHTTP2_HCAT_REQUEST, NGHTTP2_HCAT_HEADERS, ...).
static inline int cnghttp2_frame_headers_category(const nghttp2_frame *frame) {
    return (int)frame->headers.cat;
}

/// For a RST_STREAM frame: its error code.
static inline uint32_t cnghttp2_frame_rst_stream_error_code(const nghttp2_frame *frame) {
    return frame->rst_stream.error_code;
}

/// For a GOAWAY frame: its error code and last stream id.
static inline uint32_t cnghttp2_frame_goaway_error_code(const nghttp2_frame *frame) {
    return frame->goaway.error_code;
}
static inline int32_t cnghttp2_frame_goaway_last_stream_id(const nghttp2_frame *frame) {
    return frame->goaway.last_stream_id;
}

/// For a PING frame: its 8 opaque bytes as one big-endian integer.
static inline uint64_t cnghttp2_frame_ping_opaque(const nghttp2_frame *frame) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) {
        value = (value << 8) | frame->ping.opaque_data[i];
    }
    return value;
}

/// For a DATA frame: the padding length (0 when there is none).
static inline size_t cnghttp2_frame_data_padlen(const nghttp2_frame *frame) {
    return frame->data.padlen;
}

/// Submits a PING whose 8 opaque bytes are `opaque` in big-endian order.
static inline int cnghttp2_submit_ping_u64(nghttp2_session *session, uint64_t opaque) {
    uint8_t data[8];
    for (int i = 7; i >= 0; i--) {
        data[i] = (uint8_t)(opaque & 0xff);
        opaque >>= 8;
    }
    return nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, data);
}

// ---- Memory: each session's own allocator (an arena) ------------------------------------------
//
// Each nghttp2 session allocates a 16 KiB output frame buffer up front (about 16 of its 25 KiB),
// but an idle event stream's frames are small: only the buffer's first page is ever written. From
// the heap, the whole block is resident (reused heap memory was touched before); from an
// anonymous mapping of its own, only the pages written are. So every session is made with the
// nghttp2_mem of an arena of its own (nghttp2 copies the struct; its user_data is the arena):
// blocks of at least CNGHTTP2_PAGED_MIN bytes are mappings the arena lists; smaller ones come
// from malloc as they are. A pointer the arena does not list is malloc's: no header per block.
//
// The output buffer is the one block mapped while the session is being created (nothing else
// that big exists before any input). `cnghttp2_arena_release_output` gives its pages back
// (MADV_DONTNEED: they read as zeroes and become resident again when written), for an idle
// session whose frames have all been taken (nghttp2_session_want_write 0, no nghttp2 call
// running): the buffer then holds only bytes already sent. Blocks mapped later (a big inbound
// frame or header value, more output chunks) are never released: they can hold live data.
//
// When a mapping cannot be made (no free slot, or mmap fails, e.g. at vm.max_map_count) the block
// comes from malloc: it costs memory, never a failed allocation.

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__linux__)
#include <malloc.h>
#endif

static const size_t CNGHTTP2_PAGED_MIN = 16384;
#define CNGHTTP2_ARENA_SLOTS 8

typedef struct {
    void *pointer;
    size_t size;      // the caller's size
    size_t length;    // the mapping's
    int releasable;   // mapped while the session was being created: its output buffer
} cnghttp2_mapped_block;

typedef struct {
    /// Set while the session is created (see `cnghttp2_arena_creating`).
    int creating;
    int count;
    cnghttp2_mapped_block blocks[CNGHTTP2_ARENA_SLOTS];
} cnghttp2_arena;

static inline cnghttp2_arena *cnghttp2_arena_new(void) {
    return (cnghttp2_arena *)calloc(1, sizeof(cnghttp2_arena));
}

/// Frees the arena (after nghttp2_session_del: it frees every block first; anything left over
/// is unmapped here all the same).
static inline void cnghttp2_arena_del(cnghttp2_arena *arena) {
    if (arena == NULL) return;
    for (int i = 0; i < arena->count; i++) munmap(arena->blocks[i].pointer, arena->blocks[i].length);
    free(arena);
}

/// Brackets the session's creation: blocks mapped meanwhile are the output buffer.
static inline void cnghttp2_arena_creating(cnghttp2_arena *arena, int creating) {
    arena->creating = creating;
}

static inline void *cnghttp2_arena_map(cnghttp2_arena *arena, size_t size) {
#if defined(__linux__)
    if (arena == NULL || arena->count == CNGHTTP2_ARENA_SLOTS) return NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - page) return NULL;
    size_t length = (size + page - 1) / page * page;
    void *mapping = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) return NULL;
    cnghttp2_mapped_block block = {mapping, size, length, arena->creating};
    arena->blocks[arena->count++] = block;
    return mapping;  // zeroed by the kernel
#else
    (void)arena;
    (void)size;
    return NULL;
#endif
}

static inline int cnghttp2_arena_find(const cnghttp2_arena *arena, const void *pointer) {
    if (arena == NULL) return -1;
    for (int i = 0; i < arena->count; i++) {
        if (arena->blocks[i].pointer == pointer) return i;
    }
    return -1;
}

static inline void *cnghttp2_arena_malloc(size_t size, void *user_data) {
    if (size >= CNGHTTP2_PAGED_MIN) {
        void *mapped = cnghttp2_arena_map((cnghttp2_arena *)user_data, size);
        if (mapped != NULL) return mapped;
    }
    return malloc(size);
}

static inline void *cnghttp2_arena_calloc(size_t count, size_t size, void *user_data) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    if (count * size >= CNGHTTP2_PAGED_MIN) {
        void *mapped = cnghttp2_arena_map((cnghttp2_arena *)user_data, count * size);
        if (mapped != NULL) return mapped;
    }
    return calloc(count, size);
}

static inline void cnghttp2_arena_free(void *pointer, void *user_data) {
    if (pointer == NULL) return;
    cnghttp2_arena *arena = (cnghttp2_arena *)user_data;
    int i = cnghttp2_arena_find(arena, pointer);
    if (i < 0) {
        free(pointer);
        return;
    }
    munmap(arena->blocks[i].pointer, arena->blocks[i].length);
    arena->blocks[i] = arena->blocks[--arena->count];
}

static inline void *cnghttp2_arena_realloc(void *pointer, size_t size, void *user_data) {
    if (pointer == NULL) return cnghttp2_arena_malloc(size, user_data);
    if (size == 0) {
        cnghttp2_arena_free(pointer, user_data);
        return NULL;
    }
    int i = cnghttp2_arena_find((cnghttp2_arena *)user_data, pointer);
    if (i < 0 && size < CNGHTTP2_PAGED_MIN) return realloc(pointer, size);
#if defined(__linux__)
    size_t old = i >= 0 ? ((cnghttp2_arena *)user_data)->blocks[i].size : malloc_usable_size(pointer);
#else
    size_t old = size;  // never reached with a malloc'd block: nothing is mapped here
    if (i < 0) return realloc(pointer, size);
#endif
    void *moved = cnghttp2_arena_malloc(size, user_data);
    if (moved == NULL) return NULL;  // the old block stays valid, as realloc's does
    memcpy(moved, pointer, old < size ? old : size);
    cnghttp2_arena_free(pointer, user_data);
    return moved;
}

/// The allocator a session is made with: nghttp2 copies the struct (its user_data is the arena).
static inline nghttp2_mem cnghttp2_arena_mem(cnghttp2_arena *arena) {
    nghttp2_mem mem = {arena, cnghttp2_arena_malloc, cnghttp2_arena_free, cnghttp2_arena_calloc, cnghttp2_arena_realloc};
    return mem;
}

/// Gives back the pages of the session's output buffer. Only for a session with nothing left to
/// send (nghttp2_session_want_write 0) and no nghttp2 call running. Returns the bytes advised.
static inline size_t cnghttp2_arena_release_output(cnghttp2_arena *arena) {
    size_t released = 0;
    for (int i = 0; i < arena->count; i++) {
        if (!arena->blocks[i].releasable) continue;
        if (madvise(arena->blocks[i].pointer, arena->blocks[i].length, MADV_DONTNEED) == 0) {
            released += arena->blocks[i].length;
        }
    }
    return released;
}

/// The session's output buffer (the block mapped while it was created), or NULL (tests).
static inline void *cnghttp2_arena_output(const cnghttp2_arena *arena, size_t *length) {
    for (int i = 0; i < arena->count; i++) {
        if (arena->blocks[i].releasable) {
            *length = arena->blocks[i].length;
            return arena->blocks[i].pointer;
        }
    }
    *length = 0;
    return NULL;
}

/// Blocks the arena has mapped now (tests).
static inline int cnghttp2_arena_mapped_count(const cnghttp2_arena *arena) { return arena->count; }

#endif
