# Fault and load tests (tests/faults/): standalone programs, each starting its
# own netpolld on a temporary socket, printing its figures and exiting
# non-zero when a check fails.
#
#   make check-faults            full mode (about 10 minutes at most)
#   make check-faults QUICK=1    short mode, what CI runs (about 3 minutes at most)
#
# One program: make $(B)/faults/fault-NAME, then run it with --quick or not
# (NETPOLLD_BIN names the daemon; default ./build/netpolld).

FAULT_NAMES   := killed slowreader backlog flood flood-emfile malformed misuse timerstorm \
                 linger drain fdquota outmem listdescs junk dupfile watchers mix
# Load programs (no fault- prefix), run by check-faults after the others.
LOAD_NAMES    := restart-storm
FAULT_PROGS   := $(FAULT_NAMES:%=fault-%) $(LOAD_NAMES)
FAULT_BINS    := $(FAULT_PROGS:%=$(B)/faults/%)
FAULT_QUICK   := $(filter-out 0 no,$(QUICK))
FAULT_TIMEOUT := $(if $(FAULT_QUICK),120,300)

.PHONY: check-faults faults
.PRECIOUS: $(O)/tests/faults/%.o

faults: $(FAULT_BINS)

# A shorter stem than the Makefile's $(O)/tests/%.o rule, so this one wins:
# no Check flags, the harness header beside the sources.
$(O)/tests/faults/%.o: tests/faults/%.c $(PB_H)
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(CFLAGS) -Itests/faults -Itests -c -o $@ $<

# The generated protobuf-c code comes in as the daemon's non-PIC object, so
# raw traffic does not rely on what libnetpoll.a happens to contain.
FAULT_OBJS := $(O)/tests/faults/harness.o $(O)/tests/faults/raw.o $(O)/tests/testlib.o \
              $(O)/gen/netpoll.pb-c.o

# fault-slowreader's child processes live in a file of their own.
$(B)/faults/fault-slowreader: $(O)/tests/faults/slowreader-load.o

$(B)/faults/fault-%: $(O)/tests/faults/fault-%.o $(FAULT_OBJS) $(B)/libnetpoll.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(shell pkg-config --libs libprotobuf-c)

# restart-storm runs the daemon under the fake service manager (tests/fakesm.c).
$(B)/faults/restart-storm: $(O)/tests/faults/restart-storm.o $(O)/tests/fakesm.o $(FAULT_OBJS) \
                           $(B)/libnetpoll.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(shell pkg-config --libs libprotobuf-c)

# Runs every program (each under a timeout, so a hang is a failure), then
# prints the summary line "N passed, M failed" last.
check-faults: $(FAULT_BINS) $(B)/netpolld
	@pass=0; fail=0; failed=; start=$$(date +%s); \
	for t in $(FAULT_PROGS); do \
	    echo "=== $$t"; t0=$$(date +%s); \
	    NETPOLLD_BIN=$(abspath $(B))/netpolld timeout -k 10 $(FAULT_TIMEOUT) \
	        $(B)/faults/$$t $(if $(FAULT_QUICK),--quick); rc=$$?; \
	    [ $$rc = 124 ] && echo "$$t: timed out after $(FAULT_TIMEOUT) s"; \
	    if [ $$rc = 0 ]; then pass=$$((pass + 1)); verdict=passed; \
	    else fail=$$((fail + 1)); failed="$$failed $${t#fault-}"; verdict="failed (exit $$rc)"; fi; \
	    echo "=== $$t: $$verdict in $$(($$(date +%s) - t0)) s"; \
	done; \
	echo "faults: $(if $(FAULT_QUICK),quick,full) mode, $$(($$(date +%s) - start)) s" \
	    "$${failed:+(failed:$$failed)}"; \
	echo "$$pass passed, $$fail failed"; \
	[ $$fail = 0 ]

# The isolation programs share the victim pinger and the fake service manager.
FAULT_PROBE_NAMES := linger drain fdquota listdescs junk dupfile outmem mix timerstorm slowreader watchers
$(FAULT_PROBE_NAMES:%=$(B)/faults/fault-%): $(O)/tests/faults/probe.o
