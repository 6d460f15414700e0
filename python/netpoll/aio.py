"""asyncio integration: await a descriptor's readiness on a running loop.

    client.add_to_loop(loop)           # or implicitly, at the first await
    await client.readable(desc)        # np_arm + the loop delivering the outcome
    await client.wait_async(desc, "w")

With a library that has np_process (netpoll(3), EVENT LOOPS) the loop
watches np_get_fd with loop.add_reader and runs np_process when it is
readable: no thread, nothing blocks.  That fd is level-triggered and is
made readable by the library itself when it holds work for np_process (a
pipelined np_arm to send, outcomes another thread read), so one reader
callback is all it takes.  With an older libnetpoll.so.0 that lacks it, a
dedicated thread blocks in np_poll and hands the outcomes to the loop with
call_soon_threadsafe; the behaviour is the same.

Semantics are np_wait's: an awaited wait returns when ready and raises
DeadlineExceededError, ClosingError or NotPollableError otherwise; a second
wait of the same descriptor and mode while one is pending raises a
NetpollError with EBUSY.  Cancelling an await (asyncio.wait_for, a task's
cancel) leaves its arm outstanding in the daemon: the next await of that
descriptor and mode takes it over, and a readiness outcome that arrives
with nobody awaiting is kept for it, as the pollDesc would have latched it.
Outcomes of waits armed with Client.arm() directly are not lost: poll()
returns them.  Attach a client to one loop at most; close it (or call
remove_from_loop) from the loop's thread, or from another one while the
loop runs (the loop then removes its reader before the connection goes).
"""

import asyncio
import errno
import select
import threading

from . import _lib
from .client import _MODE_NAMES, _mode
from .errors import error_for

__all__ = ["attach", "driver_for"]

