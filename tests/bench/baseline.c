/*
 * Baselines without a daemon: the IPC floor and the in-process epoll wake.
 *
 * Both wait until the side to be woken sleeps before they start the clock
 * (wait_until_sleeping), because a peer still on its way into recv() or
 * epoll_wait() is woken for free, and a floor made of such samples would
 * be lower than anything a parked waiter can see.
 */
#include "baseline.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"

/* Forks the echo child on one end of a socketpair; returns the other end. */
static int echo_child(pid_t *ret_pid)
{
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                bench_die("socketpair: %s", strerror(errno));
        pid = fork();
        if (pid < 0)
                bench_die("fork: %s", strerror(errno));
        if (pid == 0) {
                char buf[IPC_MSG_BYTES];
                ssize_t n;
                /* The bench's handlers would stop the bench's daemon. */
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                close(sv[0]);
                while ((n = recv(sv[1], buf, sizeof(buf), 0)) > 0)
                        if (send(sv[1], buf, (size_t)n, MSG_NOSIGNAL) != n)
                                break;
                _exit(0);
        }
        close(sv[1]);
        *ret_pid = pid;
        return sv[0];
}

static void echo_done(int fd, pid_t pid)
{
        close(fd); /* the child sees EOF and exits */
        waitpid(pid, NULL, 0);
}

static void round_trip(int fd)
{
        char buf[IPC_MSG_BYTES] = { 0 };

        if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf) ||
            recv(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
                bench_die("ipc round trip: %s", strerror(errno));
}

void ipc_pingpong(size_t n, Samples *rtt)
{
        pid_t child;
        int fd = echo_child(&child);

        for (size_t i = 0; i < n + n / 10; i++) {
                wait_until_sleeping(child, child);
                int64_t t0 = now_ns();
                round_trip(fd);
                int64_t t1 = now_ns();
                if (i >= n / 10) /* the first tenth warms caches up */
                        samples_add(rtt, t1 - t0);
        }
        echo_done(fd, child);
}

double ipc_rate(int64_t min_ns)
{
        pid_t child;
        int fd = echo_child(&child);
        int64_t t0, t1;
        size_t n = 0;

        for (int i = 0; i < 1000; i++)
                round_trip(fd);
        t0 = now_ns();
        do {
                for (int i = 0; i < 256; i++)
                        round_trip(fd);
                n += 256;
                t1 = now_ns();
        } while (t1 - t0 < min_ns);
        echo_done(fd, child);
        return (double)n * 1e9 / (double)(t1 - t0);
}

/* ---- in-process epoll wake ---- */

typedef struct EpollWake {
        int epfd, pipe[2];
        size_t n, warmup;
        sem_t ready;        /* the reader is about to block */
        _Atomic pid_t tid;  /* the reader's thread id */
        _Atomic int64_t t0; /* the writer's timestamp */
        Samples *lat;
} EpollWake;

static void *epoll_reader(void *arg)
{
        EpollWake *w = arg;
        struct epoll_event ev;
        char b;

        atomic_store(&w->tid, gettid());
        for (size_t i = 0; i < w->n; i++) {
                sem_post(&w->ready);
                int r;
                do
                        r = epoll_wait(w->epfd, &ev, 1, -1);
                while (r < 0 && errno == EINTR);
                int64_t t1 = now_ns();
                if (r != 1)
                        bench_die("epoll_wait: %s", strerror(errno));
                if (i >= w->warmup)
                        samples_add(w->lat, t1 - atomic_load(&w->t0));
                /* Edge-triggered: drain, so the next write is a new edge. */
                while (read(w->pipe[0], &b, 1) == 1)
                        ;
        }
        return NULL;
}

