/*
 * floor.c: the cost of a bare write() of one SSE event to N TCP sockets: the floor that a gateway's
 * CPU per delivered event is compared with (issue 4). Benchmarks/run compiles it at run time
 * (`cc -O2 -o floor floor.c`); nothing here is a test of Lifeline.
 *
 *   floor --sockets=N --rounds=R --event=FILE [--pause-ms=20] [--reader-cpu=C]
 *
 * What it does:
 *   - listens on 127.0.0.1 (a free port) and forks a reader that opens N TCP connections to it and
 *     drains them (epoll + read) until they close; the reader moves itself to --reader-cpu (the
 *     caller pins this program, the writer, to the gateway's core with taskset);
 *   - the writer accepts the N connections (TCP_NODELAY, as an SSE gateway sets it: events must leave
 *     at once), writes the event once to every socket as a warm-up, then R rounds of: one blocking
 *     write() of the whole event to each socket in turn, then a pause (--pause-ms) so the reader can
 *     drain and the next round starts from cold socket queues, like one event arriving for N clients;
 *   - the writer's own CPU time (CLOCK_THREAD_CPUTIME_ID: user + system, which on loopback includes
 *     the kernel's TCP transmit and the loopback receive processing done in the writer's context, as
 *     it is for a gateway) is summed over the write loops only, not the pauses.
 * Prints one JSON object: sockets, rounds, bytes per event, writes, cpu_us_per_write (the floor:
 * CPU-µs per delivered event), cpu_us_per_round, wall_us_per_round, and rusage_us_per_write (the
 * same from getrusage, as a cross-check). Exit status 0 on success.
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
    getrusage(RUSAGE_THREAD, &ru);
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

int main(int argc, char **argv) {
    int n = atoi(opt(argc, argv, "--sockets", "1000"));
    int rounds = atoi(opt(argc, argv, "--rounds", "20"));
    int pause_ms = atoi(opt(argc, argv, "--pause-ms", "20"));
    int reader_cpu = atoi(opt(argc, argv, "--reader-cpu", "-1"));
    const char *event_path = opt(argc, argv, "--event", NULL);
    if (n < 1 || rounds < 1 || pause_ms < 0 || !event_path) {
        fprintf(stderr, "usage: floor --sockets=N --rounds=R --event=FILE [--pause-ms=20] [--reader-cpu=C]\n");
        return 2;
    }

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

    int ready[2];
    if (pipe(ready) < 0) die("pipe");
    signal(SIGPIPE, SIG_IGN);
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        close(lfd);
        close(ready[0]);
        reader(port, n, reader_cpu, ready[1]);
    }
    close(ready[1]);

    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds) die("calloc");
    for (int i = 0; i < n; i++) {
        fds[i] = accept(lfd, NULL, NULL);
        if (fds[i] < 0) die("accept");
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    char c;
    if (read(ready[0], &c, 1) != 1) {
        fprintf(stderr, "floor: the reader failed\n");
        return 1;
    }

    /* Warm-up: one write to every socket (first-use costs: page faults, socket buffer allocation). */
    for (int i = 0; i < n; i++)
        if (write(fds[i], event, len) != (ssize_t)len) die("write (warm-up)");
    struct timespec pause = {.tv_sec = pause_ms / 1000, .tv_nsec = (long)(pause_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);

    double cpu_ns = 0, wall_ns = 0, ru_us = 0;
    for (int r = 0; r < rounds; r++) {
        double ru0 = rusage_us();
        double c0 = now_ns(CLOCK_THREAD_CPUTIME_ID), w0 = now_ns(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++) {
            size_t off = 0;
            while (off < len) {
                ssize_t w = write(fds[i], event + off, len - off);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    die("write");
                }
                off += (size_t)w;
            }
        }
        cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        wall_ns += now_ns(CLOCK_MONOTONIC) - w0;
        ru_us += rusage_us() - ru0;
        nanosleep(&pause, NULL);
    }

    for (int i = 0; i < n; i++) close(fds[i]);
    int status = 0;
    waitpid(child, &status, 0);
    double writes = (double)n * rounds;
    printf("{\"sockets\": %d, \"rounds\": %d, \"bytes\": %zu, \"writes\": %.0f, \"cpu_us_per_write\": %.4f, "
           "\"cpu_us_per_round\": %.1f, \"wall_us_per_round\": %.1f, \"rusage_us_per_write\": %.4f, "
           "\"reader_ok\": %s}\n",
           n, rounds, len, writes, cpu_ns / 1000.0 / writes, cpu_ns / 1000.0 / rounds, wall_ns / 1000.0 / rounds,
           ru_us / writes, (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? "true" : "false");
    return 0;
}
