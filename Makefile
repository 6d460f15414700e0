# netpolld: Go's runtime network poller as a service.
#
#   make            build daemon, library, pollctl into build/
#   make run        install missing packages (as root), build, run the daemon on ./run/netpolld.sock
#   make check      install missing packages (as root), build, run every test
#   make deps       install the Debian packages the build needs (root), or print the command
#   make clean
#
# CFLAGS may be overridden (make CFLAGS="-O0 -g"); the flags the code needs are kept apart.
# make WERROR=1 (as CI builds) adds a stricter warning set and makes every warning an error.

# A recipe that fails leaves no half-written target behind for the next make to trust.
.DELETE_ON_ERROR:

VERSION   := 0.1.0
SOVERSION := 0

# Installation (make install PREFIX=... DESTDIR=...).
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/netpolld
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

CC      ?= cc
CFLAGS  ?= -O2 -g
LDFLAGS ?=

B ?= build
G := $(B)/gen
O := $(B)/obj

PKGS      := libsystemd libprotobuf-c inih
TEST_PKGS := check
# systemd: make check runs systemd-analyze and systemd-socket-activate (nothing is started);
# man-db: systemd-analyze verify runs man(1) for each Documentation= page (container images
# leave it out); python3: tools/include-graph and the Python binding's tests; libuv1-dev: the
# libuv example; procps: the /bin/kill of the unit's ExecReload=, which systemd-analyze verify
# checks (minimal images leave it out).
DEB_PKGS  := gcc libc6-dev libsystemd-dev libprotobuf-c-dev protobuf-c-compiler check libsubunit-dev \
             libinih-dev pkg-config systemd man-db python3 libuv1-dev procps

# Lazy (=): evaluated when a recipe runs, after `deps` may have installed them.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

NP_CFLAGS = -std=gnu11 -Wall -Wextra -D_GNU_SOURCE -DNETPOLL_VERSION='"$(VERSION)"' \
            -I$(G) -Icommon -Iclient -pthread -MMD -MP $(PKG_CFLAGS)

# Our sources only: protoc-c's output is not ours to keep warning-free.
NP_WARN_STRICT := -Wshadow -Wconversion -Wmissing-prototypes -Wstrict-prototypes -Wswitch-enum
NP_WFLAGS      := $(if $(filter 1 yes,$(WERROR)),-Werror $(NP_WARN_STRICT))

DAEMON_SRCS := daemon/access.c daemon/account.c daemon/admin.c daemon/admin-descs.c daemon/closer.c daemon/codec.c daemon/config.c daemon/cpuslice.c daemon/env.c daemon/fdcarrier.c daemon/fdnotify.c daemon/fdstore.c daemon/filecount.c daemon/listener.c \
               daemon/log.c daemon/manifest.c daemon/notify.c daemon/pollcache.c daemon/poller.c daemon/pollops.c \
               daemon/restore.c daemon/server.c daemon/session.c daemon/session-out.c daemon/session-request.c \
               daemon/timers.c
COMMON_SRCS := common/arena.c
LIB_SRCS    := client/netpoll.c client/request.c client/reader.c client/wire.c client/desctab.c \
               client/loop.c client/loop-sdevent.c
TEST_SRCS   := $(wildcard tests/test-*.c) tests/runner.c tests/helpers.c tests/testlib.c tests/fakesm.c

PB_C := $(G)/netpoll.pb-c.c
PB_H := $(G)/netpoll.pb-c.h

DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(O)/%.o) $(COMMON_SRCS:%.c=$(O)/%.o) $(O)/gen/netpoll.pb-c.o
LIB_OBJS    := $(LIB_SRCS:%.c=$(O)/pic/%.o) $(COMMON_SRCS:%.c=$(O)/pic/%.o) $(O)/pic/gen/netpoll.pb-c.o
TEST_OBJS   := $(TEST_SRCS:%.c=$(O)/%.o)

LIBNAME := libnetpoll.so
SONAME  := $(LIBNAME).$(SOVERSION)
REALSO  := $(LIBNAME).$(VERSION)

all: $(B)/netpolld $(B)/pollctl $(B)/$(LIBNAME) $(B)/libnetpoll.a $(B)/libnetpoll.pc \
     $(B)/examples/wait-readable $(B)/examples/supervise $(B)/examples/sd-event-relay \
     $(B)/examples/uv-relay \
     $(B)/systemd/netpolld.service $(B)/systemd/netpolld.socket

.PHONY: all run check deps clean install uninstall check-units check-install check-examples

