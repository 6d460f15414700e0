/*
 * Raw protocol for the fault tests (declared in harness.h): datagrams packed
 * with the protobuf-c generated code and sent with any fds, so the tests
 * can send what libnetpoll never would (truncations, fds where none belong,
 * a client's own socket) and read replies without the library's help.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

#define MAX_MESSAGE_BYTES (64 * 1024)

int raw_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
        int r = -EINTR;

        for (int i = 0; i < 100 && r == -EINTR; i++)
                r = test_send_fds(sock, buf, len, fds, nfds, 0);
        return r;
}

int raw_send_requests(int sock, Netpoll__V1__Request *const *qs, size_t n, const int *fds,
                      size_t nfds)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        uint8_t *buf;
        int r;

        m.requests = (Netpoll__V1__Request **)qs;
        m.n_requests = n;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        netpoll__v1__client_message__pack(&m, buf);
        r = raw_send(sock, buf, len, fds, nfds);
        free(buf);
        return r;
}

int raw_recv(int sock, int timeout_ms, Netpoll__V1__ServerMessage **ret)
{
        static __thread uint8_t *buf;
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        int r;

        if (!buf && !(buf = malloc(MAX_MESSAGE_BYTES)))
                return -ENOMEM;
        do
                r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        struct iovec iov = { .iov_base = buf, .iov_len = MAX_MESSAGE_BYTES };
        struct msghdr mh = { .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == ECONNRESET || errno == EPIPE ? 0 : -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                close(fd);
                        }
        if (n == 0)
                return 0;
        if (mh.msg_flags & MSG_TRUNC)
                return -EBADMSG;
        Netpoll__V1__ServerMessage *m = netpoll__v1__server_message__unpack(NULL, (size_t)n, buf);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 1;
}

int raw_hello(int sock, int timeout_ms)
{
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;
        Netpoll__V1__Hello h = NETPOLL__V1__HELLO__INIT;
        Netpoll__V1__ServerMessage *w;
        uint8_t buf[256];
        int r;

        h.version = 1;
        h.name = (char *)"faults";
        m.hello = &h;
        size_t len = netpoll__v1__client_message__pack(&m, buf);
        r = raw_send(sock, buf, len, NULL, 0);
        if (r < 0)
                return r == -EPIPE ? -ECONNRESET : r;
        r = raw_recv(sock, timeout_ms, &w);
        if (r <= 0)
                return r == 0 ? -ECONNRESET : r;
        r = w->error ? w->error : w->welcome ? 0 : -EPROTO;
        netpoll__v1__server_message__free_unpacked(w, NULL);
        return r;
}

int raw_await_reply(int sock, uint64_t id, int timeout_ms, int32_t *ret_result, uint64_t *ret_desc)
{
        int64_t give_up = test_now() + (int64_t)timeout_ms * NSEC_PER_MSEC_F;

        for (int i = 0; i < 100000; i++) {
                Netpoll__V1__ServerMessage *m;
                int64_t left = (give_up - test_now()) / NSEC_PER_MSEC_F;
                int r = raw_recv(sock, left > 0 ? (int)left : 0, &m);
                if (r <= 0)
                        return r == -EBADMSG ? -EBADMSG : r;
                bool found = false;
                for (size_t k = 0; k < m->n_replies && !found; k++)
                        if (m->replies[k]->id == id) {
                                found = true;
                                if (ret_result)
                                        *ret_result = m->replies[k]->result;
                                if (ret_desc)
                                        *ret_desc = m->replies[k]->desc;
                        }
                netpoll__v1__server_message__free_unpacked(m, NULL);
                if (found)
                        return 1;
        }
        return -ETIMEDOUT;
}

Netpoll__V1__Request raw_request(uint64_t id, int op, uint64_t desc, int mode, int64_t ns)
{
        Netpoll__V1__Request q = NETPOLL__V1__REQUEST__INIT;

        q.id = id;
        q.op = (Netpoll__V1__Op)op;
        q.desc = desc;
        q.mode = mode;
        q.ns = ns;
        return q;
}

int raw_greeted(const char *sock)
{
        int fd = test_raw_connect(sock);

        if (fd < 0)
                fault_die("connect: %s", strerror(-fd));
        int r = raw_hello(fd, 3000);
        if (r < 0)
                fault_die("hello: %s", strerror(-r));
        return fd;
}

size_t raw_pack_ping_with_unknown(uint8_t *buf, uint64_t id)
{
        Netpoll__V1__Request q = raw_request(id, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
        uint8_t inner[64];
        size_t n = netpoll__v1__request__pack(&q, inner);

        inner[n++] = (15 << 3) | 0;
        inner[n++] = 0x01;
        buf[0] = (2 << 3) | 2; /* ClientMessage.requests, length-delimited */
        buf[1] = (uint8_t)n;
        memcpy(buf + 2, inner, n);
        return n + 2;
}

uint8_t *raw_pack_pings(int n, size_t *ret_len)
{
        Netpoll__V1__Request *q = calloc((size_t)n + 1, sizeof(*q));
        Netpoll__V1__Request **qs = calloc((size_t)n + 1, sizeof(*qs));
        Netpoll__V1__ClientMessage m = NETPOLL__V1__CLIENT_MESSAGE__INIT;

        if (!q || !qs)
                fault_die("out of memory");
        for (int i = 0; i < n; i++) {
                q[i] = raw_request((uint64_t)i + 1, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
                qs[i] = &q[i];
        }
        m.requests = qs;
        m.n_requests = (size_t)n;
        size_t len = netpoll__v1__client_message__get_packed_size(&m);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                fault_die("out of memory");
        netpoll__v1__client_message__pack(&m, buf);
        free(q);
        free(qs);
        *ret_len = len;
        return buf;
}

int raw_probe(int sock)
{
        Netpoll__V1__Request q = raw_request(RAW_PROBE_ID, NETPOLL__V1__OP__OP_PING, 0, 0, 0);
        Netpoll__V1__Request *qs[1] = { &q };
        int32_t result;

        if (raw_send_requests(sock, qs, 1, NULL, 0) < 0)
                return RAW_CLOSED; /* EPIPE: already gone */
        int r = raw_await_reply(sock, RAW_PROBE_ID, 3000, &result, NULL);
        return r == 1 ? RAW_ALIVE : r == 0 || r == -EBADMSG ? RAW_CLOSED : RAW_HUNG;
}

const char *raw_probe_name(int o)
{
        return o == RAW_ALIVE ? "served" : o == RAW_CLOSED ? "dropped" : "HUNG";
}
