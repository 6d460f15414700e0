/*
 * The child processes of fault-slowreader: the slow client, which opens k
 * pipes through the raw protocol and then never reads, and the control
 * load, which does the same to the kernel without the daemon.  Both run at
 * SCHED_IDLE and report to the parent over a pipe (load_report).
 */
#include "slowreader-load.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../daemon/codec.h" /* NP_MAX_REQUESTS_PER_MESSAGE */
#include "harness.h"

void load_report(int ctl, char what, int value)
{
        char buf[16];

        buf[0] = what;
        memcpy(buf + 1, &value, sizeof(value));
        (void)!write(ctl, buf, 1 + sizeof(value));
}

/* Opens k pipes through the raw protocol; the descriptors go to d, the
 * write ends to w.  Reads the replies (this is the last time it reads). */
static int slow_open(int sock, int k, uint64_t *d, int *w)
{
        Netpoll__V1__Request q[FDS_PER_OPEN], *qs[FDS_PER_OPEN];
        int rfds[FDS_PER_OPEN], p[2];

        for (int base = 0; base < k; base += FDS_PER_OPEN) {
                int n = k - base < FDS_PER_OPEN ? k - base : FDS_PER_OPEN;
                for (int j = 0; j < n; j++) {
                        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                                return -errno;
                        rfds[j] = p[0];
                        w[base + j] = p[1];
                        q[j] = raw_request((uint64_t)(base + j + 1), NETPOLL__V1__OP__OP_OPEN, 0, 0,
                                           0);
                        q[j].user = (uint64_t)(base + j);
                        q[j].fd_index = j;
                        qs[j] = &q[j];
                }
                int r = raw_send_requests(sock, qs, (size_t)n, rfds, (size_t)n);
                for (int j = 0; j < n; j++)
                        close(rfds[j]); /* the daemon has its copy */
                if (r < 0)
                        return r;
                int got = 0;
                for (int i = 0; i < 1000 && got < n; i++) {
                        Netpoll__V1__ServerMessage *m;
                        r = raw_recv(sock, 10000, &m);
                        if (r <= 0)
                                return r == 0 ? -ECONNRESET : r;
                        for (size_t j = 0; j < m->n_replies; j++) {
                                const Netpoll__V1__Reply *rp = m->replies[j];
                                if (rp->result < 0 || rp->id < 1 || rp->id > (uint64_t)k) {
                                        netpoll__v1__server_message__free_unpacked(m, NULL);
                                        return rp->result < 0 ? rp->result : -EPROTO;
                                }
                                d[rp->id - 1] = rp->desc;
                                got++;
                        }
                        netpoll__v1__server_message__free_unpacked(m, NULL);
                }
                if (got < n)
                        return -ETIMEDOUT;
        }
        return 0;
}

/* Sends a quiet OP_ARM (read) for every descriptor, as many per datagram
 * as the daemon takes (NP_MAX_REQUESTS_PER_MESSAGE). */
