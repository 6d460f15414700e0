# Benchmarks of netpolld against baselines measured in the same run.
# Included by the top-level Makefile, whose B, CC, CFLAGS, NP_CFLAGS and
# PKG_LIBS it uses; tests/bench/README.md describes every scenario.
#
#   make bench            the full suite (at most 5 minutes); prints the table,
#                         writes $(B)/bench/results.json and raw samples (*.dat)
#   make bench QUICK=1    smaller counts, at most 60 s (CI); exits 0 whatever
#                         the figures, non-zero if a bench program fails
#   make bench-plot       $(B)/bench/latency.png from the last run's samples
#                         (runs the suite first if there are none)
#
# The Go baseline needs `go`: the full run installs golang-go with apt-get
# when root and it is missing; a QUICK run only uses a go already there
# (installing would eat CI's minute).  Without go the Go column is empty and
# a note says why.

BENCH_SRC := tests/bench
BENCH_OUT := $(B)/bench
BENCH_OBJ := $(BENCH_OUT)/obj
BENCH_QUICK := $(if $(filter-out 0 no,$(QUICK)),1,0)

BENCH_PROGS := wake throughput deadline precision storm scale memory startup fdstore
BENCH_BINS := $(BENCH_PROGS:%=$(BENCH_OUT)/bench-%)
BENCH_LIB_OBJS := $(BENCH_OBJ)/bench.o $(BENCH_OBJ)/baseline.o $(BENCH_OBJ)/load.o \
                  $(O)/tests/testlib.o
BENCH_DEPS := $(BENCH_BINS) $(BENCH_OUT)/bench-report $(B)/netpolld
BENCH_GO_ENV := GOCACHE=$(abspath $(BENCH_OUT))/gocache GOPATH=$(abspath $(BENCH_OUT))/gopath \
                GOPROXY=off GOFLAGS= GOTOOLCHAIN=local

.PHONY: bench bench-plot
# Objects reached only through pattern rules would count as intermediate
# and be deleted after each build, forcing a rebuild every time.
.SECONDARY: $(BENCH_LIB_OBJS) $(BENCH_PROGS:%=$(BENCH_OBJ)/bench-%.o) \
            $(BENCH_OBJ)/bench-report.o $(BENCH_OBJ)/report.o

$(BENCH_OBJ)/%.o: $(BENCH_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) $(NP_CFLAGS) $(CFLAGS) -Itests -c -o $@ $<

$(BENCH_OUT)/bench-%: $(BENCH_OBJ)/bench-%.o $(BENCH_LIB_OBJS) $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS) -lm

# The fd-store scenario plays systemd with the tests' fake service manager.
$(BENCH_OUT)/bench-fdstore: $(BENCH_OBJ)/bench-fdstore.o $(BENCH_LIB_OBJS) $(O)/tests/fakesm.o \
                            $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(PKG_LIBS) -lm

# The report reads text files only: no library, no daemon.
$(BENCH_OUT)/bench-report: $(BENCH_OBJ)/bench-report.o $(BENCH_OBJ)/report.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

# Builds the Go program into $(BENCH_OUT)/bench-go, or leaves the reason it
# could not in $(BENCH_OUT)/go-note.  A go that is there but fails to build
# our program is an error, like any other bench that does not build: run.sh
# sees go-failed, still runs the C benches, and exits non-zero.
define bench_go
	@mkdir -p $(BENCH_OUT)
	@rm -f $(BENCH_OUT)/bench-go $(BENCH_OUT)/go-note $(BENCH_OUT)/go-failed
	@if ! command -v go >/dev/null 2>&1 && [ $(BENCH_QUICK) = 0 ] && [ "$$(id -u)" = 0 ]; then \
	    echo "bench: installing golang-go for the Go baseline" >&2; \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go || \
	      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; }; \
	    } >/dev/null 2>&1 || true; \
	fi; \
	if command -v go >/dev/null 2>&1; then \
	    ( cd $(BENCH_SRC)/go && $(BENCH_GO_ENV) go build -o $(abspath $(BENCH_OUT))/bench-go . ) || \
	        { echo "Go baseline FAILED to build" >$(BENCH_OUT)/go-note; touch $(BENCH_OUT)/go-failed; }; \
	elif [ $(BENCH_QUICK) = 1 ]; then \
	    echo "Go baseline skipped: go is not installed (QUICK runs do not install it)" \
	        >$(BENCH_OUT)/go-note; \
	else \
	    echo "Go baseline skipped: go is not installed and apt-get could not install it" \
	        >$(BENCH_OUT)/go-note; \
	fi
endef

define bench_run
	$(bench_go)
	@sh $(BENCH_SRC)/run.sh $(BENCH_OUT) $(B)/netpolld $(BENCH_QUICK)
endef

bench: $(BENCH_DEPS)
	$(bench_run)

# bench-plot needs samples; only when there are none does it run the suite.
$(BENCH_OUT)/wake-netpolld.dat: | $(BENCH_DEPS)
	$(bench_run)

bench-plot: $(BENCH_OUT)/wake-netpolld.dat
	@if ! command -v gnuplot >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "bench-plot: installing gnuplot-nox" >&2; \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox || \
	      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox; }; \
	    } >/dev/null 2>&1 || true; \
	fi
	@command -v gnuplot >/dev/null 2>&1 || \
	    { echo "bench-plot: gnuplot missing; as root: apt-get install -y gnuplot-nox" >&2; exit 1; }
	gnuplot -e "dir='$(BENCH_OUT)'" $(BENCH_SRC)/plot.gp
	@echo "bench-plot: $(BENCH_OUT)/latency.png"

-include $(wildcard $(BENCH_OBJ)/*.d)
