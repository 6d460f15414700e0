#!/usr/bin/env python3
"""relay: run commands, relay their output line by line, kill the silent.

    relay.py [--silence SECONDS] -- CMD [ARGS] [-- CMD [ARGS]]...

The Python twin of client/examples/supervise.c.  Each command's stdout and
stderr are pipes registered with netpolld; one thread arms a read on each
and takes the outcomes from poll().  Before every arm the pipe gets a read
deadline of what is left of its command's silence allowance (measured from
its last output on either pipe), so a timeout outcome means the command said
nothing for SECONDS: its process group is killed.  Lines are printed as
"[name] text", stdout lines on stdout and stderr lines on stderr.  SIGINT and
SIGTERM reach the loop through a pipe registered like the others
(signal.set_wakeup_fd), so they end a poll() at once.  Exit status: 0 if
every command exited 0, else 1.
"""

import os
import signal
import subprocess
import sys
import time

try:
    import netpoll
except ImportError:  # run from the source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import netpoll

NS = 1_000_000_000


class Stream:
    def __init__(self, child, pipe, out):
        self.child, self.pipe, self.out = child, pipe, out
        os.set_blocking(pipe.fileno(), False)
        self.partial = b""
        self.desc = None


class Child:
    def __init__(self, argv):
        self.name = os.path.basename(argv[0])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.last = time.monotonic_ns()
        self.killed = False
        self.streams = [Stream(self, self.proc.stdout, sys.stdout.buffer),
                        Stream(self, self.proc.stderr, sys.stderr.buffer)]


def emit(s, line):
    s.out.write(b"[%s] %s\n" % (s.child.name.encode(), line))
    s.out.flush()


def arm(s, silence):
    """A read deadline of what is left of the allowance, then the arm."""
    left = None
    if silence and not s.child.killed:
        left = (s.child.last + silence - time.monotonic_ns()) / NS  # <= 0: at once
    s.desc.set_deadline(left, "r")
    s.desc.arm("r")


def drain(s):
    """Reads until EAGAIN (readiness is edge-triggered, as in Go); prints
    whole lines.  Returns False at EOF."""
    while True:
        try:
            data = os.read(s.pipe.fileno(), 65536)
        except BlockingIOError:
            return True
        if not data:
            if s.partial:
                emit(s, s.partial)
            return False
        s.child.last = time.monotonic_ns()
        *lines, s.partial = (s.partial + data).split(b"\n")
        for line in lines:
            emit(s, line)


def relay(commands, silence):
    stop = []
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_fd = signal.set_wakeup_fd(sig_w)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda n, _: stop.append(n))
    children = [Child(argv) for argv in commands]
    with netpoll.Client() as client, client.open(sig_r) as sig_desc:
        sig_desc.arm("r")
        live = {}
        for ch in children:
            for s in ch.streams:
                s.desc = client.open(s.pipe)
                live[s.desc.id] = s
                arm(s, silence)
        while live and not stop:
            for ev in client.poll():
                if ev.desc is sig_desc:
                    continue  # a signal: its handler ran, `stop` says so
                s = live[ev.desc.id]
                ch = s.child
                if ev.result == netpoll.Outcome.TIMEOUT:
                    silent = time.monotonic_ns() - ch.last
                    if silent >= silence and not ch.killed:
                        os.killpg(ch.proc.pid, signal.SIGKILL)
                        ch.killed = True
                        print("relay: %s (pid %d) silent for %.1f s, killed"
                              % (ch.name, ch.proc.pid, silent / NS), file=sys.stderr, flush=True)
                    arm(s, silence)  # no deadline once killed: read to EOF
                elif ev.ok and drain(s):
                    arm(s, silence)
                else:  # EOF, or an error event on the pipe
                    del live[s.desc.id]
                    s.desc.release()  # np_unblock + np_close
                    s.pipe.close()
        for s in live.values():  # stopped by a signal
            s.desc.release()
            s.pipe.close()
    signal.set_wakeup_fd(old_fd)
    os.close(sig_r)
    os.close(sig_w)
    codes = []
    for ch in children:
        if stop and ch.proc.poll() is None:
            os.killpg(ch.proc.pid, signal.SIGTERM)
        codes.append(ch.proc.wait())
    return 0 if not stop and all(c == 0 for c in codes) else 1


def main(argv):
    silence = 0
    if argv[:1] == ["--silence"] and len(argv) > 1:
        silence = int(float(argv[1]) * NS)
        argv = argv[2:]
    commands, cur = [], None
    for a in argv:
        if a == "--":
            cur = []
            commands.append(cur)
        elif cur is None:
            break
        else:
            cur.append(a)
    if not commands or not all(commands):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return relay(commands, silence)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
