#ifndef LIFELINE_CLIBURING_SHIM_H
#define LIFELINE_CLIBURING_SHIM_H

// liburing (Debian liburing-dev, linked statically: the packages need no liburing2), reduced to
// what a batch of sends needs. Its helpers are static inline functions and macros, which Swift
// does not import well; these wrappers are what `SendRing` calls. And the two GNU calls of the
// gateway's own accept path, which batched sends need (Swift's Glibc module has neither).

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <liburing.h>

/* A ring of `entries` submission slots, or NULL with errno set (ENOSYS, EPERM under a seccomp
   profile that forbids io_uring, ENOMEM over RLIMIT_MEMLOCK on old kernels). */
static inline struct io_uring *lifeline_uring_new(unsigned entries) {
    struct io_uring *ring = calloc(1, sizeof *ring);
    if (!ring) return NULL;
    int rc = io_uring_queue_init(entries, ring, 0);
    if (rc < 0) {
        free(ring);
        errno = -rc;
        return NULL;
    }
    return ring;
}

static inline void lifeline_uring_free(struct io_uring *ring) {
    if (!ring) return;
    io_uring_queue_exit(ring);
    free(ring);
}

/* Queues a non-blocking send (MSG_DONTWAIT: a full socket buffer completes with -EAGAIN instead
   of waiting in the kernel; MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE). 0, or -1 when
   the submission queue is full. */
static inline int lifeline_uring_prep_send(struct io_uring *ring, int fd, const void *bytes, size_t length, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) return -1;
    io_uring_prep_send(sqe, fd, bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

/* Submits what is queued and waits until `count` completions are there: the number submitted,
   or -errno. */
static inline int lifeline_uring_submit_and_wait(struct io_uring *ring, unsigned count) {
    int rc;
    do {
        rc = io_uring_submit_and_wait(ring, count);
    } while (rc == -EINTR);
    return rc;
}

/* Takes one completion if there is one: 1 with its tag and result (bytes sent or -errno), else 0. */
static inline int lifeline_uring_take_completion(struct io_uring *ring, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(ring, &cqe) != 0 || !cqe) return 0;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return 1;
}

/* A non-blocking, close-on-exec connection from `listener`, or -1 with errno. */
static inline int lifeline_accept_nonblocking(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* An eventfd to wake the accepting thread, or -1 with errno. */
static inline int lifeline_wake_descriptor(void) {
    return eventfd(0, EFD_CLOEXEC);
}

#endif