void epoll_wake(size_t n, Samples *lat)
{
        EpollWake w = { .n = n + n / 10, .warmup = n / 10, .lat = lat };
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
        pthread_t reader;

        if (pipe2(w.pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
            (w.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(w.epfd, EPOLL_CTL_ADD, w.pipe[0], &ev) < 0)
                bench_die("epoll set-up: %s", strerror(errno));
        sem_init(&w.ready, 0, 0);
        if (pthread_create(&reader, NULL, epoll_reader, &w) != 0)
                bench_die("pthread_create failed");
        for (size_t i = 0; i < w.n; i++) {
                while (sem_wait(&w.ready) < 0)
                        ;
                wait_until_sleeping(getpid(), atomic_load(&w.tid));
                atomic_store(&w.t0, now_ns());
                if (write(w.pipe[1], "x", 1) != 1)
                        bench_die("write: %s", strerror(errno));
        }
        pthread_join(reader, NULL);
        sem_destroy(&w.ready);
        close(w.epfd);
        close(w.pipe[0]);
        close(w.pipe[1]);
}

/* ---- the relay: a daemon's two hops, with no daemon ---- */

typedef struct RelayWake {
        int sock, pipe[2];
        pid_t relay;
        size_t n;
        sem_t ready;        /* the request is sent */
        _Atomic pid_t tid;  /* the waiting thread */
        _Atomic int64_t t0; /* the writer's timestamp */
} RelayWake;

static void relay_child(int sock, int rfd)
{
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
        char buf[IPC_MSG_BYTES];
        int epfd = epoll_create1(EPOLL_CLOEXEC);
        ssize_t n;

        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, rfd, &ev) < 0)
                _exit(1);
        while ((n = recv(sock, buf, sizeof(buf), 0)) > 0) {
                int r;
                do
                        r = epoll_wait(epfd, &ev, 1, -1);
                while (r < 0 && errno == EINTR);
                if (r != 1 || send(sock, buf, (size_t)n, MSG_NOSIGNAL) != n)
                        break;
        }
        _exit(0);
}

static void *relay_writer(void *arg)
{
        RelayWake *w = arg;

        for (size_t i = 0; i < w->n; i++) {
                while (sem_wait(&w->ready) < 0)
                        ;
                /* The request was sent before the post, so the relay is
                 * runnable or already back asleep, now in epoll_wait. */
                wait_until_sleeping(getpid(), atomic_load(&w->tid));
                wait_until_sleeping(w->relay, w->relay);
                atomic_store(&w->t0, now_ns());
                if (write(w->pipe[1], "x", 1) != 1)
                        bench_die("write: %s", strerror(errno));
        }
        return NULL;
}

void relay_wake(size_t n, Samples *lat)
{
        RelayWake w = { .n = n + n / 10 };
        char buf[IPC_MSG_BYTES] = { 0 }, b;
        pthread_t writer;
        int sv[2];

        if (pipe2(w.pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                bench_die("relay set-up: %s", strerror(errno));
        w.relay = fork();
        if (w.relay < 0)
                bench_die("fork: %s", strerror(errno));
        if (w.relay == 0) {
                close(sv[0]);
                relay_child(sv[1], w.pipe[0]);
        }
        close(sv[1]);
        w.sock = sv[0];
        atomic_store(&w.tid, gettid());
        sem_init(&w.ready, 0, 0);
        if (pthread_create(&writer, NULL, relay_writer, &w) != 0)
                bench_die("pthread_create failed");
        for (size_t i = 0; i < w.n; i++) {
                if (send(w.sock, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf))
                        bench_die("relay send: %s", strerror(errno));
                sem_post(&w.ready);
                if (recv(w.sock, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
                        bench_die("relay recv: %s", strerror(errno));
                int64_t t1 = now_ns();
                if (i >= n / 10)
                        samples_add(lat, t1 - atomic_load(&w.t0));
                /* Edge-triggered in the relay: drain, so the next write is
                 * a new edge. */
                while (read(w.pipe[0], &b, 1) == 1)
                        ;
        }
        pthread_join(writer, NULL);
        sem_destroy(&w.ready);
        echo_done(w.sock, w.relay);
        close(w.pipe[0]);
        close(w.pipe[1]);
}

/* ---- in-process timers ---- */

void timerfd_lateness(size_t n, int64_t lead, int64_t spread, Samples *late)
{
        struct epoll_event ev = { .events = EPOLLIN };
        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        int epfd = epoll_create1(EPOLL_CLOEXEC);
        int64_t start = now_ns();
        uint64_t ticks;

        if (tfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) < 0)
                bench_die("timerfd set-up: %s", strerror(errno));
        /* Deadlines come due in order, so the earliest pending one is
         * simply the next index. */
        for (size_t i = 0; i < n;) {
                int64_t due = start + lead + (int64_t)i * (spread / (int64_t)n);
                struct itimerspec its = { .it_value = { .tv_sec = due / NSEC_PER_SEC,
                                                        .tv_nsec = due % NSEC_PER_SEC } };
                if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                        bench_die("timerfd_settime: %s", strerror(errno));
                if (epoll_wait(epfd, &ev, 1, -1) < 0 && errno != EINTR)
                        bench_die("epoll_wait: %s", strerror(errno));
                int64_t t = now_ns();
                (void)!read(tfd, &ticks, sizeof(ticks));
                for (; i < n && start + lead + (int64_t)i * (spread / (int64_t)n) <= t; i++)
                        samples_add(late, t - (start + lead + (int64_t)i * (spread / (int64_t)n)));
        }
        close(epfd);
        close(tfd);
}
