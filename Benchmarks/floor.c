/*
 * floor.c: the cost of a bare write() of one SSE event to N TCP sockets: the floor that a gateway's
 * CPU per delivered event is compared with (issue 4). Benchmarks/run compiles it at run time
 * (`cc -O2 -o floor floor.c`, with `-DFLOOR_URING -luring` where liburing is installed); nothing
 * here is a test of Lifeline.
 *
 *   floor --sockets=N --rounds=R --event=FILE [--pause-ms=20] [--reader-cpu=C]
 *         [--mode=write|uring] [--clients=fork|http --port-file=PATH]
 *
 * What it does:
 *   - listens on 127.0.0.1 (a free port) and, with --clients=fork (the default), forks a reader that
 *     opens N TCP connections to it and drains them (epoll + read) until they close; the reader
 *     moves itself to --reader-cpu (the caller pins this program, the writer, to the gateway's core
 *     with taskset);
 *   - with --clients=http it forks nothing: it writes its port to --port-file and waits for N HTTP
 *     clients (the benchmark's own `lifeline-bench load`, started by the caller), reads each one's
 *     request head and answers `200` with `text/event-stream` and no framing. This is the floor
 *     with the same clients as the gateways: how fast the readers drain, and whether they sleep
 *     between events, changes what each write() costs the writer (waking a sleeping reader is the
 *     largest kernel item in a fan-out write on loopback);
 *   - the writer accepts the N connections (TCP_NODELAY, as an SSE gateway sets it: events must leave
 *     at once), writes the event once to every socket as a warm-up, then R rounds of: the event
 *     written whole to each socket in turn, then a pause (--pause-ms) so the readers can drain and
 *     the next round starts from cold socket queues, like one event arriving for N clients;
 *   - --mode=write: one blocking write() per socket (what a gateway's event loop does: one
 *     syscall per client per event). --mode=uring: the round's sends go to an io_uring, 4,096 per
 *     io_uring_enter (IORING_OP_SEND with MSG_DONTWAIT; a send that does not complete whole is
 *     finished with write()): the floor of a fan-out that batches one event's writes (issue 18);
 *   - the writer's CPU time (CLOCK_PROCESS_CPUTIME_ID: user + system of this process, which is the
 *     writer alone, io_uring's workers included; on loopback it includes the kernel's TCP transmit
 *     and the loopback receive processing done in the writer's context, as it is for a gateway) is
 *     summed over the write loops only, not the pauses.
 * Prints one JSON object: mode, clients, sockets, rounds, bytes per event, writes, cpu_us_per_write
 * (the floor: CPU-µs per delivered event), cpu_us_per_round, wall_us_per_round, and
 * rusage_us_per_write (the same from getrusage, as a cross-check). Exit status 0 on success.
 *
 * The writer needs N + a few file descriptors, the reader the same (they are separate processes).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef FLOOR_URING
#include <liburing.h>
#endif

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double rusage_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static const char *opt(int argc, char **argv, const char *name, const char *fallback) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return fallback;
}

/* The reader: N connections to port, drained until every one is closed by the writer. */
static void reader(int port, int n, int cpu, int ready_fd) {
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set); /* best effort */
    }
    int ep = epoll_create1(0);
    if (ep < 0) die("reader: epoll_create1");
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("reader: socket");
        if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) die("reader: connect");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("reader: epoll_ctl");
    }
    if (write(ready_fd, "r", 1) != 1) die("reader: ready");
    close(ready_fd);
    static char buf[65536];
    struct epoll_event evs[512];
    int open = n;
    while (open > 0) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("reader: epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            for (;;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0) continue;
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                close(fd); /* EOF or error */
                open--;
                break;
            }
        }
    }
    _exit(0);
}

/* Writes all of buf to fd (blocking). */
static void write_all(int fd, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write");
        }
        off += (size_t)w;
    }
}

/* One HTTP client's request head, read (up to the blank line) and answered with an endless
 * event-stream response without framing, as an origin does for HTTP/1.0-style streaming. */
