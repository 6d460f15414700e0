# netpolld: Go's runtime network poller as a service.
#
#   make            build daemon, library, pollctl into build/
#   make run        install missing packages (as root), build, run the daemon on ./run/netpolld.sock
#   make check      install missing packages (as root), build, run every test
#   make deps       install the Debian packages the build needs (root), or print the command
#   make clean
#
# CFLAGS may be overridden (make CFLAGS="-O0 -g"); the flags the code needs are kept apart.

VERSION   := 0.1.0
SOVERSION := 0
PREFIX    ?= /usr/local

CC      ?= cc
CFLAGS  ?= -O2 -g
LDFLAGS ?=

B ?= build
G := $(B)/gen
O := $(B)/obj

PKGS      := libsystemd libprotobuf-c inih
TEST_PKGS := check
DEB_PKGS  := libsystemd-dev libprotobuf-c-dev protobuf-c-compiler check libsubunit-dev libinih-dev pkg-config

# Lazy (=): evaluated when a recipe runs, after `deps` may have installed them.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

NP_CFLAGS = -std=gnu11 -Wall -Wextra -D_GNU_SOURCE -DNETPOLL_VERSION='"$(VERSION)"' \
            -I$(G) -Icommon -Iclient -pthread -MMD -MP $(PKG_CFLAGS)

DAEMON_SRCS := daemon/codec.c daemon/config.c daemon/listener.c daemon/log.c daemon/pollcache.c \
               daemon/poller.c daemon/pollops.c daemon/server.c daemon/session.c daemon/timers.c
COMMON_SRCS := common/arena.c
LIB_SRCS    := client/netpoll.c client/wire.c client/desctab.c
TEST_SRCS   := $(wildcard tests/test-*.c) tests/runner.c tests/helpers.c

PB_C := $(G)/netpoll.pb-c.c
PB_H := $(G)/netpoll.pb-c.h

DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(O)/%.o) $(COMMON_SRCS:%.c=$(O)/%.o) $(O)/gen/netpoll.pb-c.o
LIB_OBJS    := $(LIB_SRCS:%.c=$(O)/pic/%.o) $(COMMON_SRCS:%.c=$(O)/pic/%.o) $(O)/pic/gen/netpoll.pb-c.o
TEST_OBJS   := $(TEST_SRCS:%.c=$(O)/%.o)

LIBNAME := libnetpoll.so
SONAME  := $(LIBNAME).$(SOVERSION)
REALSO  := $(LIBNAME).$(VERSION)

all: $(B)/netpolld $(B)/pollctl $(B)/$(LIBNAME) $(B)/libnetpoll.a $(B)/libnetpoll.pc \
     $(B)/examples/wait-readable

.PHONY: all run check deps clean

deps:
	@if pkg-config --exists $(PKGS) $(TEST_PKGS) 'libprotobuf-c >= 1.4.1' 2>/dev/null && \
	    command -v protoc-c >/dev/null; then exit 0; fi; \
	missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	[ -n "$$missing" ] || { echo "deps: packages installed but pkg-config cannot find them" >&2; exit 1; }; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	    echo "deps: missing packages; run as root:" >&2; \
	    echo "    apt-get install -y $$missing" >&2; exit 1; \
	fi

$(PB_C) $(PB_H): proto/netpoll.proto
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
	$(CC) $(NP_CFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<
$(O)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(TEST_CFLAGS) -Idaemon $(CFLAGS) -c -o $@ $<
$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(CFLAGS) -c -o $@ $<

$(B)/netpolld: $(DAEMON_OBJS) $(O)/daemon/main.o
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS)

$(B)/$(REALSO): $(LIB_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -pthread -Wl,-soname,$(SONAME) -Wl,--no-undefined \
	    -o $@ $^ $(shell pkg-config --libs libprotobuf-c)
$(B)/$(SONAME): $(B)/$(REALSO)
	ln -sf $(REALSO) $@
$(B)/$(LIBNAME): $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(B)/libnetpoll.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/libnetpoll.pc: client/libnetpoll.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

$(B)/pollctl: $(O)/client/pollctl.o $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(shell pkg-config --libs libprotobuf-c)

$(B)/run-tests: $(TEST_OBJS) $(DAEMON_OBJS) $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# The README's example, built against the shared library as a user would.
$(B)/examples/%: client/examples/%.c $(B)/$(LIBNAME)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra -Iclient $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(B) -lnetpoll \
	    -Wl,-rpath,'$$ORIGIN/..'

SOCKET ?= $(CURDIR)/run/netpolld.sock

run: deps
	@$(MAKE) --no-print-directory all
	@echo "netpolld: listening on $(SOCKET)"
	@echo "  point clients and pollctl at it with:  export NETPOLL_SOCKET=$(SOCKET)"
	@echo "  then try:  $(B)/pollctl status      (Ctrl-C stops the daemon)"
	exec $(B)/netpolld --socket $(SOCKET) $(RUN_ARGS)

# Check's fork mode runs every test in its own process; CK_DEFAULT_TIMEOUT
# is per test.  The runner prints Check's summary and exits non-zero on failure.
check: deps
	@$(MAKE) --no-print-directory all $(B)/run-tests
	NETPOLLD_BIN=$(abspath $(B))/netpolld POLLCTL_BIN=$(abspath $(B))/pollctl \
	    CK_DEFAULT_TIMEOUT=60 $(B)/run-tests

clean:
	rm -rf $(B) run

-include $(shell find $(O) -name '*.d' 2>/dev/null)
