#ifndef LIFELINE_CMALLOC_SHIM_H
#define LIFELINE_CMALLOC_SHIM_H

// glibc's allocator controls, which Swift's Glibc module does not export. Elsewhere (musl,
// Darwin) they do nothing. <features.h> first: it is what defines __GLIBC__.
#if defined(__linux__)
#include <features.h>
#endif

#if defined(__GLIBC__)
#include <malloc.h>
static inline int lifeline_malloc_trim(void) { return malloc_trim(0); }
/* Bytes the allocator has handed out and not had back (tests of memory per client). */
static inline size_t lifeline_heap_in_use(void) { return mallinfo2().uordblks; }
#else
#include <stddef.h>
static inline int lifeline_malloc_trim(void) { return 0; }
static inline size_t lifeline_heap_in_use(void) { return 0; }
#endif

#endif