_BATCH = 64


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Driver:
    def __init__(self, client, loop, threaded):
        self.client = client
        self.loop = loop
        self.threaded = threaded
        # (desc id, 'r'/'w') -> the Future awaiting its armed wait, or None
        # once that awaiter went away (the arm is still outstanding).
        self.arms = {}
        # Readiness an abandoned arm received, for the next await.
        self.latched = set()
        self.fd = None
        self.events = 0
        self.thread = None
        self.stopping = False
        self.attached = False
        self.buf = (_lib.np_event * _BATCH)()

    # ---- attach / detach ----

    def start(self):
        if self.threaded:
            self.thread = threading.Thread(target=self._thread_main, daemon=True,
                                           name="netpoll-asyncio-%x" % id(self.client))
            self.attached = True
            self.thread.start()
        else:
            # np_get_timeout is not watched: the library has no timers of
            # its own (deadlines run in the daemon), and whenever it says
            # "due now" it has also made the fd readable.
            self.fd = self.client._check("np_get_fd")
            events = self.client._check("np_get_events")
            if events & ~(select.POLLIN | select.POLLOUT):
                raise RuntimeError("netpoll: np_get_events asks for %#x" % events)
            self.events = events
            if events & select.POLLIN:
                self.loop.add_reader(self.fd, self._on_readable)
            if events & select.POLLOUT:
                self.loop.add_writer(self.fd, self._on_readable)
            self.attached = True

    def _remove_fd(self):
        if self.events & select.POLLIN:
            self.loop.remove_reader(self.fd)
        if self.events & select.POLLOUT:
            self.loop.remove_writer(self.fd)

    def _in_loop(self):
        running = _running_loop()
        return running is self.loop or (running is None and not self.loop.is_running())

    def detach(self, closing=False):
        """Stops delivering outcomes; pending awaits fail with
        ECONNABORTED.  When the connection is going (closing), the fd
        leaves the loop before np_disconnect closes it."""
        if not self.attached:
            return
        self.attached = False
        self.client._loop_driver = None
        op = "close" if closing else "remove_from_loop"
        if self.threaded:
            self.stopping = True
            try:
                self.client._call("np_break")
            except ValueError:
                pass
            # The thread leaves np_poll at the break; once it has, it no
            # longer holds the connection.
            if threading.current_thread() is not self.thread:
                self.thread.join()
            if self._in_loop():
                self._fail_all(errno.ECONNABORTED, op)
            else:
                self._soon(self._fail_all, errno.ECONNABORTED, op)
            return
        if self._in_loop():
            self._remove_fd()
            self._fail_all(errno.ECONNABORTED, op)
            return
        # Another thread, the loop running: the loop removes its reader;
        # meanwhile the connection (and so the fd) is held open.
        self.client._acquire()

        def remove():
            try:
                self._remove_fd()
                self._fail_all(errno.ECONNABORTED, op)
            finally:
                self.client._release()
        if not self._soon(remove):
            self.client._release()

    def _soon(self, fn, *args):
        try:
            self.loop.call_soon_threadsafe(fn, *args)
            return True
        except RuntimeError:  # the loop is closed
            return False

    def _fail_all(self, eno, op):
        if self.loop.is_closed():  # nobody can await them any more
            self.arms.clear()
            self.latched.clear()
            return
        for fut in self.arms.values():
            if fut is not None and not fut.done():
                fut.set_exception(error_for(-eno, op))
        self.arms.clear()
        self.latched.clear()

    # ---- delivery ----

    def _on_readable(self):
        """The loop's reader callback: np_process, never blocking."""
        try:
            n = self.client._call("np_process", self.buf, _BATCH)
        except ValueError:  # closed under us
            return
        if n < 0:
            # The daemon is gone for good: fail every await, and stop
            # watching an fd that now stays readable.
            self.attached = False
            self.client._loop_driver = None
            self._remove_fd()
            self._fail_all(-n, "np_process")
            return
        self._dispatch([self.client._event(self.buf[i]) for i in range(n)])

    def _thread_main(self):
        """Without np_process: block in np_poll, hand outcomes to the loop."""
        buf = (_lib.np_event * _BATCH)()
        while not self.stopping:
            try:
                n = self.client._call("np_poll", -1, buf, _BATCH)
            except ValueError:
                return
            if self.stopping:
                # Closing or detached: what this poll took still goes to
                # poll(), not to the detached loop.
                with self.client._lock:
                    self.client._pending.extend(
                        self.client._event(buf[i]) for i in range(max(n, 0)))
                return
            if n < 0:
                self._soon(self._fail_all, -n, "np_poll")
                return
            if n > 0:
                events = [self.client._event(buf[i]) for i in range(n)]
                if not self._soon(self._dispatch, events):
                    return

    def _dispatch(self, events):
        for ev in events:
            did = ev.desc.id if hasattr(ev.desc, "id") else ev.desc
            key = (did, ev.mode)
            if key not in self.arms:
                with self.client._lock:
                    self.client._pending.append(ev)
                continue
            fut = self.arms.pop(key)
            if fut is None or fut.done():
                # Its awaiter went away.  Readiness is kept for the next
                # one; timeout, closing and error outcomes need not be,
                # the daemon's error check reports them again.
                if ev.ok:
                    self.latched.add(key)
                continue
            fut.set_result(ev)

    # ---- awaiting ----

    async def wait(self, desc, mode):
        client = self.client
        m = _mode(mode)
        did = client._id(desc)
        key = (did, _MODE_NAMES[m])
        if key in self.latched:
            # Readiness kept from an abandoned await: np_wait would run the
            # error check first (closing, expired deadline), so does this.
            client.reset(did, m)
            self.latched.discard(key)
            return None
        cur = self.arms.get(key, self)
        if cur is self:
            client.arm(did, m)
        elif cur is not None and not cur.done():
            raise error_for(-errno.EBUSY, "np_arm")
        fut = self.loop.create_future()
        self.arms[key] = fut
        try:
            ev = await fut
        except asyncio.CancelledError:
            if self.arms.get(key) is fut:
                self.arms[key] = None
            raise
        if not ev.ok:
            raise ev.error
        return None


def attach(client, loop=None, threaded=None):
    """Attaches client to loop (the running loop when None).  threaded:
    None picks np_process when the library has it, else the thread; True or
    False forces one (tests)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    driver = client._loop_driver
    if driver is not None and driver.loop.is_closed():
        driver.detach()  # its loop ended (asyncio.run returned): start anew
        driver = None
    if driver is not None:
        if driver.loop is not loop:
            raise RuntimeError("netpoll: the Client is attached to another loop")
        return driver
    if client.closed:
        raise ValueError("netpoll: operation on a closed Client")
    if threaded is None:
        threaded = not _lib.has("np_process")
    driver = _Driver(client, loop, threaded)
    client._loop_driver = driver
    try:
        driver.start()
    except BaseException:
        client._loop_driver = None
        raise
    return driver


def driver_for(client):
    """The driver of the running loop, attaching client to it."""
    return attach(client, asyncio.get_running_loop())
