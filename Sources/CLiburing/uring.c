#define _GNU_SOURCE
#include "CLiburing.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <liburing.h>

struct lifeline_uring {
    struct io_uring ring;
};

lifeline_uring *lifeline_uring_new(unsigned entries) {
    lifeline_uring *ring = calloc(1, sizeof *ring);
    if (!ring) return NULL;
    int rc = io_uring_queue_init(entries, &ring->ring, 0);
    if (rc < 0) {
        free(ring);
        errno = -rc;
        return NULL;
    }
    return ring;
}

void lifeline_uring_free(lifeline_uring *ring) {
    if (!ring) return;
    io_uring_queue_exit(&ring->ring);
    free(ring);
}

int lifeline_uring_prep_send(lifeline_uring *ring, int fd, const void *bytes, size_t length, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);
    if (!sqe) return -1;
    io_uring_prep_send(sqe, fd, bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int lifeline_uring_submit_and_wait(lifeline_uring *ring, unsigned count) {
    int rc;
    do {
        rc = io_uring_submit_and_wait(&ring->ring, count);
    } while (rc == -EINTR);
    return rc;
}

int lifeline_uring_take_completion(lifeline_uring *ring, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(&ring->ring, &cqe) != 0 || !cqe) return 0;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&ring->ring, cqe);
    return 1;
}

int lifeline_accept_nonblocking(int listener) {
    return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int lifeline_wake_descriptor(void) {
    return eventfd(0, EFD_CLOEXEC);
}

int lifeline_local_stream_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

long lifeline_send_nonblocking(int fd, const void *bytes, size_t length) {
    return send(fd, bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
}
