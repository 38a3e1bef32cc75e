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

// ---- Memory: the session's output buffer on pages of its own ---------------------------------
//
// Each nghttp2 session allocates a 16 KiB output frame buffer up front (about 16 of its 25 KiB),
// but an idle event stream's frames are small: only the buffer's first page is ever written. From
// the heap, the whole block is resident (reused heap memory was touched before); from an
// anonymous mapping of its own, only the pages written are. Blocks of at least
// CNGHTTP2_PAGED_MIN bytes are therefore mapped; smaller ones come from malloc. A header before
// each block says which (16 bytes, so the block keeps malloc's alignment).

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const size_t CNGHTTP2_PAGED_MIN = 16384;

typedef struct {
    size_t size;    // the caller's size
    size_t mapped;  // the mapping's length; 0 for a malloc'd block
} cnghttp2_block;

static inline void *cnghttp2_block_new(size_t size, int zeroed) {
    if (size > SIZE_MAX - sizeof(cnghttp2_block) - 65536) return NULL;
    size_t total = size + sizeof(cnghttp2_block);
    cnghttp2_block *block;
    if (size >= CNGHTTP2_PAGED_MIN) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        total = (total + page - 1) / page * page;
        void *mapping = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mapping == MAP_FAILED) return NULL;
        block = (cnghttp2_block *)mapping;  // zeroed by the kernel
        block->mapped = total;
    } else {
        block = (cnghttp2_block *)(zeroed ? calloc(1, total) : malloc(total));
        if (block == NULL) return NULL;
        block->mapped = 0;
    }
    block->size = size;
    return block + 1;
}

static inline void cnghttp2_block_free(void *pointer, void *user_data) {
    (void)user_data;
    if (pointer == NULL) return;
    cnghttp2_block *block = (cnghttp2_block *)pointer - 1;
    if (block->mapped) {
        munmap(block, block->mapped);
    } else {
        free(block);
    }
}

static inline void *cnghttp2_block_malloc(size_t size, void *user_data) {
    (void)user_data;
    return cnghttp2_block_new(size, 0);
}

static inline void *cnghttp2_block_calloc(size_t count, size_t size, void *user_data) {
    (void)user_data;
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    return cnghttp2_block_new(count * size, 1);
}

static inline void *cnghttp2_block_realloc(void *pointer, size_t size, void *user_data) {
    if (pointer == NULL) return cnghttp2_block_new(size, 0);
    if (size == 0) {
        cnghttp2_block_free(pointer, user_data);
        return NULL;
    }
    cnghttp2_block *old = (cnghttp2_block *)pointer - 1;
    void *moved = cnghttp2_block_new(size, 0);
    if (moved == NULL) return NULL;  // the old block stays valid, as realloc's does
    memcpy(moved, pointer, old->size < size ? old->size : size);
    cnghttp2_block_free(pointer, user_data);
    return moved;
}

/// The allocator every session is made with (static: a session keeps the pointer for its life).
static inline nghttp2_mem *cnghttp2_paged_mem(void) {
    static nghttp2_mem mem = {
        NULL, cnghttp2_block_malloc, cnghttp2_block_free, cnghttp2_block_calloc, cnghttp2_block_realloc,
    };
    return &mem;
}

#endif