static void answer_http(int fd) {
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[8192];
    size_t got = 0;
    for (;;) {
        if (got == sizeof req - 1) die("request head too long");
        ssize_t r = read(fd, req + got, sizeof req - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read request head");
        got += (size_t)r;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    write_all(fd, head, sizeof head - 1);
}

#ifdef FLOOR_URING
/* One round as batches of sends: up to the ring's size per io_uring_enter. */
static void uring_round(struct io_uring *ring, unsigned entries, const int *fds, int n, const char *event, size_t len) {
    int i = 0;
    while (i < n) {
        int batch = 0;
        while (i < n && batch < (int)entries) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            if (!sqe) break;
            io_uring_prep_send(sqe, fds[i], event, len, MSG_DONTWAIT);
            io_uring_sqe_set_data64(sqe, (unsigned long long)i);
            i++;
            batch++;
        }
        int submitted = io_uring_submit_and_wait(ring, (unsigned)batch);
        if (submitted < 0) {
            errno = -submitted;
            die("io_uring_submit_and_wait");
        }
        for (int seen = 0; seen < batch; seen++) {
            struct io_uring_cqe *cqe;
            int rc = io_uring_wait_cqe(ring, &cqe);
            if (rc < 0) {
                errno = -rc;
                die("io_uring_wait_cqe");
            }
            int k = (int)io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            /* Not sent whole (a full socket buffer): the rest as a gateway would, later. */
            size_t done = res > 0 ? (size_t)res : 0;
            if (res < 0 && res != -EAGAIN) {
                errno = -res;
                die("send");
            }
            if (done < len) write_all(fds[k], event + done, len - done);
        }
    }
}
#endif

int main(int argc, char **argv) {
    int n = atoi(opt(argc, argv, "--sockets", "1000"));
    int rounds = atoi(opt(argc, argv, "--rounds", "20"));
    int pause_ms = atoi(opt(argc, argv, "--pause-ms", "20"));
    int reader_cpu = atoi(opt(argc, argv, "--reader-cpu", "-1"));
    const char *event_path = opt(argc, argv, "--event", NULL);
    const char *mode = opt(argc, argv, "--mode", "write");
    const char *clients = opt(argc, argv, "--clients", "fork");
    const char *port_file = opt(argc, argv, "--port-file", NULL);
    int uring = strcmp(mode, "uring") == 0, http = strcmp(clients, "http") == 0;
    if (n < 1 || rounds < 1 || pause_ms < 0 || !event_path || (!uring && strcmp(mode, "write") != 0) ||
        (!http && strcmp(clients, "fork") != 0) || (http && !port_file)) {
        fprintf(stderr, "usage: floor --sockets=N --rounds=R --event=FILE [--pause-ms=20] [--reader-cpu=C]\n"
                        "             [--mode=write|uring] [--clients=fork|http --port-file=PATH]\n");
        return 2;
    }
#ifdef FLOOR_URING
    struct io_uring ring;
    unsigned entries = 4096;
    if (uring) {
        int rc = io_uring_queue_init(entries, &ring, 0);
        if (rc < 0) {
            errno = -rc;
            die("io_uring_queue_init");
        }
    }
#else
    if (uring) {
        fprintf(stderr, "floor: built without io_uring (compile with -DFLOOR_URING -luring)\n");
        return 2;
    }
#endif

    /* The event bytes, exactly as read from the file. */
    FILE *f = fopen(event_path, "rb");
    if (!f) die(event_path);
    static char event[1 << 20];
    size_t len = fread(event, 1, sizeof event, f);
    fclose(f);
    if (len == 0) {
        fprintf(stderr, "floor: %s is empty\n", event_path);
        return 2;
    }

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    int port = ntohs(addr.sin_port);
    signal(SIGPIPE, SIG_IGN);

    pid_t child = -1;
    int ready[2] = {-1, -1};
    if (http) {
        /* Written whole under a temporary name, so the caller never reads half a port. */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *pf = fopen(tmp, "w");
        if (!pf) die(tmp);
        fprintf(pf, "%d\n", port);
        fclose(pf);
        if (rename(tmp, port_file) < 0) die("rename");
    } else {
        if (pipe(ready) < 0) die("pipe");
        child = fork();
        if (child < 0) die("fork");
        if (child == 0) {
            close(lfd);
            close(ready[0]);
            reader(port, n, reader_cpu, ready[1]);
        }
        close(ready[1]);
    }

    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds) die("calloc");
    for (int i = 0; i < n; i++) {
        fds[i] = accept(lfd, NULL, NULL);
        if (fds[i] < 0) die("accept");
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (http) answer_http(fds[i]);
    }
    if (!http) {
        char c;
        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "floor: the reader failed\n");
            return 1;
        }
    }

    /* Warm-up: one write to every socket (first-use costs: page faults, socket buffer allocation). */
    for (int i = 0; i < n; i++) write_all(fds[i], event, len);
    struct timespec pause = {.tv_sec = pause_ms / 1000, .tv_nsec = (long)(pause_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);

    double cpu_ns = 0, wall_ns = 0, ru_us = 0;
    for (int r = 0; r < rounds; r++) {
        double ru0 = rusage_us();
        double c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
#ifdef FLOOR_URING
        if (uring)
            uring_round(&ring, entries, fds, n, event, len);
        else
#endif
            for (int i = 0; i < n; i++) write_all(fds[i], event, len);
        cpu_ns += now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
        wall_ns += now_ns(CLOCK_MONOTONIC) - w0;
        ru_us += rusage_us() - ru0;
        nanosleep(&pause, NULL);
    }

    for (int i = 0; i < n; i++) close(fds[i]);
    int reader_ok = 1;
    if (!http) {
        int status = 0;
        waitpid(child, &status, 0);
        reader_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    double writes = (double)n * rounds;
    printf("{\"mode\": \"%s\", \"clients\": \"%s\", \"sockets\": %d, \"rounds\": %d, \"bytes\": %zu, \"writes\": %.0f, "
           "\"cpu_us_per_write\": %.4f, \"cpu_us_per_round\": %.1f, \"wall_us_per_round\": %.1f, "
           "\"rusage_us_per_write\": %.4f, \"reader_ok\": %s}\n",
           uring ? "uring" : "write", http ? "http" : "fork", n, rounds, len, writes, cpu_ns / 1000.0 / writes,
           cpu_ns / 1000.0 / rounds, wall_ns / 1000.0 / rounds, ru_us / writes, reader_ok ? "true" : "false");
    return 0;
}
