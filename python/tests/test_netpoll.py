"""The Python binding against the real daemon (make check-python).

Each test class shares one netpolld started on a temporary socket, as
tests/helpers.c test_daemon_start does; tests that stop a daemon start
their own.  Every test checks it leaked no fd (/proc/self/fd before and
after), and one test proves that check fails on a leak.  Timing: never
early, generous upper bounds.

Environment: NETPOLLD_BIN (default build/netpolld) and NETPOLL_LIBRARY
(default build/libnetpoll.so.0), both relative to the repository.
"""

import asyncio
import ctypes
import dataclasses
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
ROOT = os.path.dirname(PYDIR)
sys.path.insert(0, PYDIR)
os.environ.setdefault("NETPOLL_LIBRARY", os.path.join(ROOT, "build", "libnetpoll.so.0"))
NETPOLLD = os.environ.get("NETPOLLD_BIN", os.path.join(ROOT, "build", "netpolld"))
RELAY = os.path.join(PYDIR, "examples", "relay.py")

import netpoll  # noqa: E402
from netpoll import _lib, aio  # noqa: E402
from netpoll.errors import error_for  # noqa: E402

SLACK = 2.0  # upper bound on lateness, seconds: these VMs are noisy


class Daemon:
    """build/netpolld on a temporary socket, admin rights for our uid."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="netpolld-py-")
        self.sock = os.path.join(self.dir, "np.sock")
        conf = os.path.join(self.dir, "netpolld.conf")
        with open(conf, "w") as f:
            f.write("[access]\nadmin_users = %d\n" % os.geteuid())
        self.log = open(os.path.join(self.dir, "stderr"), "w+b")
        self.proc = subprocess.Popen(
            [NETPOLLD, "--socket", self.sock, "--config", conf, "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(1000):
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("netpolld exited at start: %r" % self.log.read())
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                try:
                    s.connect(self.sock)
                    return
                except OSError:
                    pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("netpolld did not start listening on %s" % self.sock)

    def client(self):
        return netpoll.Client(self.sock)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def open_fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def assert_no_fd_leak(before):
    # listdir's own fd comes and goes: compare the sets after it closed.
    after = open_fds()
    if after != before:
        raise AssertionError("fds leaked: %s" % sorted(set(after) - set(before)))


def pipe():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return r, w


def fill(fd):
    """Fills a non-blocking pipe or socket until it would block."""
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except BlockingIOError:
        pass


class Base(unittest.TestCase):
    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def setUp(self):
        self.fds_before = open_fds()
        self.c = self.daemon.client()
        self.to_close = []

    def tearDown(self):
        self.c.close()
        for fd in self.to_close:
            os.close(fd)
        assert_no_fd_leak(self.fds_before)

    def pipe(self):
        r, w = pipe()
        self.to_close += [r, w]
        return r, w

    def in_thread(self, fn, *args):
        """Runs fn in a thread; returns a joiner giving (result, exception)."""
        box = {}

        def run():
            try:
                box["r"] = fn(*args)
            except BaseException as e:  # handed to the test
                box["e"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()

        def join(timeout=10):
            t.join(timeout)
            if t.is_alive():
                raise AssertionError("the thread is still blocked")
            return box.get("r"), box.get("e")
        join.thread = t
        return join


class TestFdCheck(unittest.TestCase):
    def test_fd_leak_check_fails_on_a_leaked_fd(self):
        before = open_fds()
        r, w = os.pipe()
        try:
            with self.assertRaises(AssertionError):
                assert_no_fd_leak(before)
        finally:
            os.close(r)
            os.close(w)
        assert_no_fd_leak(before)


class TestLayout(unittest.TestCase):
    """The ctypes structures against the header, as a compiler lays it out."""

    STRUCTS = {
        "struct np_status": _lib.np_status,
        "struct np_session_stats": _lib.np_session_stats,
        "np_event": _lib.np_event,
    }

    def header_fields(self, tag):
        with open(os.path.join(ROOT, "client", "netpoll.h")) as f:
            text = f.read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        m = re.search(r"\b%s\s*\{(.*?)\}" % re.escape(tag), text, re.S)
        self.assertIsNotNone(m, tag)
        names = []
        for decl in m.group(1).split(";"):
            decl = decl.strip()
            if not decl:
                continue
            # "type a, b[16]": the first declarator follows the type.
            parts = [p.strip() for p in decl.split(",")]
            first = parts[0].split()[-1]
            for d in [first] + parts[1:]:
                names.append(re.match(r"\**(\w+)", d).group(1))
        return names

    def test_every_header_field_is_mirrored_in_order(self):
        for tag, cls in [("struct np_status", _lib.np_status),
                         ("struct np_session_stats", _lib.np_session_stats),
                         ("typedef struct np_event", _lib.np_event)]:
            self.assertEqual(self.header_fields(tag), [n for n, _ in cls._fields_], tag)
        self.assertEqual([f.name for f in dataclasses.fields(netpoll.Status)],
                         [n for n, _ in _lib.np_status._fields_])

    @unittest.skipUnless(shutil.which(os.environ.get("CC", "cc")), "no C compiler")
    def test_offsets_and_sizes_match_the_compiler(self):
        lines = ["#include <stddef.h>", "#include <stdio.h>", "#include \"netpoll.h\"",
                 "int main(void)", "{"]
        want = []
        for cname, cls in self.STRUCTS.items():
            lines.append('printf("%%zu\\n", sizeof(%s));' % cname)
            want.append(ctypes.sizeof(cls))
            for name, _ in cls._fields_:
                lines.append('printf("%%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                             % (cname, name, cname, name))
                f = getattr(cls, name)
                want.append("%d %d" % (f.offset, f.size))
        lines += ["return 0;", "}"]
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            subprocess.run([os.environ.get("CC", "cc"), "-I", os.path.join(ROOT, "client"),
                            "-o", exe, src], check=True)
            got = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split("\n")
        self.assertEqual(got[:-1], [str(w) for w in want])


class TestErrors(unittest.TestCase):
    def test_negative_errnos_are_netpoll_errors_and_natural_oserrors(self):
        for eno, base in [(errno.ENOENT, FileNotFoundError),
                          (errno.ECONNREFUSED, ConnectionRefusedError),
                          (errno.ECONNRESET, ConnectionResetError),
                          (errno.EACCES, PermissionError), (errno.EPERM, PermissionError),
                          (errno.ETIMEDOUT, TimeoutError)]:
            e = error_for(-eno, "np_x")
            self.assertIsInstance(e, netpoll.NetpollError)
            self.assertIsInstance(e, base)
            self.assertEqual((e.errno, e.code, e.op), (eno, -eno, "np_x"))
            self.assertEqual(e.strerror, os.strerror(eno))
            self.assertEqual(str(e), "np_x: " + os.strerror(eno))
        # No natural subclass: a plain NetpollError, still an OSError.
        for eno in (errno.EBUSY, errno.EBADF, errno.EALREADY, errno.EDQUOT):
            e = error_for(-eno)
            self.assertIs(type(e), netpoll.NetpollError)
            self.assertIsInstance(e, OSError)
            self.assertEqual(e.errno, eno)

    def test_outcomes_map_to_reader_errors(self):
        self.assertIsNone(error_for(netpoll.NP_OK))
        e = error_for(netpoll.NP_ERR_TIMEOUT, "np_wait")
        self.assertIsInstance(e, netpoll.DeadlineExceededError)
        self.assertIsInstance(e, TimeoutError)
        self.assertEqual((e.errno, e.code, str(e)), (errno.ETIMEDOUT, 2, "np_wait: i/o timeout"))
        e = error_for(netpoll.NP_ERR_CLOSING)
        self.assertIsInstance(e, netpoll.ClosingError)
        self.assertEqual((e.errno, e.code), (None, 1))
        e = error_for(netpoll.NP_ERR_NOT_POLLABLE)
        self.assertIsInstance(e, netpoll.NotPollableError)
        self.assertEqual((e.errno, e.code), (None, 3))
        self.assertEqual(netpoll.strerror(netpoll.NP_ERR_CLOSING), "descriptor is closing")


class TestConnect(unittest.TestCase):
    def test_no_daemon_raises_file_not_found(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(FileNotFoundError) as cm:
                netpoll.Client(os.path.join(d, "none.sock"))
        self.assertIsInstance(cm.exception, netpoll.NetpollError)
        self.assertEqual((cm.exception.errno, cm.exception.op), (errno.ENOENT, "np_connect"))

    def test_socket_from_environment(self):
        d = Daemon()
        try:
            old = os.environ.get("NETPOLL_SOCKET")
            os.environ["NETPOLL_SOCKET"] = d.sock
            try:
                with netpoll.connect() as c:
                    c.ping()
            finally:
                if old is None:
                    del os.environ["NETPOLL_SOCKET"]
                else:
                    os.environ["NETPOLL_SOCKET"] = old
        finally:
            d.stop()


class TestClient(Base):
    def test_ping_connection_id_and_own_fds(self):
        self.c.ping()
        cid = self.c.connection_id()
        self.assertGreater(cid, 0)
        with self.daemon.client() as other:
            self.assertNotEqual(other.connection_id(), cid)
        r, w = self.pipe()
        self.assertFalse(self.c.is_poll_descriptor(r))

    def test_status_reports_every_field(self):
        st = self.c.status()
        self.assertIsInstance(st, netpoll.Status)
        self.assertEqual(st.pid, self.daemon.proc.pid)
        self.assertTrue(st.version and st.version[0].isdigit(), st.version)
        self.assertGreaterEqual(st.connections, 1)
        self.assertGreaterEqual(st.accepted, st.connections)
        self.assertGreater(st.uptime_ns, 0)
        self.assertGreater(st.rss_bytes, 0)
        self.assertGreater(st.fd_limit, st.open_fds)
        self.assertEqual(st.instance, 1)
        self.assertEqual(st.handshake_timeout_ns, 5 * 10**9)
        self.assertIs(st.fd_store, False)
        self.assertGreater(st.started_unix_ns, (time.time() - 3600) * 1e9)

    def test_session_stats_counts_descriptors_waiters_timers(self):
        self.assertEqual(self.c.session_stats(), netpoll.SessionStats(0, 0, 0))
        r, w = self.pipe()
        d = self.c.open(r)
        d.set_deadline(60, "r")
        d.arm("r")
        self.c.ping()
        self.assertEqual(self.c.session_stats(), netpoll.SessionStats(1, 1, 1))
        d.release()
        self.assertEqual(self.c.session_stats(), netpoll.SessionStats(0, 0, 0))

    def test_client_context_manager_disconnects_and_refuses_later_calls(self):
        with self.daemon.client() as c:
            c.ping()
        self.assertTrue(c.closed)
        with self.assertRaises(ValueError):
            c.ping()
        c.close()  # idempotent

    def test_close_wakes_a_blocked_poll_in_another_thread(self):
        c = self.daemon.client()
        join = self.in_thread(c.poll)
        time.sleep(0.1)
        c.close()
        result, exc = join()
        self.assertIsNone(exc)
        self.assertEqual(result, [])
        with self.assertRaises(ValueError):
            c.poll(0)

    def test_close_while_a_wait_is_parked_disconnects_when_it_returns(self):
        c = self.daemon.client()
        r, w = self.pipe()
        d = c.open(r)
        join = self.in_thread(d.wait, "r")
        time.sleep(0.1)
        c.close()  # refuses new calls; the parked wait keeps the connection
        self.assertTrue(d.closed)
        os.write(w, b"x")
        result, exc = join()
        self.assertIsNone(exc)
        d.release()  # the daemon released it with the connection: a no-op

    def test_fork_child_cannot_use_the_parent_client(self):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.c.ping()
            except RuntimeError:
                code = 0
            except BaseException:
                code = 2
            self.c.close()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.c.ping()


class TestDesc(Base):
    def test_open_returns_desc_with_id_fd_user(self):
        r, w = self.pipe()
        d = self.c.open(r, user=42)
        self.assertIsInstance(d, netpoll.Desc)
        self.assertEqual((d.fd, d.fileno(), d.user, d.client), (r, r, 42, self.c))
        self.assertGreater(d.id, 0)
        d2 = self.c.open(w, user=2**64 - 1)
        self.assertNotEqual(d2.id, d.id)
        d.release()
        d2.release()
        self.assertTrue(d.closed)

    def test_open_takes_file_objects(self):
        a, b = socket.socketpair()
        with a, b, self.c.open(a, 1) as d:
            self.assertEqual(d.fd, a.fileno())
            b.send(b"x")
            d.wait("r")

    def test_open_refuses_regular_files_and_bad_fds(self):
        with tempfile.TemporaryFile() as f:
            with self.assertRaises(PermissionError) as cm:
                self.c.open(f)
        self.assertEqual(cm.exception.errno, errno.EPERM)
        r, w = self.pipe()
        os.close(w)
        self.to_close.remove(w)
        with self.assertRaises(netpoll.NetpollError) as cm:
            self.c.open(w)
        self.assertEqual((cm.exception.errno, cm.exception.op), (errno.EBADF, "np_open"))
        with self.assertRaises(TypeError):
            self.c.open("not an fd")

    def test_desc_context_manager_unblocks_and_closes(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            join = self.in_thread(d.wait, "r")
            time.sleep(0.1)
        self.assertTrue(d.closed)
        _, exc = join()
        self.assertIsInstance(exc, netpoll.ClosingError)
        self.assertEqual(self.c.session_stats().descriptors, 0)
        # Already unblocked inside the block: exit still closes it.
        with self.c.open(r) as d:
            d.unblock()
        self.assertEqual(self.c.session_stats().descriptors, 0)
        with self.assertRaises(netpoll.NetpollError) as cm:
            self.c.close_desc(d.id)
        self.assertEqual(cm.exception.errno, errno.EBADF)

    def test_desc_of_another_client_is_refused(self):
        r, w = self.pipe()
        with self.daemon.client() as other, other.open(r) as d:
            with self.assertRaises(ValueError):
                self.c.wait(d)

    def test_modes_are_checked(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            for bad in ("x", "rw", "", 0, None):
                with self.assertRaises(ValueError):
                    d.wait(bad)
            with self.assertRaises(ValueError):
                d.set_deadline(1, "x")
            d.set_deadline(1, "wr")
            d.set_deadline(1, netpoll.NP_RW)


class TestWait(Base):
    def test_wait_returns_when_ready(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            t0 = time.monotonic()
            threading.Timer(0.05, os.write, (w, b"x")).start()
            self.assertIsNone(d.wait("r"))
            self.assertGreaterEqual(time.monotonic() - t0, 0.05)
            self.assertLess(time.monotonic() - t0, SLACK)

    def test_wait_consumes_latched_readiness_at_once(self):
        r, w = self.pipe()
        with self.c.open(r) as d, self.c.open(w) as dw:
            dw.wait("w")  # a fresh pipe has room
            os.write(w, b"x")
            self.c.ping()
            time.sleep(0.05)
            d.wait("r")

    def test_second_wait_of_a_mode_is_busy(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            join = self.in_thread(d.wait, "r")
            while self.c.session_stats().waiters == 0:
                time.sleep(0.01)
            with self.assertRaises(netpoll.NetpollError) as cm:
                d.wait("r")
            self.assertEqual((cm.exception.errno, cm.exception.op), (errno.EBUSY, "np_wait"))
            os.write(w, b"x")
            self.assertEqual(join(), (None, None))

    def test_unblock_ends_a_parked_wait_with_closing(self):
        r, w = self.pipe()
        d = self.c.open(r)
        join = self.in_thread(d.wait, "r")
        time.sleep(0.1)
        d.unblock()
        _, exc = join()
        self.assertIsInstance(exc, netpoll.ClosingError)
        self.assertEqual((exc.code, exc.op), (netpoll.NP_ERR_CLOSING, "np_wait"))
        with self.assertRaises(netpoll.ClosingError):
            d.wait("w")  # the error check, at once
        with self.assertRaises(netpoll.NetpollError) as cm:
            d.unblock()
        self.assertEqual(cm.exception.errno, errno.EALREADY)
        d.close()

    def test_close_before_unblock_is_busy(self):
        r, w = self.pipe()
        d = self.c.open(r)
        with self.assertRaises(netpoll.NetpollError) as cm:
            d.close()
        self.assertEqual(cm.exception.errno, errno.EBUSY)
        self.assertFalse(d.closed)
        d.release()

    def test_wait_canceled_ignores_deadlines_and_closing(self):
        r, w = self.pipe()
        d = self.c.open(r)
        d.set_deadline(0.05, "r")
        t0 = time.monotonic()
        threading.Timer(0.3, os.write, (w, b"x")).start()
        d.wait_canceled("r")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        os.read(r, 1)
        # Closing does not end it either, and np_close waits for it (EBUSY).
        join = self.in_thread(d.wait_canceled, "r")
        while self.c.session_stats().waiters == 0:
            time.sleep(0.01)
        d.unblock()
        time.sleep(0.1)
        self.assertTrue(join.thread.is_alive())
        with self.assertRaises(netpoll.NetpollError) as cm:
            d.close()
        self.assertEqual(cm.exception.errno, errno.EBUSY)
        os.write(w, b"x")
        self.assertEqual(join(), (None, None))
        d.close()

    def test_reset_reports_the_error_check_and_discards_readiness(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            os.write(w, b"x")
            self.c.ping()
            time.sleep(0.1)  # the daemon latches the edge
            d.reset("r")
            d.set_deadline(0.1, "r")
            with self.assertRaises(netpoll.DeadlineExceededError):
                d.wait("r")  # the latched readiness is gone
            with self.assertRaises(netpoll.DeadlineExceededError) as cm:
                d.reset("r")
            self.assertEqual(cm.exception.op, "np_reset")

    def test_error_event_is_not_pollable_for_reads(self):
        r, w = pipe()
        fill(w)
        os.close(r)
        try:
            with self.c.open(w, 9) as d:
                self.c.ping()
                with self.assertRaises(netpoll.NotPollableError):
                    d.wait("r")
                d.arm("r")
                [ev] = self.c.poll(SLACK)
                self.assertEqual((ev.desc, ev.user, ev.result), (d, 9, netpoll.Outcome.NOT_POLLABLE))
                self.assertIsInstance(ev.error, netpoll.NotPollableError)
                d.wait("w")
        finally:
            os.close(w)


class TestDeadline(Base):
    def timed_wait(self, d, mode):
        t0 = time.monotonic()
        with self.assertRaises(netpoll.DeadlineExceededError) as cm:
            d.wait(mode)
        self.assertIsInstance(cm.exception, TimeoutError)
        return time.monotonic() - t0

    def test_timeout_is_never_early(self):
        r, _ = self.pipe()  # empty: never readable
        _, w = self.pipe()
        fill(w)  # full: never writable
        with self.c.open(r) as dr, self.c.open(w) as dw:
            for d, mode in [(dr, "r"), (dw, "w")]:
                for delay in (0.001, 0.05, 0.2):
                    t0 = time.monotonic()
                    d.set_deadline(delay, mode)
                    self.timed_wait(d, mode)
                    took = time.monotonic() - t0
                    self.assertGreaterEqual(took, delay)
                    self.assertLess(took, delay + SLACK)
                    d.set_deadline(None, mode)

    def test_rw_sets_both_directions(self):
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            fill(a.fileno())
            with self.c.open(a) as d:
                t0 = time.monotonic()
                d.set_deadline(0.05)  # mode 'rw' by default
                self.timed_wait(d, "r")
                self.timed_wait(d, "w")
                self.assertGreaterEqual(time.monotonic() - t0, 0.05)

    def test_deadline_in_the_past_or_now_expires_at_once(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            for s in (0, -1, -0.5):
                d.set_deadline(s, "r")
                self.assertLess(self.timed_wait(d, "r"), SLACK)
            d.set_deadline(None, "r")
            os.write(w, b"x")
            d.wait("r")

    def test_tiny_positive_deadline_is_a_deadline_not_none(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            d.set_deadline(1e-12, "r")
            self.timed_wait(d, "r")

    def test_huge_and_timedelta_deadlines(self):
        import datetime
        r, w = self.pipe()
        with self.c.open(r) as d:
            d.set_deadline(1e30, "r")
            d.set_deadline(float("inf"), "r")
            with self.assertRaises(ValueError):
                d.set_deadline(float("nan"), "r")
            t0 = time.monotonic()
            d.set_deadline(datetime.timedelta(milliseconds=50), "r")
            self.timed_wait(d, "r")
            self.assertGreaterEqual(time.monotonic() - t0, 0.05)

    def test_deadline_moved_into_the_past_wakes_a_parked_wait(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            d.set_deadline(60, "r")
            join = self.in_thread(d.wait, "r")
            time.sleep(0.1)
            t0 = time.monotonic()
            d.set_deadline(-1, "r")
            _, exc = join()
            self.assertIsInstance(exc, netpoll.DeadlineExceededError)
            self.assertLess(time.monotonic() - t0, SLACK)

    def test_cleared_deadline_no_longer_fires(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            d.set_deadline(0.05, "r")
            d.set_deadline(None, "r")
            threading.Timer(0.3, os.write, (w, b"x")).start()
            d.wait("r")


class TestArmPoll(Base):
    def test_arm_outcomes_come_from_poll_as_events(self):
        r, w = self.pipe()
        a, b = self.pipe()
        with self.c.open(r, 1) as d1, self.c.open(a, 2) as d2:
            d1.arm("r")
            d2.set_deadline(0.05, "r")
            d2.arm("r")
            os.write(w, b"x")
            got = []
            t0 = time.monotonic()
            while len(got) < 2 and time.monotonic() - t0 < SLACK:
                got += self.c.poll(SLACK)
            got.sort(key=lambda e: e.user)
            self.assertEqual([(e.desc, e.user, e.mode, e.result) for e in got],
                             [(d1, 1, "r", netpoll.Outcome.OK),
                              (d2, 2, "r", netpoll.Outcome.TIMEOUT)])
            self.assertTrue(got[0].ok)
            self.assertIsNone(got[0].error)
            self.assertIsInstance(got[1].error, netpoll.DeadlineExceededError)

    def test_poll_zero_never_blocks_and_timeout_is_never_early(self):
        t0 = time.monotonic()
        self.assertEqual(self.c.poll(0), [])
        self.assertLess(time.monotonic() - t0, SLACK)
        for delay in (0.001, 0.1):
            t0 = time.monotonic()
            self.assertEqual(self.c.poll(delay), [])
            self.assertGreaterEqual(time.monotonic() - t0, delay)
        with self.assertRaises(ValueError):
            self.c.poll(-1)

    def test_events_beyond_max_stay_queued(self):
        descs = []
        for i in range(5):
            r, w = self.pipe()
            descs.append(self.c.open(r, i))
            os.write(w, b"x")
        for d in descs:
            d.arm("r")
        got = []
        t0 = time.monotonic()
        while len(got) < 5 and time.monotonic() - t0 < SLACK:
            batch = self.c.poll(SLACK, max_events=2)
            self.assertLessEqual(len(batch), 2)
            got += batch
        self.assertEqual(sorted(e.user for e in got), list(range(5)))
        for d in descs:
            d.release()

    def test_unblock_delivers_closing_to_an_armed_wait(self):
        r, w = self.pipe()
        d = self.c.open(r, 5)
        d.arm("r")
        d.unblock()
        [ev] = self.c.poll(SLACK)
        self.assertEqual((ev.desc, ev.user, ev.mode, ev.result),
                         (d, 5, "r", netpoll.Outcome.CLOSING))
        self.assertIsInstance(ev.error, netpoll.ClosingError)
        d.close()

    def test_break_wakes_a_blocked_poll(self):
        join = self.in_thread(self.c.poll)
        time.sleep(0.1)
        self.c.break_()
        self.assertEqual(join(), ([], None))
        # A break with nobody polling makes the next blocking poll return.
        self.c.break_()
        self.c.break_()  # coalesced
        t0 = time.monotonic()
        self.assertEqual(self.c.poll(), [])
        self.assertLess(time.monotonic() - t0, SLACK)
        self.assertEqual(self.c.poll(0.05), [])


class TestDaemonGone(unittest.TestCase):
    def test_parked_wait_ends_closing_then_calls_raise_connection_reset(self):
        before = open_fds()
        d = Daemon()
        r, w = pipe()
        try:
            c = d.client()
            desc = c.open(r)
            box = {}

            def wait():
                try:
                    desc.wait("r")
                except Exception as e:
                    box["e"] = e
            t = threading.Thread(target=wait)
            t.start()
            time.sleep(0.1)
            self.assertEqual(d.stop(), 0)
            t.join(10)
            self.assertIsInstance(box.get("e"), netpoll.ClosingError)
            with self.assertRaises(ConnectionResetError) as cm:
                c.ping()
            self.assertIsInstance(cm.exception, netpoll.NetpollError)
            c.close()
        finally:
            os.close(r)
            os.close(w)
        assert_no_fd_leak(before)


class AsyncBase(Base):
    """The asyncio integration; TestAsyncThreaded runs the same cases with
    the reader thread used when the library lacks np_process."""

    threaded = False

    def run_async(self, coro_fn, timeout=30):
        async def main():
            aio.attach(self.c, threaded=self.threaded)
            try:
                return await asyncio.wait_for(coro_fn(), timeout)
            finally:
                self.c.remove_from_loop()
        return asyncio.run(main())

    def test_uses_np_process_when_the_library_has_it(self):
        async def go():
            return self.c._loop_driver.threaded
        self.assertEqual(self.run_async(go), self.threaded)
        if not self.threaded:
            self.assertTrue(netpoll.has_process(), "libnetpoll has no np_process")

    def test_readable_and_writable(self):
        r, w = self.pipe()
        with self.c.open(r) as dr, self.c.open(w) as dw:
            async def go():
                loop = asyncio.get_running_loop()
                await self.c.writable(dw)
                t0 = time.monotonic()
                loop.call_later(0.05, os.write, w, b"x")
                await self.c.readable(dr)
                took = time.monotonic() - t0
                self.assertGreaterEqual(took, 0.05)
                self.assertLess(took, SLACK)
                self.assertEqual(os.read(r, 10), b"x")
            self.run_async(go)

    def test_deadline_and_unblock_raise(self):
        r, w = self.pipe()
        d = self.c.open(r)

        async def go():
            t0 = time.monotonic()
            d.set_deadline(0.05, "r")
            with self.assertRaises(netpoll.DeadlineExceededError):
                await self.c.readable(d)
            self.assertGreaterEqual(time.monotonic() - t0, 0.05)
            d.set_deadline(None, "r")
            task = asyncio.ensure_future(self.c.readable(d))
            await asyncio.sleep(0.05)
            self.assertFalse(task.done())
            d.unblock()
            with self.assertRaises(netpoll.ClosingError):
                await task
        self.run_async(go)
        d.close()

    def test_second_await_of_a_mode_is_busy(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            async def go():
                task = asyncio.ensure_future(self.c.readable(d))
                await asyncio.sleep(0)
                with self.assertRaises(netpoll.NetpollError) as cm:
                    await self.c.readable(d)
                self.assertEqual(cm.exception.errno, errno.EBUSY)
                os.write(w, b"x")
                await task
            self.run_async(go)

    def test_cancelled_await_keeps_readiness_for_the_next(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            async def go():
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(self.c.readable(d), 0.05)
                os.write(w, b"x")  # its arm, abandoned, takes this
                await asyncio.sleep(0.2)
                t0 = time.monotonic()
                await asyncio.wait_for(self.c.readable(d), SLACK)
                self.assertLess(time.monotonic() - t0, SLACK)
                # Cancelled again, then taken over while still pending.
                os.read(r, 10)
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(self.c.readable(d), 0.05)
                asyncio.get_running_loop().call_later(0.05, os.write, w, b"y")
                await self.c.readable(d)
            self.run_async(go)

    def test_many_descriptors_with_deadlines_in_one_loop(self):
        n = 100
        pipes = [self.pipe() for _ in range(n)]
        descs = [self.c.open(r, i) for i, (r, w) in enumerate(pipes)]

        async def one(i, d):
            t0 = time.monotonic()
            d.set_deadline(0.2, "r")
            try:
                await self.c.readable(d)
                return ("ready", time.monotonic() - t0)
            except netpoll.DeadlineExceededError:
                return ("timeout", time.monotonic() - t0)

        async def go():
            tasks = [asyncio.ensure_future(one(i, d)) for i, d in enumerate(descs)]
            await asyncio.sleep(0.02)
            for r, w in pipes[::2]:
                os.write(w, b"x")
            return await asyncio.gather(*tasks)
        results = self.run_async(go)
        for i, (what, took) in enumerate(results):
            if i % 2 == 0:
                self.assertEqual(what, "ready", i)
            else:
                self.assertEqual(what, "timeout", i)
                self.assertGreaterEqual(took, 0.2, i)  # never early
                self.assertLess(took, 0.2 + SLACK, i)
        for d in descs:
            d.release()

    def test_outcomes_of_direct_arms_go_to_poll(self):
        r, w = self.pipe()
        with self.c.open(r, 7) as d:
            async def go():
                d.arm("r")
                os.write(w, b"x")
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    if self.c._pending:
                        break
            self.run_async(go)
            [ev] = self.c.poll(0)
            self.assertEqual((ev.desc, ev.user, ev.result), (d, 7, netpoll.Outcome.OK))

    def test_a_new_loop_after_the_first_ended(self):
        r, w = self.pipe()
        with self.c.open(r) as d:
            async def go():
                os.write(w, b"x")
                await self.c.readable(d)  # attaches implicitly
                os.read(r, 1)
            aio.attach(self.c, asyncio.new_event_loop(), threaded=self.threaded).loop.close()
            asyncio.run(go())  # the first loop is closed: attached anew
            asyncio.run(go())  # the same, never removed from its loop
            async def other():
                aio.attach(self.c, threaded=self.threaded)
                loop2 = asyncio.new_event_loop()
                try:
                    with self.assertRaises(RuntimeError):
                        aio.attach(self.c, loop2)
                finally:
                    loop2.close()
                    self.c.remove_from_loop()
            asyncio.run(other())

    def test_close_fails_pending_awaits(self):
        r, w = self.pipe()
        c = self.daemon.client()
        d = c.open(r)

        async def go():
            aio.attach(c, threaded=self.threaded)
            task = asyncio.ensure_future(c.readable(d))
            await asyncio.sleep(0.05)
            c.close()
            with self.assertRaises(ConnectionAbortedError) as cm:
                await task
            self.assertIsInstance(cm.exception, netpoll.NetpollError)
            self.assertIsNone(c._loop_driver)
        asyncio.run(asyncio.wait_for(go(), 30))

    def test_daemon_gone_fails_pending_awaits(self):
        d = Daemon()
        r, w = self.pipe()
        c = d.client()
        desc = c.open(r)

        async def go():
            aio.attach(c, threaded=self.threaded)
            task = asyncio.ensure_future(c.readable(desc))
            await asyncio.sleep(0.05)
            d.stop()
            with self.assertRaises(netpoll.ClosingError):
                await task  # as np_wait: the wait ends closing
            with self.assertRaises(ConnectionResetError):
                await c.readable(desc)
        try:
            asyncio.run(asyncio.wait_for(go(), 30))
        finally:
            c.close()
            d.stop()


class TestAsync(AsyncBase):
    threaded = False


class TestAsyncThreaded(AsyncBase):
    threaded = True


del AsyncBase


class TestRelayExample(Base):
    def run_relay(self, *args, timeout=30):
        env = dict(os.environ, NETPOLL_SOCKET=self.daemon.sock)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-X", "dev", "-B", RELAY, *args], env=env,
                           capture_output=True, text=True, timeout=timeout)
        return p, time.monotonic() - t0

    def test_relays_two_children_and_kills_the_silent_one(self):
        p, took = self.run_relay(
            "--silence", "0.5",
            "--", "sh", "-c", "for i in 1 2 3 4 5 6; do echo out $i; echo err $i >&2; sleep 0.2; done",
            "--", "sh", "-c", "echo once; exec sleep 30")
        self.assertEqual(p.returncode, 1, p.stderr)
        out = p.stdout.splitlines()
        self.assertEqual([l for l in out if "out" in l], ["[sh] out %d" % i for i in range(1, 7)])
        self.assertIn("[sh] once", out)
        err = p.stderr.splitlines()
        self.assertEqual([l for l in err if "err" in l], ["[sh] err %d" % i for i in range(1, 7)])
        killed = [l for l in err if "silent for" in l]
        self.assertEqual(len(killed), 1, p.stderr)
        self.assertRegex(killed[0], r"^relay: sh \(pid \d+\) silent for (0\.[5-9]|[1-9]\d*\.\d) s, killed$")
        self.assertNotIn("Traceback", p.stderr)
        self.assertNotIn("ResourceWarning", p.stderr)
        self.assertGreaterEqual(took, 1.2)  # the chatty child ran its course
        self.assertLess(took, 10)

    def test_exits_zero_when_every_child_does(self):
        p, _ = self.run_relay("--silence", "5", "--", "echo", "a", "--", "printf", "no newline")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(p.stdout.splitlines()), ["[echo] a", "[printf] no newline"])
        self.assertEqual(p.stderr, "")

    def test_sigterm_stops_a_blocked_poll_at_once(self):
        env = dict(os.environ, NETPOLL_SOCKET=self.daemon.sock)
        p = subprocess.Popen([sys.executable, "-B", RELAY, "--", "sh", "-c", "echo up; exec sleep 30"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline(), "[sh] up\n")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        self.assertLess(time.monotonic() - t0, SLACK)
        self.assertEqual(p.returncode, 1, err)
        self.assertEqual(err, "")


if __name__ == "__main__":
    unittest.main()
