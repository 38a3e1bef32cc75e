#ifndef LIFELINE_CLIBURING_H
#define LIFELINE_CLIBURING_H

// liburing (Debian liburing-dev, linked statically: the packages need no liburing2), reduced to
// what a batch of sends needs, behind an opaque ring; and the two GNU calls of the gateway's own
// accept path, which batched sends need, and its hand-over to the event loops. liburing.h is included only by uring.c: it defines
// _GNU_SOURCE and _XOPEN_SOURCE, and a module importing it would see glibc's types differently
// from Swift's Glibc module.

#include <stddef.h>
#include <stdint.h>

typedef struct lifeline_uring lifeline_uring;

/* A ring of `entries` submission slots, or NULL with errno set (ENOSYS, EPERM under a seccomp
   profile that forbids io_uring, ENOMEM). */
lifeline_uring *lifeline_uring_new(unsigned entries);
void lifeline_uring_free(lifeline_uring *ring);

/* Queues a non-blocking send (MSG_DONTWAIT: a full socket buffer completes with -EAGAIN instead
   of waiting in the kernel; MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE). 0, or -1 when
   the submission queue is full. */
int lifeline_uring_prep_send(lifeline_uring *ring, int fd, const void *bytes, size_t length, uint64_t tag);

/* Submits what is queued and waits until `count` completions are there: the number submitted,
   or -errno. */
int lifeline_uring_submit_and_wait(lifeline_uring *ring, unsigned count);

/* Takes one completion if there is one: 1 with its tag and result (bytes sent or -errno), else 0. */
int lifeline_uring_take_completion(lifeline_uring *ring, uint64_t *tag, int32_t *result);

/* A non-blocking, close-on-exec connection from `listener`, or -1 with errno. */
int lifeline_accept_nonblocking(int listener);

/* An eventfd to wake the accepting thread, or -1 with errno. */
int lifeline_wake_descriptor(void);

/* A non-blocking, close-on-exec local stream socket pair (`fds[0]` reads, `fds[1]` sends): how
   accepted connections reach their event loop. 0, or -1 with errno. */
int lifeline_local_stream_pair(int fds[2]);

/* send(2) without blocking or SIGPIPE: bytes sent, or -1 with errno. */
long lifeline_send_nonblocking(int fd, const void *bytes, size_t length);

#endif
