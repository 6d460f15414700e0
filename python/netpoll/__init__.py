"""netpoll: Python binding of libnetpoll, the client library of netpolld.

netpolld runs Go's runtime network poller as a service: register an fd,
set deadlines, wait for readiness with Go's outcomes (ready, i/o timeout,
closing).  Standard library only: ctypes on libnetpoll.so.0 ($NETPOLL_LIBRARY
names the file when it is not where the dynamic loader looks).

    import netpoll
    with netpoll.Client() as c, c.open(sock) as d:   # $NETPOLL_SOCKET
        d.set_deadline(5.0, "r")
        try:
            d.wait("r")
        except netpoll.DeadlineExceededError:
            ...

See the Python section of the project README and netpoll(3).
"""

from ._lib import NP_OK, NP_ERR_CLOSING, NP_ERR_TIMEOUT, NP_ERR_NOT_POLLABLE
from ._lib import NP_READ, NP_WRITE, NP_RW, strerror
from .client import Client, Desc, Event, Outcome, SessionStats, Status, READ, WRITE, RW
from .errors import NetpollError, ClosingError, DeadlineExceededError, NotPollableError

__all__ = [
    "Client", "Desc", "Event", "Outcome", "SessionStats", "Status",
    "READ", "WRITE", "RW",
    "NP_OK", "NP_ERR_CLOSING", "NP_ERR_TIMEOUT", "NP_ERR_NOT_POLLABLE",
    "NP_READ", "NP_WRITE", "NP_RW",
    "NetpollError", "ClosingError", "DeadlineExceededError", "NotPollableError",
    "connect", "has_process", "strerror",
]


def connect(path=None):
    """Client(path): connects to netpolld."""
    return Client(path)


def has_process():
    """Whether the loaded library has np_process (else the asyncio
    integration runs a thread)."""
    from . import _lib
    return _lib.has("np_process")
