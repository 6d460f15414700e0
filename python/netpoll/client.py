"""Client and Desc: the blocking API of libnetpoll (netpoll(3)).

Thread safety: as in C, every method of a Client may be called from any
thread at once; a thread blocked in wait() or poll() does not delay the
others (ctypes drops the GIL around the call).  Unlike np_disconnect,
Client.close() is safe while other threads are inside calls: it refuses new
calls at once, wakes a blocked poll() (np_break), and the connection is
released (np_disconnect) when the last call in progress returns.  A closed
client raises ValueError, never touches freed memory.  After fork() the
child must not use the parent's Client (RuntimeError); it connects anew.
"""

import ctypes
import dataclasses
import enum
import errno
import math
import os
import threading
import warnings
from collections import deque

from . import _lib
from .errors import error_for

__all__ = ["Client", "Desc", "Event", "Outcome", "Status", "SessionStats", "READ", "WRITE", "RW"]

READ = "r"
WRITE = "w"
RW = "rw"

_MODES = {"r": _lib.NP_READ, "w": _lib.NP_WRITE}
_MODES_RW = {"r": _lib.NP_READ, "w": _lib.NP_WRITE, "rw": _lib.NP_RW, "wr": _lib.NP_RW}
_MODE_NAMES = {_lib.NP_READ: "r", _lib.NP_WRITE: "w"}

_INT64_MAX = 2**63 - 1
_POLL_MAX = 64


class Outcome(enum.IntEnum):
    """The result of a wait (np_event.result, NP_*)."""

    OK = _lib.NP_OK
    CLOSING = _lib.NP_ERR_CLOSING
    TIMEOUT = _lib.NP_ERR_TIMEOUT
    NOT_POLLABLE = _lib.NP_ERR_NOT_POLLABLE


@dataclasses.dataclass(frozen=True)
class Event:
    """The outcome of an armed wait, as poll() (or the asyncio integration)
    delivers it.  desc is the Desc it was armed on (its raw id when this
    Client does not know it), user the cookie given to open(), mode 'r' or
    'w', result an Outcome."""

    desc: object
    user: int
    mode: str
    result: Outcome

    @property
    def ok(self):
        return self.result == Outcome.OK

    @property
    def error(self):
        """None when ready, else the exception a wait() would have raised:
        ClosingError, DeadlineExceededError or NotPollableError."""
        return error_for(self.result, "np_poll")


@dataclasses.dataclass(frozen=True)
class SessionStats:
    """np_session_stats: this connection's figures."""

    descriptors: int
    waiters: int
    timers: int


@dataclasses.dataclass(frozen=True)
class Status:
    """np_status: every field of struct np_status, under its C name."""

    version: str
    pid: int
    uptime_ns: int
    connections: int
    descriptors: int
    waiters: int
    timers: int
    events: int
    timeouts: int
    protocol_errors: int
    slots_in_use: int
    slots_allocated: int
    breaks: int
    rss_bytes: int
    open_fds: int
    fd_limit: int
    accepted: int
    max_connections: int
    max_connections_per_uid: int
    max_descriptors: int
    max_output_bytes: int
    handshake_timeout_ns: int
    started_unix_ns: int
    instance: int
    resumed_connections: int
    resumed_descriptors: int
    fd_store: bool


def _mode(mode, allow_rw=False):
    table = _MODES_RW if allow_rw else _MODES
    if isinstance(mode, str):
        m = table.get(mode)
    elif isinstance(mode, int) and mode in table.values():
        m = mode
    else:
        m = None
    if m is None:
        raise ValueError("netpoll: mode must be one of %s, not %r"
                         % ("/".join(repr(k) for k in table), mode))
    return m


def _seconds_to_ns(seconds, what):
    """A duration in seconds (int, float, timedelta) as ns, rounded up so a
    deadline or a poll never ends early; > 0 stays > 0."""
    if hasattr(seconds, "total_seconds"):
        seconds = seconds.total_seconds()
    seconds = float(seconds)
    if math.isnan(seconds):
        raise ValueError("netpoll: %s is NaN" % what)
    if seconds <= 0:
        return 0
    if seconds >= _INT64_MAX / 1e9:
        return _INT64_MAX
    return max(1, math.ceil(seconds * 1e9))


def _fileno(fd):
    if isinstance(fd, int):
        return fd
    if hasattr(fd, "fileno"):
        return fd.fileno()
    raise TypeError("netpoll: an fd or an object with fileno() is needed, not %r" % (fd,))


