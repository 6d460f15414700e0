/*
 * Client side of the wire.  Requests are small, so they are packed on the
 * stack; replies are decoded with the connection's arena, which only the
 * thread holding the reader role uses.  Any fd the daemon sent (it never
 * does) is closed, so nothing can leak into the client.
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/cleanup.h"

int wire_send(int sock, const Netpoll__V1__ClientMessage *m, int fd, int flags)
{
        size_t len = netpoll__v1__client_message__get_packed_size(m);
        uint8_t stackbuf[512];
        _cleanup_free_ uint8_t *heap = NULL;
        uint8_t *buf = stackbuf;
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;

        if (len > WIRE_MAX_MESSAGE_BYTES)
                return -EMSGSIZE;
        if (len > sizeof(stackbuf)) {
                buf = heap = malloc(len);
                if (!heap)
                        return -ENOMEM;
        }
        netpoll__v1__client_message__pack(m, buf);

        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (fd >= 0) {
                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        for (;;) {
                if (sendmsg(sock, &mh, flags | MSG_NOSIGNAL) >= 0)
                        return 0;
                if (errno != EINTR)
                        return errno == EPIPE ? -ECONNRESET : -errno;
        }
}

int wire_recv(int sock, uint8_t *buf, Arena *a, int flags, Netpoll__V1__ServerMessage **ret)
{
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = WIRE_MAX_MESSAGE_BYTES };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        ssize_t n;

        do
                n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno == EAGAIN)
                        return 0;
                return errno == EPIPE ? -ECONNRESET : -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                safe_close(fd);
                        }
        if (n == 0)
                return -ECONNRESET;
        if (mh.msg_flags & MSG_TRUNC)
                return -EBADMSG;
        arena_reset(a);
        Netpoll__V1__ServerMessage *m =
                netpoll__v1__server_message__unpack(&a->allocator, (size_t)n, buf);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 1;
}
