"""Exceptions: every failure of a libnetpoll call is a NetpollError.

NetpollError is an OSError.  A negative errno becomes a NetpollError that is
also the OSError subclass Python itself would pick for that errno where one
fits (FileNotFoundError for -ENOENT, ConnectionRefusedError,
ConnectionResetError, PermissionError, ...), so both `except NetpollError`
and `except ConnectionResetError` catch it.  The outcomes that end a reader's
wait without readiness are errors too, as Go's net package reports them:

    NP_ERR_CLOSING       ClosingError           (errno None)
    NP_ERR_TIMEOUT       DeadlineExceededError  (a TimeoutError, errno ETIMEDOUT)
    NP_ERR_NOT_POLLABLE  NotPollableError       (errno None)

Every instance has `code` (what the C call returned: a negative errno or a
positive NP_* outcome) and `op` (the C function's name).
"""

import errno as _errno

from . import _lib

__all__ = [
    "NetpollError",
    "ClosingError",
    "DeadlineExceededError",
    "NotPollableError",
    "error_for",
]


class NetpollError(OSError):
    """A libnetpoll call failed; `errno` is the positive errno (None for the
    closing and not-pollable outcomes), `code` the C return value, `op` the
    C function."""

    code = None
    op = None

    def __str__(self):
        text = self.strerror if self.strerror is not None else super().__str__()
        return "%s: %s" % (self.op, text) if self.op else text


class ClosingError(NetpollError):
    """NP_ERR_CLOSING: the descriptor was unblocked (or the daemon went away
    for good) while the wait was parked: Go's ErrNetClosing."""


class DeadlineExceededError(NetpollError, TimeoutError):
    """NP_ERR_TIMEOUT: the deadline of the waited mode passed: Go's
    os.ErrDeadlineExceeded ("i/o timeout")."""


class NotPollableError(NetpollError):
    """NP_ERR_NOT_POLLABLE: an error event was seen on the descriptor
    (reported to reads only)."""


_OUTCOMES = {
    _lib.NP_ERR_CLOSING: (ClosingError, None),
    _lib.NP_ERR_TIMEOUT: (DeadlineExceededError, _errno.ETIMEDOUT),
    _lib.NP_ERR_NOT_POLLABLE: (NotPollableError, None),
}

# Python's own errno -> OSError subclass table (PEP 3151), but for EALREADY
# and EAGAIN: np_unblock's "already closing" is no BlockingIOError.
_OS_BASES = {
    _errno.ENOENT: FileNotFoundError,
    _errno.EEXIST: FileExistsError,
    _errno.EISDIR: IsADirectoryError,
    _errno.ENOTDIR: NotADirectoryError,
    _errno.EACCES: PermissionError,
    _errno.EPERM: PermissionError,
    _errno.ECONNREFUSED: ConnectionRefusedError,
    _errno.ECONNRESET: ConnectionResetError,
    _errno.ECONNABORTED: ConnectionAbortedError,
    _errno.EPIPE: BrokenPipeError,
    _errno.ESHUTDOWN: BrokenPipeError,
    _errno.ETIMEDOUT: TimeoutError,
    _errno.EINTR: InterruptedError,
    _errno.ESRCH: ProcessLookupError,
    _errno.ECHILD: ChildProcessError,
}


def _combined(base):
    name = "Netpoll" + base.__name__
    cls = type(name, (NetpollError, base), {
        "__module__": __name__,
        "__doc__": "A NetpollError that is also a %s." % base.__name__,
    })
    return cls


_COMBINED = {}
for _base in dict.fromkeys(_OS_BASES.values()):
    _cls = _combined(_base)
    _COMBINED[_base] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _base, _cls


def error_for(code, op=None):
    """The exception for a C return value `code` (a negative errno or a
    positive NP_* outcome), or None for 0."""
    code = int(code)
    if code == 0:
        return None
    if code > 0:
        cls, eno = _OUTCOMES.get(code, (NetpollError, None))
    else:
        eno = -code
        base = _OS_BASES.get(eno)
        cls = _COMBINED[base] if base else NetpollError
    e = cls(eno, _lib.strerror(code))
    e.code = code
    e.op = op
    return e