deps:
	@if pkg-config --exists $(PKGS) $(TEST_PKGS) libuv 'libprotobuf-c >= 1.4.1' 2>/dev/null && \
	    ( for t in cc protoc-c systemd-analyze systemd-socket-activate man python3 /bin/kill; do \
	        command -v $$t >/dev/null || exit 1; done ); then exit 0; fi; \
	missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	[ -n "$$missing" ] || { echo "deps: the packages are installed, but pkg-config or PATH does not find them (libraries, protoc-c, systemd-analyze, systemd-socket-activate, man)" >&2; exit 1; }; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	    echo "deps: missing packages; run as root:" >&2; \
	    echo "    apt-get install -y $$missing" >&2; exit 1; \
	fi

# One run of protoc-c makes both files: a grouped target (GNU make 4.3), or
# make -j would run it once per file, the two runs writing the same files.
$(PB_C) $(PB_H) &: proto/netpoll.proto
	@mkdir -p $(G)
	protoc-c --c_out=$(G) -Iproto $<

# Everything includes the generated header through codec.h or wire.h.
$(DAEMON_OBJS) $(LIB_OBJS) $(TEST_OBJS) $(O)/client/pollctl.o: $(PB_H)

$(O)/gen/%.o: $(G)/%.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(CFLAGS) -c -o $@ $<
$(O)/pic/gen/%.o: $(G)/%.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<
$(O)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(NP_WFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<
$(O)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(NP_WFLAGS) $(TEST_CFLAGS) -Idaemon $(CFLAGS) -c -o $@ $<
$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(NP_WFLAGS) $(CFLAGS) -c -o $@ $<

$(B)/netpolld: $(DAEMON_OBJS) $(O)/daemon/main.o
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS)

$(B)/$(REALSO): $(LIB_OBJS) client/libnetpoll.map
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -pthread -Wl,-soname,$(SONAME) -Wl,--no-undefined \
	    -Wl,--version-script,client/libnetpoll.map \
	    -o $@ $(LIB_OBJS) $(shell pkg-config --libs libprotobuf-c libsystemd)
$(B)/$(SONAME): $(B)/$(REALSO)
	ln -sf $(REALSO) $@
$(B)/$(LIBNAME): $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(B)/libnetpoll.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# The installation paths baked into generated files, rewritten only when one
# changes: `make install PREFIX=/usr` after a plain `make` regenerates the
# unit and the .pc file instead of installing ones made for /usr/local.
PATHS_STAMP := $(B)/paths.stamp
PATHS_NOW    = PREFIX=$(PREFIX) SBINDIR=$(SBINDIR) SYSCONFDIR=$(SYSCONFDIR) LIBDIR=$(LIBDIR) \
               INCLUDEDIR=$(INCLUDEDIR)