class Desc:
    """A descriptor registered with netpolld (np_open).

    Holds the np_desc id and the fd; the caller keeps owning the fd (and
    the file object, if one was given: it is referenced here until the Desc
    is closed).  As a context manager it unblocks and closes the descriptor
    (np_unblock, then np_close, as Go's pollDesc is closed), never the fd.
    """

    def __init__(self, client, desc_id, fd, user, fileobj=None):
        self.client = client
        self.id = desc_id
        self.fd = fd
        self.user = user
        self._fileobj = fileobj
        self._closed = False

    def __repr__(self):
        return "<netpoll.Desc id=%#x fd=%d user=%d%s>" % (
            self.id, self.fd, self.user, " closed" if self.closed else "")

    @property
    def closed(self):
        return self._closed or self.client.closed

    def fileno(self):
        return self.fd

    def wait(self, mode=READ):
        return self.client.wait(self, mode)

    def wait_canceled(self, mode=READ):
        return self.client.wait_canceled(self, mode)

    def reset(self, mode=READ):
        return self.client.reset(self, mode)

    def set_deadline(self, seconds, mode=RW):
        return self.client.set_deadline(self, seconds, mode)

    def arm(self, mode=READ):
        return self.client.arm(self, mode)

    def unblock(self):
        return self.client.unblock(self)

    def close(self):
        return self.client.close_desc(self)

    def release(self):
        """np_unblock (already closing is fine) then np_close.  A no-op once
        closed, or once the client is (the daemon released it then)."""
        if self.closed:
            self._closed = True
            return
        try:
            self.unblock()
        except OSError as e:
            if e.errno != errno.EALREADY:
                raise
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class Client:
    """A connection to netpolld (np_connect).

    path: the daemon's socket; None means $NETPOLL_SOCKET, else the system
    socket (/run/netpolld/netpolld.sock).  A context manager that
    disconnects.  Descriptors may be given as Desc objects or raw ids.
    """

    def __init__(self, path=None):
        lib = _lib.load()
        self._lib = lib
        ptr = _lib.np_client_p()
        cpath = None if path is None else os.fsencode(path)
        r = lib.np_connect(cpath, ctypes.byref(ptr))
        if r < 0:
            raise error_for(r, "np_connect")
        self._ptr = ptr.value
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._descs = {}
        # Outcomes the event-loop integration took that no coroutine waited
        # for: poll() returns them first.
        self._pending = deque()
        self._loop_driver = None

    # ---- lifetime ----

    def _acquire(self):
        with self._lock:
            if self._closing:
                raise ValueError("netpoll: operation on a closed Client")
            if os.getpid() != self._pid:
                raise RuntimeError("netpoll: a Client cannot be used after fork(); connect anew")
            self._users += 1
            return self._ptr

    def _release(self):
        with self._lock:
            self._users -= 1
            free = self._closing and self._users == 0 and self._ptr is not None
            if free:
                ptr, self._ptr = self._ptr, None
        if free:
            self._lib.np_disconnect(ptr)

    def _call(self, op, *args):
        c = self._acquire()
        try:
            return getattr(self._lib, op)(c, *args)
        finally:
            self._release()

    def _check(self, op, *args):
        r = self._call(op, *args)
        if r < 0:
            raise error_for(r, op)
        return r

    @property
    def closed(self):
        return self._closing

    def close(self):
        """Disconnects (np_disconnect): the daemon releases every descriptor,
        wait and timer of this connection.  Idempotent.  Calls in progress
        in other threads finish first: a blocked poll() is woken (np_break),
        a blocked wait() keeps the connection until it returns."""
        driver = self._loop_driver
        if driver is not None:
            driver.detach(closing=True)
        with self._lock:
            if self._closing:
                return
            self._closing = True
            busy = self._users > 0 and os.getpid() == self._pid
            self._users += 1  # ours, until np_break is done
        try:
            if busy:
                self._lib.np_break(self._ptr)
        finally:
            self._release()
        with self._lock:
            for d in self._descs.values():
                d._closed = True
            self._descs.clear()

    disconnect = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_closing", True):
            return
        warnings.warn("unclosed %r" % self, ResourceWarning, source=self)
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        try:
            state = "id=%d" % self._call("np_connection_id")
        except (ValueError, RuntimeError):
            state = "closed" if self._closing else "of another process"
        return "<netpoll.Client %s>" % state

    # ---- descriptors ----

    def _id(self, desc):
        if isinstance(desc, Desc):
            if desc.client is not self:
                raise ValueError("netpoll: %r belongs to another Client" % desc)
            return desc.id
        return int(desc)

    def open(self, fd, user=0):
        """np_open: registers fd (an int or an object with fileno()) and
        returns its Desc.  user (a 64-bit cookie) comes back in events."""
        fileobj = None if isinstance(fd, int) else fd
        n = _fileno(fd)
        ret = _lib.np_desc()
        self._check("np_open", n, user, ctypes.byref(ret))
        d = Desc(self, ret.value, n, user, fileobj)
        with self._lock:
            self._descs[d.id] = d
        return d

    def close_desc(self, desc):
        """np_close: the descriptor must be unblocked first (EBUSY)."""
        did = self._id(desc)
        self._check("np_close", did)
        with self._lock:
            d = self._descs.pop(did, None)
        if d is not None:
            d._closed = True
            d._fileobj = None

    def unblock(self, desc):
        """np_unblock: parked waits end with ClosingError; EALREADY when
        already closing."""
        self._check("np_unblock", self._id(desc))

    def _outcome(self, op, *args):
        r = self._check(op, *args)
        if r != _lib.NP_OK:
            raise error_for(r, op)

    def wait(self, desc, mode=READ):
        """np_wait: returns when desc is ready for mode ('r' or 'w'); raises
        DeadlineExceededError, ClosingError or NotPollableError otherwise."""
        self._outcome("np_wait", self._id(desc), _mode(mode))

    def wait_canceled(self, desc, mode=READ):
        """np_wait_canceled: waits for readiness only, ignoring closing and
        deadlines."""
        self._outcome("np_wait_canceled", self._id(desc), _mode(mode))

    def reset(self, desc, mode=READ):
        """np_reset: raises what the error check finds (closing, expired
        deadline, error event), else discards latched readiness of mode."""
        self._outcome("np_reset", self._id(desc), _mode(mode))

    def set_deadline(self, desc, seconds, mode=RW):
        """np_set_deadline: seconds from now (float, int or timedelta; <= 0
        expires it at once), or None for no deadline; mode 'r', 'w' or 'rw'.
        Rounded up to the nanosecond: a deadline never fires early."""
        if seconds is None:
            ns = 0
        else:
            ns = _seconds_to_ns(seconds, "deadline") or -1
        self._check("np_set_deadline", self._id(desc), ns, _mode(mode, allow_rw=True))

    def arm(self, desc, mode=READ):
        """np_arm: an asynchronous wait; its outcome comes from poll()."""
        self._check("np_arm", self._id(desc), _mode(mode))

    def _event(self, ev):
        with self._lock:
            d = self._descs.get(ev.desc, ev.desc)
        return Event(d, ev.user, _MODE_NAMES.get(ev.mode, ev.mode), Outcome(ev.result))

    def poll(self, timeout=None, max_events=_POLL_MAX):
        """np_poll: a list of Events of ended armed waits.  timeout None
        blocks until one or a break_(); 0 never blocks; > 0 waits at most
        that many seconds and never returns early without an event or a
        break.  Blocking calls are not interrupted by signals (KeyboardInterrupt
        is raised when they return): give them a timeout or a deadline, or
        call break_() from another thread."""
        if max_events <= 0:
            raise ValueError("netpoll: max_events must be > 0")
        if timeout is None:
            ns = -1
        elif timeout < 0:
            raise ValueError("netpoll: timeout must be None or >= 0")
        else:
            ns = _seconds_to_ns(timeout, "timeout")
        out = []
        with self._lock:
            while self._pending and len(out) < max_events:
                out.append(self._pending.popleft())
        if out:
            ns = 0
            if len(out) == max_events:
                return out
        buf = (_lib.np_event * (max_events - len(out)))()
        n = self._check("np_poll", ns, buf, len(buf))
        out.extend(self._event(buf[i]) for i in range(n))
        return out

    def break_(self):
        """np_break: wakes a blocked poll(), or makes the next blocking one
        return [] at once.  Coalesced."""
        self._check("np_break")

    def is_poll_descriptor(self, fd):
        """np_is_poll_descriptor: whether fd is one of the daemon's poller
        fds or this client's own."""
        return self._check("np_is_poll_descriptor", _fileno(fd)) == 1

    # ---- the connection ----

    def ping(self):
        """np_ping: one round trip."""
        self._check("np_ping")

    def connection_id(self):
        """np_connection_id: this connection's id, as the daemon's lists
        name it."""
        return self._call("np_connection_id")

    def session_stats(self):
        st = _lib.np_session_stats()
        self._check("np_session_stats", ctypes.byref(st))
        return SessionStats(st.descriptors, st.waiters, st.timers)

    def status(self):
        """np_status: daemon-wide figures; PermissionError without admin
        rights."""
        st = _lib.np_status()
        self._check("np_status", ctypes.byref(st))
        values = {}
        for name, _ in _lib.np_status._fields_:
            v = getattr(st, name)
            values[name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return Status(**values)

    def upgrade(self):
        """np_upgrade: asks the daemon to re-execute itself in place (admins
        only: PermissionError otherwise)."""
        self._check("np_upgrade")

    # ---- asyncio (netpoll.aio) ----

    def add_to_loop(self, loop=None):
        """Attaches this client to an asyncio loop (the running one when
        None); see netpoll.aio.  The loop then takes the outcomes of every
        armed wait: wait_async(), readable() and writable() get theirs,
        poll() returns the others."""
        from . import aio
        aio.attach(self, loop)

    def remove_from_loop(self):
        """Detaches from the asyncio loop; pending async waits fail."""
        if self._loop_driver is not None:
            self._loop_driver.detach()

    async def wait_async(self, desc, mode=READ):
        """await-able np_wait through the loop (np_arm + np_process)."""
        from . import aio
        return await aio.driver_for(self).wait(desc, mode)

    async def readable(self, desc):
        return await self.wait_async(desc, READ)

    async def writable(self, desc):
        return await self.wait_async(desc, WRITE)