static int slow_arm_all(int sock, int k, const uint64_t *d)
{
        static Netpoll__V1__Request q[NP_MAX_REQUESTS_PER_MESSAGE];
        static Netpoll__V1__Request *qs[NP_MAX_REQUESTS_PER_MESSAGE];

        for (int base = 0; base < k; base += NP_MAX_REQUESTS_PER_MESSAGE) {
                int n = k - base < NP_MAX_REQUESTS_PER_MESSAGE ? k - base
                                                               : NP_MAX_REQUESTS_PER_MESSAGE;
                for (int j = 0; j < n; j++) {
                        q[j] = raw_request(0, NETPOLL__V1__OP__OP_ARM, d[base + j], NP_READ, 0);
                        q[j].quiet = true;
                        qs[j] = &q[j];
                }
                int r = raw_send_requests(sock, qs, (size_t)n, NULL, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * Makes the calling child a background load.  The storm's CPU is the slow
 * client's own business, not the daemon's: it runs as SCHED_IDLE, so on a
 * 2-core machine a waking daemon or latency client takes its CPU at once
 * (the scheduler treats a CPU running only SCHED_IDLE work as idle).  At
 * nice 19, as before, a scheduler trace showed the daemon runnable for 5 ms
 * behind it.  Falls back to nice 19 where SCHED_IDLE is refused.  The
 * control load runs the same way.
 */
static void background_load(void)
{
        struct sched_param idle = { .sched_priority = 0 };

        if (sched_setscheduler(0, SCHED_IDLE, &idle) < 0)
                (void)!nice(19);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
}

pid_t load_fork(int *ret_rd, int *ret_wr)
{
        int ctl[2];

        if (pipe2(ctl, O_CLOEXEC) < 0)
                fault_die("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
                fault_die("fork: %s", strerror(errno));
        if (pid == 0) {
                close(ctl[0]);
                *ret_wr = ctl[1];
                return 0;
        }
        close(ctl[1]);
        *ret_rd = ctl[0];
        return pid;
}

void load_slow_main(const char *path, int k, int ctl)
{
        uint64_t *d = calloc((size_t)k, sizeof(*d));
        int *w = calloc((size_t)k, sizeof(*w));
        int sock = test_raw_connect(path), r, round;

        background_load();
        if (!d || !w || sock < 0 || raw_hello(sock, 5000) < 0) {
                load_report(ctl, 'e', sock < 0 ? sock : -EPROTO);
                _exit(2);
        }
        r = slow_open(sock, k, d, w);
        if (r < 0) {
                load_report(ctl, 'e', r);
                _exit(2);
        }
        load_report(ctl, 'o', k);
        /* From here on it never reads. */
        int64_t give_up = test_now() + 60 * NSEC_PER_SEC_F;
        for (round = 0; round < MAX_ROUNDS && test_now() < give_up; round++) {
                r = slow_arm_all(sock, k, d);
                if (r < 0)
                        break;
                for (int i = 0; i < k; i++)
                        (void)!write(w[i], "x", 1);
                fault_sleep_ms(ROUND_GAP_MS);
        }
        bool cut = r == -EPIPE || r == -ECONNRESET;
        load_report(ctl, cut ? 'c' : 'n', round);
        _exit(cut ? 0 : 1);
}

/*
 * The holder half of the control load: it takes the read ends the control
 * sends over sock (SCM_RIGHTS, up to FDS_PER_OPEN a datagram, acknowledged
 * with one byte, 'o', or 'e' when a registration failed), puts each in an
 * epoll set of its own as the daemon does, and then only holds them, until
 * the control kills it (or dies: PR_SET_PDEATHSIG).  It owns sock and every
 * fd it receives.
 */
static void __attribute__((noreturn)) holder_main(int sock)
{
        union {
                char buf[CMSG_SPACE(FDS_PER_OPEN * sizeof(int))];
                struct cmsghdr align;
        } control;
        int ep = epoll_create1(EPOLL_CLOEXEC);
        char byte;

        /* Had the control died before this call, recvmsg returns 0 or the
         * ack fails with EPIPE: the holder exits either way. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
                struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) <= 0)
                        _exit(0); /* the control is gone */
                byte = ep < 0 ? 'e' : 'o';
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT |
                                                                    EPOLLRDHUP | EPOLLET };
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                                        byte = 'e';
                        }
                }
                (void)!write(sock, &byte, 1);
        }
}

/*
 * The control: the same machine load without the daemon's part.  It does
 * what the slow client does to the kernel: it makes k pipes, 253 at a
 * time, and sends each batch of read ends away over SCM_RIGHTS, to a
 * holder process (holder_main) that keeps them in an epoll set, as the
 * daemon keeps its copies; then, for CONTROL_ROUNDS rounds 20 ms apart, it
 * writes one byte into every pipe, and at the end kills the holder and
 * waits for it, so the holder's teardown falls inside the window as the
 * daemon's does in a storm.  So a storm and a control create (before their
 * windows open) and free as many pipes and epoll registrations, and make as
 * many pipes ready a round, which matters: freeing them is RCU work that
 * kernel threads do on either CPU.  Both run at SCHED_IDLE.  None of it
 * reaches the daemon.
 * The latency client measured meanwhile is the baseline for the storms:
 * what the machine does to it under this load.
 */
void load_control_main(int k, int ctl)
{
        int *w = calloc((size_t)k, sizeof(*w));
        int sp[2], status;

        background_load();
        if (!w) {
                load_report(ctl, 'e', -ENOMEM);
                _exit(2);
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                load_report(ctl, 'e', -errno);
                _exit(2);
        }
        pid_t holder = fork();
        if (holder < 0) {
                load_report(ctl, 'e', -errno);
                _exit(2);
        }
        if (holder == 0) {
                close(sp[0]);
                holder_main(sp[1]);
        }
        close(sp[1]);
        for (int base = 0; base < k; base += FDS_PER_OPEN) {
                int rfds[FDS_PER_OPEN], p[2];
                int n = k - base < FDS_PER_OPEN ? k - base : FDS_PER_OPEN, opened = 0, r = 0;
                char ack = 0;
                for (; opened < n; opened++) {
                        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                                r = -errno;
                                break;
                        }
                        rfds[opened] = p[0];
                        w[base + opened] = p[1];
                }
                if (r == 0)
                        r = test_send_fds(sp[0], "o", 1, rfds, (size_t)n, 0);
                for (int j = 0; j < opened; j++)
                        close(rfds[j]); /* the holder has its copy */
                if (r == 0 && (read(sp[0], &ack, 1) != 1 || ack != 'o'))
                        r = -EPROTO;
                if (r < 0) {
                        load_report(ctl, 'e', r);
                        _exit(2);
                }
        }
        load_report(ctl, 'o', k);
        for (int round = 0; round < CONTROL_ROUNDS; round++) {
                for (int i = 0; i < k; i++)
                        (void)!write(w[i], "x", 1);
                fault_sleep_ms(ROUND_GAP_MS);
        }
        kill(holder, SIGKILL);
        waitpid(holder, &status, 0);
        load_report(ctl, 'd', CONTROL_ROUNDS);
        _exit(0);
}