$(PATHS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(PATHS_NOW)' | cmp -s - $@ || echo '$(PATHS_NOW)' > $@
.PHONY: FORCE
FORCE:

$(B)/libnetpoll.pc: client/libnetpoll.pc.in Makefile $(PATHS_STAMP)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' $< > $@

# FileDescriptorStorePreserve= came with systemd 254 (252 does what it says
# by default, and warns of a key it does not know): named where this
# machine's systemd has it.
SYSTEMD_VERSION := $(shell systemctl --version 2>/dev/null | awk 'NR == 1 { print $$2 + 0 }')
UNIT_PRESERVE := $(strip $(if $(shell [ "$(SYSTEMD_VERSION)" -ge 254 ] 2>/dev/null && echo y),\
    FileDescriptorStorePreserve=restart,\
    \# FileDescriptorStorePreserve=restart (systemd 254 and later; older ones do that already)))
UNIT_SED = -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@FDSTORE_PRESERVE@|$(UNIT_PRESERVE)|'

$(B)/systemd/netpolld.service: systemd/netpolld.service.in Makefile $(PATHS_STAMP)
	@mkdir -p $(@D)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' $(UNIT_SED) $< > $@
$(B)/systemd/netpolld.socket: systemd/netpolld.socket
	@mkdir -p $(@D)
	cp $< $@

$(B)/pollctl: $(O)/client/pollctl.o $(O)/client/pollctl-state.o $(O)/client/pollctl-live.o \
              $(O)/client/pollctl-format.o $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(shell pkg-config --libs libprotobuf-c)

$(B)/run-tests: $(TEST_OBJS) $(DAEMON_OBJS) $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# The README's example, built against the shared library as a user would.
# sd-event-relay uses sd-event itself (np_attach_event joins its loop).
$(B)/examples/sd-event-relay: EXAMPLE_LIBS = $(shell pkg-config --libs libsystemd)
# uv-relay runs on a libuv loop (a uv_poll_t on np_get_fd).
$(B)/examples/uv-relay: EXAMPLE_LIBS = $(shell pkg-config --libs libuv)
$(B)/examples/%: client/examples/%.c $(B)/$(LIBNAME)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra $(NP_WFLAGS) -Iclient $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(B) -lnetpoll \
	    $(EXAMPLE_LIBS) -Wl,-rpath,'$$ORIGIN/..'

SOCKET ?= $(CURDIR)/run/netpolld.sock

run: deps
	@$(MAKE) --no-print-directory all
	@echo "netpolld: listening on $(SOCKET)"
	@echo "  point clients and pollctl at it with:  export NETPOLL_SOCKET=$(SOCKET)"
	@echo "  then try:  $(B)/pollctl status      (Ctrl-C stops the daemon)"
	$(B)/netpolld --socket $(SOCKET) $(RUN_ARGS)

# Check's fork mode runs every test in its own process; CK_DEFAULT_TIMEOUT
# is per test.  The runner prints Check's summary and exits non-zero on failure.
check: deps
	@$(MAKE) --no-print-directory all $(B)/run-tests check-includes check-abi check-units check-install \
	    check-examples
	NETPOLLD_BIN=$(abspath $(B))/netpolld POLLCTL_BIN=$(abspath $(B))/pollctl \
	    CK_DEFAULT_TIMEOUT=60 $(B)/run-tests

# The daemon's modules depend on each other one way: the include graph
# has no cycle (tools/include-graph prints it).
check-includes:
	@tools/include-graph daemon > $(B)/include-graph.txt || { cat $(B)/include-graph.txt; exit 1; }
	@tail -n 1 $(B)/include-graph.txt

# The event-loop examples (sd-event, libuv) against a daemon of this build,
# each in one thread: one command speaks and ends, the other falls silent
# and is killed after 500 ms (so the exit status is 1).
check-examples: all
	@d=$$(mktemp -d); $(B)/netpolld --socket $$d/np.sock --log-level warning & pid=$$!; \
	    for i in $$(seq 100); do [ -S $$d/np.sock ] && break; sleep 0.05; done; \
	    all=1; for x in sd-event-relay uv-relay; do \
	    NETPOLL_SOCKET=$$d/np.sock timeout 20 $(B)/examples/$$x --silence 500ms \
	        -- sh -c 'echo one; sleep 0.2; echo two' -- sh -c 'echo hi; exec sleep 30' \
	        >$$d/out 2>$$d/err; rc=$$?; \
	    ok=1; [ $$rc = 1 ] || ok=0; \
	    for l in one two hi; do grep -qx "\[sh\] $$l" $$d/out || ok=0; done; \
	    grep -q "^$$x: sh (pid [0-9]*) silent for [0-9.]* s, killed\$$" $$d/err || ok=0; \
	    if [ $$ok = 0 ]; then echo "check-examples: $$x exited $$rc"; cat $$d/out $$d/err; all=0; \
	    else echo "check-examples: $$x ok"; fi; done; \
	    kill $$pid; wait $$pid; rm -rf $$d; [ $$all = 1 ]

# The ABI: the dynamic symbols the library exports, with their version, must
# be exactly client/libnetpoll.symbols (sorted).  A new function is added to
# both on purpose, in a new version node of client/libnetpoll.map.
check-abi: $(B)/$(REALSO)
	nm -D --defined-only $(B)/$(REALSO) | awk '$$2 == "T" || $$2 == "D" || $$2 == "B" {print $$3}' \
	    | grep -v '^LIBNETPOLL_' | sort > $(B)/abi.symbols
	diff -u client/libnetpoll.symbols $(B)/abi.symbols
	@echo "check-abi: $$(wc -l < $(B)/abi.symbols) symbols, as listed"

# The units, checked offline by systemd-analyze against the build tree: the
# service runs the built daemon, its man pages are found through MANPATH,
# and its exposure score must stay at 2.0 or lower ("OK").
V := $(B)/verify
check-units: all
	@mkdir -p $(V)/man/man5 $(V)/man/man8
	cp man/netpolld.8 $(V)/man/man8/ && cp man/netpolld.conf.5 $(V)/man/man5/
	sed -e 's|@SBINDIR@|$(abspath $(B))|g' $(UNIT_SED) \
	    systemd/netpolld.service.in > $(V)/netpolld.service
	cp systemd/netpolld.socket $(V)/netpolld.socket
	cd $(V) && MANPATH=$(abspath $(V))/man systemd-analyze verify ./netpolld.service ./netpolld.socket
	cd $(V) && systemd-analyze security --offline=true --threshold=20 ./netpolld.service \
	    > security.txt; rc=$$?; tail -n 1 security.txt; exit $$rc

# make install into a scratch DESTDIR, build the example against the
# installed tree through pkg-config, run it against the installed daemon,
# then make uninstall and check only the configuration file is left.
D := $(abspath $(B))/destdir
check-install: all
	rm -rf $(D)
	$(MAKE) --no-print-directory install DESTDIR=$(D) >/dev/null
	PKG_CONFIG_PATH=$(D)$(LIBDIR)/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(D) sh -c \
	    '$(CC) -o $(D)/wait-readable client/examples/wait-readable.c $$(pkg-config --cflags --libs libnetpoll)'
	$(D)$(SBINDIR)/netpolld --socket $(D)/np.sock --log-level warning & pid=$$!; \
	    for i in $$(seq 100); do [ -S $(D)/np.sock ] && break; sleep 0.05; done; \
	    out=$$(echo hi | NETPOLL_SOCKET=$(D)/np.sock LD_LIBRARY_PATH=$(D)$(LIBDIR) $(D)/wait-readable); \
	    rc=$$?; kill $$pid; wait $$pid; echo "installed example: $$out"; \
	    [ $$rc = 0 ] && [ "$$out" = "stdin: ready" ]
	$(MAKE) --no-print-directory uninstall DESTDIR=$(D) >/dev/null
	left=$$(cd $(D) && find . -type f ! -name wait-readable | sort); \
	    [ "$$left" = "./etc/netpolld/netpolld.conf" ] || { echo "uninstall left: $$left"; exit 1; }
	@echo "check-install: ok"

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/netpolld \
	    $(DESTDIR)$(DOCDIR)/examples
	install -m 0755 $(B)/netpolld $(DESTDIR)$(SBINDIR)/netpolld
	install -m 0755 $(B)/pollctl $(DESTDIR)$(BINDIR)/pollctl
	install -m 0755 $(B)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(REALSO)
	ln -sf $(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/$(LIBNAME)
	install -m 0644 $(B)/libnetpoll.a $(DESTDIR)$(LIBDIR)/libnetpoll.a
	install -m 0644 $(B)/libnetpoll.pc $(DESTDIR)$(LIBDIR)/pkgconfig/libnetpoll.pc
	install -m 0644 client/netpoll.h $(DESTDIR)$(INCLUDEDIR)/netpoll.h
	install -m 0644 man/pollctl.1 $(DESTDIR)$(MANDIR)/man1/pollctl.1
	install -m 0644 man/netpoll.3 $(DESTDIR)$(MANDIR)/man3/netpoll.3
	install -m 0644 man/netpolld.conf.5 $(DESTDIR)$(MANDIR)/man5/netpolld.conf.5
	install -m 0644 man/netpolld.8 $(DESTDIR)$(MANDIR)/man8/netpolld.8
	install -m 0644 $(B)/systemd/netpolld.service $(B)/systemd/netpolld.socket $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/netpolld.sysusers $(DESTDIR)$(SYSUSERSDIR)/netpolld.conf
	install -m 0644 systemd/netpolld.tmpfiles $(DESTDIR)$(TMPFILESDIR)/netpolld.conf
	install -m 0644 client/examples/*.c $(DESTDIR)$(DOCDIR)/examples/
	@# Never overwrite an operator's configuration.
	[ -e $(DESTDIR)$(SYSCONFDIR)/netpolld/netpolld.conf ] || \
	    install -m 0644 conf/netpolld.conf $(DESTDIR)$(SYSCONFDIR)/netpolld/netpolld.conf

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/netpolld $(DESTDIR)$(BINDIR)/pollctl \
	    $(DESTDIR)$(LIBDIR)/$(REALSO) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(LIBNAME) \
	    $(DESTDIR)$(LIBDIR)/libnetpoll.a $(DESTDIR)$(LIBDIR)/pkgconfig/libnetpoll.pc \
	    $(DESTDIR)$(INCLUDEDIR)/netpoll.h $(DESTDIR)$(MANDIR)/man1/pollctl.1 \
	    $(DESTDIR)$(MANDIR)/man3/netpoll.3 $(DESTDIR)$(MANDIR)/man5/netpolld.conf.5 \
	    $(DESTDIR)$(MANDIR)/man8/netpolld.8 $(DESTDIR)$(UNITDIR)/netpolld.service \
	    $(DESTDIR)$(UNITDIR)/netpolld.socket $(DESTDIR)$(SYSUSERSDIR)/netpolld.conf \
	    $(DESTDIR)$(TMPFILESDIR)/netpolld.conf
	rm -rf $(DESTDIR)$(DOCDIR)
	@echo "uninstall: kept $(DESTDIR)$(SYSCONFDIR)/netpolld/netpolld.conf"

clean:
	rm -rf $(B) run

# Benchmarks, fuzzing, sanitizer and fault-test targets live beside their sources.
-include tests/bench/bench.mk
-include tests/fuzz/fuzz.mk
-include tests/faults/faults.mk
# The Debian package (make deb) and the checks under a real systemd (make check-systemd).
-include tests/systemd/systemd.mk
# The Python binding's tests (make check runs them).
-include python/python.mk

-include $(shell find $(O) -name '*.d' 2>/dev/null)
