"""libnetpoll through ctypes: finding the library, its structs and prototypes.

The structures mirror client/netpoll.h field for field; ctypes lays them out
with the C ABI's natural alignment, as the compiler does (the test suite
checks every offset and size against a compiled program).  Per netpoll(3),
ABI, a struct never grows in place, so these layouts belong to the symbol
version LIBNETPOLL_0.1 the functions are looked up under.

ctypes releases the GIL around every foreign call, so a thread blocked in
np_wait or np_poll does not hold up the interpreter.
"""

import ctypes
import ctypes.util
import os
import threading

SONAME = "libnetpoll.so.0"
ENV_LIBRARY = "NETPOLL_LIBRARY"

NP_READ = ord("r")
NP_WRITE = ord("w")
NP_RW = ord("r") + ord("w")

NP_OK = 0
NP_ERR_CLOSING = 1
NP_ERR_TIMEOUT = 2
NP_ERR_NOT_POLLABLE = 3

np_desc = ctypes.c_uint64
np_client_p = ctypes.c_void_p


class np_event(ctypes.Structure):
    _fields_ = [
        ("desc", np_desc),
        ("user", ctypes.c_uint64),
        ("mode", ctypes.c_int),
        ("result", ctypes.c_int),
    ]


class np_session_stats(ctypes.Structure):
    _fields_ = [
        ("descriptors", ctypes.c_uint64),
        ("waiters", ctypes.c_uint64),
        ("timers", ctypes.c_uint64),
    ]


class np_status(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_char * 32),
        ("pid", ctypes.c_uint32),
        ("uptime_ns", ctypes.c_uint64),
        ("connections", ctypes.c_uint64),
        ("descriptors", ctypes.c_uint64),
        ("waiters", ctypes.c_uint64),
        ("timers", ctypes.c_uint64),
        ("events", ctypes.c_uint64),
        ("timeouts", ctypes.c_uint64),
        ("protocol_errors", ctypes.c_uint64),
        ("slots_in_use", ctypes.c_uint64),
        ("slots_allocated", ctypes.c_uint64),
        ("breaks", ctypes.c_uint64),
        ("rss_bytes", ctypes.c_uint64),
        ("open_fds", ctypes.c_uint64),
        ("fd_limit", ctypes.c_uint64),
        ("accepted", ctypes.c_uint64),
        ("max_connections", ctypes.c_uint32),
        ("max_connections_per_uid", ctypes.c_uint32),
        ("max_descriptors", ctypes.c_uint32),
        ("max_output_bytes", ctypes.c_uint32),
        ("handshake_timeout_ns", ctypes.c_uint64),
        ("started_unix_ns", ctypes.c_int64),
        ("instance", ctypes.c_uint64),
        ("resumed_connections", ctypes.c_uint64),
        ("resumed_descriptors", ctypes.c_uint64),
        ("fd_store", ctypes.c_bool),
    ]


_c = ctypes.c_int
_P = ctypes.POINTER

# name: (restype, argtypes).  Functions the loaded library lacks are left
# out: the event-loop calls (np_get_fd ... np_process) are newer than
# LIBNETPOLL_0.1's first release.
_PROTOTYPES = {
    "np_connect": (_c, [ctypes.c_char_p, _P(np_client_p)]),
    "np_disconnect": (None, [np_client_p]),
    "np_open": (_c, [np_client_p, _c, ctypes.c_uint64, _P(np_desc)]),
    "np_unblock": (_c, [np_client_p, np_desc]),
    "np_close": (_c, [np_client_p, np_desc]),
    "np_reset": (_c, [np_client_p, np_desc, _c]),
    "np_wait": (_c, [np_client_p, np_desc, _c]),
    "np_wait_canceled": (_c, [np_client_p, np_desc, _c]),
    "np_set_deadline": (_c, [np_client_p, np_desc, ctypes.c_int64, _c]),
    "np_arm": (_c, [np_client_p, np_desc, _c]),
    "np_poll": (_c, [np_client_p, ctypes.c_int64, _P(np_event), _c]),
    "np_break": (_c, [np_client_p]),
    "np_is_poll_descriptor": (_c, [np_client_p, _c]),
    "np_session_stats": (_c, [np_client_p, _P(np_session_stats)]),
    "np_upgrade": (_c, [np_client_p]),
    "np_connection_id": (ctypes.c_uint64, [np_client_p]),
    "np_ping": (_c, [np_client_p]),
    "np_status": (_c, [np_client_p, _P(np_status)]),
    "np_strerror": (ctypes.c_char_p, [_c]),
    # Event-loop integration (issue 13).
    "np_get_fd": (_c, [np_client_p]),
    "np_get_events": (_c, [np_client_p]),
    "np_get_timeout": (_c, [np_client_p, _P(ctypes.c_uint64)]),
    "np_process": (_c, [np_client_p, _P(np_event), _c]),
}

_lock = threading.Lock()
_lib = None


def _candidates():
    path = os.environ.get(ENV_LIBRARY)
    if path:
        return [path]
    found = ctypes.util.find_library("netpoll")
    return [SONAME] + ([found] if found and found != SONAME else [])


def load():
    """Returns the loaded libnetpoll (loading it at the first call).

    $NETPOLL_LIBRARY names the file when set; otherwise the dynamic loader
    looks for libnetpoll.so.0 (LD_LIBRARY_PATH, ld.so.cache), then
    ctypes.util.find_library("netpoll").  Raises OSError when none loads.
    """
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for name in _candidates():
            try:
                lib = ctypes.CDLL(name, use_errno=False)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise OSError("netpoll: cannot load libnetpoll (set $%s to its path): %s"
                          % (ENV_LIBRARY, "; ".join(errors)))
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
        _lib = lib
        return lib


def has(name):
    """Whether the loaded library exports `name`."""
    return hasattr(load(), name)


def strerror(code):
    """np_strerror: the library's text for an NP_* code or a negative errno."""
    s = load().np_strerror(int(code))
    return s.decode("utf-8", "replace") if s else "unknown error"
