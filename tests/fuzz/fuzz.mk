# Fuzzing, sanitizer and valgrind runs; included by the top-level Makefile.
# See tests/fuzz/README.md.
#
#   make fuzz [FUZZ_SECONDS=60]  build the libFuzzer targets (clang, ASan+UBSan) and run
#                                each for FUZZ_SECONDS on tests/fuzz/corpus/<target>/;
#                                crash reproducers are written there
#   make fuzz-merge              add the inputs make fuzz found that reach new coverage
#                                to tests/fuzz/corpus/<target>/ (minimised)
#   make fuzz-corpus             regenerate the seed files (seed-*) of the corpus
#   make check-asan              the Check suites, daemon included, with ASan+UBSan
#   make check-valgrind          the pure suites, then the daemon suite, under memcheck
#   make check-tsan              libnetpoll's threaded tests with ThreadSanitizer
#   make fuzz-deps               install clang, libclang-rt-14-dev and valgrind (root)
#
# Each sanitizer build has its own build directory below $(B); use a private B
# (make B=/tmp/b-me check-asan) when others build in the same tree.

.PHONY: fuzz fuzz-build fuzz-merge fuzz-corpus fuzz-deps check-asan check-valgrind check-tsan

FUZZ_DEB_PKGS := clang libclang-rt-14-dev valgrind

fuzz-deps:
	@missing=$$(for p in $(FUZZ_DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "fuzz-deps: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	    echo "fuzz-deps: missing packages; run as root:" >&2; \
	    echo "    apt-get install -y $$missing" >&2; exit 1; \
	fi

# ---------------------------------------------------------------- libFuzzer

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
FUZZ_TARGETS := codec session
FUZZ_CORPUS  := $(CURDIR)/tests/fuzz/corpus
FZ           := $(B)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS   = $(NP_CFLAGS) -Idaemon -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link
# Per target: the codec takes a datagram of up to 64 KiB, as the daemon
# does (that much can exhaust the arena), the session a record stream.
FUZZ_MAX_LEN_codec   := 65536
FUZZ_MAX_LEN_session := 8192

FUZZ_LIB_OBJS := $(DAEMON_SRCS:%.c=$(FZ)/obj/%.o) $(COMMON_SRCS:%.c=$(FZ)/obj/%.o) \
                 $(FZ)/obj/gen/netpoll.pb-c.o $(FZ)/obj/tests/testlib.o

$(FUZZ_LIB_OBJS) $(FUZZ_TARGETS:%=$(FZ)/obj/tests/fuzz/fuzz-%.o): $(PB_H)

$(FZ)/obj/gen/%.o: $(G)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<
$(FZ)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FZ)/fuzz-%: $(FZ)/obj/tests/fuzz/fuzz-%.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -pthread -o $@ $^ $(PKG_LIBS)

fuzz-build: $(FUZZ_TARGETS:%=$(FZ)/fuzz-%)

# One run: new inputs go to $(FZ)/corpus/<target> (not committed); crashes,
# leaks and timeouts to tests/fuzz/corpus/<target>/, where make check replays
# them.  The outcome is kept in $(FZ)/<target>.status for make fuzz.
fuzz-run-%: $(FZ)/fuzz-%
	@mkdir -p $(FZ)/corpus/$*
	@echo "fuzz: $* for $(FUZZ_SECONDS) s (log: $(FZ)/fuzz-$*.log)"
	@$(FZ)/fuzz-$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -max_len=$(FUZZ_MAX_LEN_$*) -print_final_stats=1 -artifact_prefix=$(FUZZ_CORPUS)/$*/ \
	    $(FUZZ_ARGS) $(FZ)/corpus/$* $(FUZZ_CORPUS)/$* > $(FZ)/fuzz-$*.log 2>&1; \
	    echo $$? > $(FZ)/$*.status
	@grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|ERROR: |^SUMMARY|Test unit written|fuzz check failed|leaked' \
	    $(FZ)/fuzz-$*.log | sed 's|^|fuzz: $*: |' || true

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t || exit 1; done
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    [ "$$(cat $(FZ)/$$t.status)" = 0 ] || { fail=1; echo "fuzz: $$t crashed (exit $$(cat $(FZ)/$$t.status))"; }; \
	done; \
	[ $$fail = 0 ] && echo "fuzz: no crash" || \
	    echo "fuzz: reproducers are in $(FUZZ_CORPUS)/<target>/ (make check replays them)"; \
	exit $$fail

fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FZ)/corpus/$$t; \
	    $(FZ)/fuzz-$$t -merge=1 -max_len=65536 $(FUZZ_CORPUS)/$$t \
	        $(FZ)/corpus/$$t 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' | sed "s|^|$$t: |"; \
	done

$(B)/gen-corpus: $(O)/tests/fuzz/gen-corpus.o $(O)/gen/netpoll.pb-c.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libprotobuf-c)
$(O)/tests/fuzz/gen-corpus.o: $(PB_H)

fuzz-corpus: $(B)/gen-corpus
	$(B)/gen-corpus $(FUZZ_CORPUS)

# ---------------------------------------------------------------- sanitizers

# A Check runner whose forked test leaks: passes only when the sanitizer or
# valgrind reports the leak at the child's exit (fork mode, as make check).
$(B)/sanitizer-proof: $(O)/tests/fuzz/sanitizer-proof.o
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(TEST_LIBS)

ASAN_B      := $(B)/asan
ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_ENV    := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# $(call CHECK_ENV,build dir[,daemon]): what make check sets for run-tests.
CHECK_ENV    = NETPOLLD_BIN=$(or $(2),$(abspath $(1))/netpolld) \
               POLLCTL_BIN=$(abspath $(1))/pollctl NETPOLL_SRC_DIR=$(CURDIR)

# make check's suites (run-tests), daemon and pollctl built the same way.
# check-units and check-install are left out: they test packaging, and the
# installed example is built without the sanitizer runtime.
check-asan: deps
	@$(MAKE) --no-print-directory B=$(ASAN_B) CFLAGS="$(ASAN_CFLAGS)" \
	    LDFLAGS="-fsanitize=address,undefined" all $(ASAN_B)/run-tests $(ASAN_B)/sanitizer-proof
	$(ASAN_ENV) $(ASAN_B)/sanitizer-proof
	$(ASAN_ENV) $(call CHECK_ENV,$(ASAN_B)) CK_DEFAULT_TIMEOUT=120 $(ASAN_B)/run-tests

# The runner forces fork mode, so CK_FORK=no has no effect: valgrind follows
# each forked test, and --error-exitcode makes a child with an error or a
# leak exit 1, which Check reports as that test's failure.  Every suite runs
# even when one fails.  The daemon suites run the daemon under valgrind
# through NETPOLLD_BIN (tests/fuzz/valgrind-netpolld); its logs must stay
# empty.  --track-origins is left out for speed: add it through
# VALGRIND_FLAGS to chase an uninitialised value.
VALGRIND        ?= valgrind
VALGRIND_FLAGS  ?= -q --leak-check=full --errors-for-leak-kinds=definite,possible \
                   --error-exitcode=1
VALGRIND_SUITES ?= timers pollcache pollops codec config fuzzcorpus
VALGRIND_DAEMON_SUITES ?= daemon
VG := $(abspath $(B))/valgrind

check-valgrind: deps fuzz-deps
	@$(MAKE) --no-print-directory all $(B)/run-tests $(B)/sanitizer-proof
	$(VALGRIND) $(VALGRIND_FLAGS) $(B)/sanitizer-proof
	@rm -rf $(VG) && mkdir -p $(VG)
	@failed=; for s in $(VALGRIND_SUITES); do \
	    echo "check-valgrind: suite $$s"; start=$$(date +%s); \
	    CK_RUN_SUITE=$$s CK_FORK=no CK_TIMEOUT_MULTIPLIER=10 $(call CHECK_ENV,$(B)) \
	        $(VALGRIND) $(VALGRIND_FLAGS) $(B)/run-tests || failed="$$failed $$s"; \
	    echo "check-valgrind: suite $$s took $$(( $$(date +%s) - start )) s"; \
	done; \
	for s in $(VALGRIND_DAEMON_SUITES); do \
	    echo "check-valgrind: suite $$s, the daemon under valgrind (logs: $(VG))"; \
	    start=$$(date +%s); \
	    CK_RUN_SUITE=$$s CK_TIMEOUT_MULTIPLIER=4 \
	        $(call CHECK_ENV,$(B),$(CURDIR)/tests/fuzz/valgrind-netpolld) \
	        NETPOLLD_VALGRIND_BIN=$(abspath $(B))/netpolld NETPOLLD_VALGRIND_LOGS=$(VG) \
	        $(B)/run-tests || failed="$$failed $$s"; \
	    echo "check-valgrind: suite $$s took $$(( $$(date +%s) - start )) s"; \
	done; \
	bad=$$(find $(VG) -type f -size +0 | sort); \
	for f in $$bad; do echo "== $$f"; cat $$f; done; \
	[ -z "$$bad" ] || failed="$$failed daemon-memcheck"; \
	echo "check-valgrind: $$(ls $(VG) | wc -l) daemon runs under valgrind"; \
	if [ -n "$$failed" ]; then echo "check-valgrind: FAILED:$$failed" >&2; exit 1; fi; \
	echo "check-valgrind: ok"

TSAN_B   := $(B)/tsan
TSAN_ENV := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"

$(B)/tsan-threads: $(O)/tests/fuzz/tsan-threads.o $(O)/tests/helpers.o $(O)/tests/testlib.o \
                   $(B)/libnetpoll.a
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ $(shell pkg-config --libs libprotobuf-c) \
	    $(TEST_LIBS)
$(O)/tests/fuzz/tsan-threads.o: $(PB_H)

# The library's threaded tests: the api suite and tests/fuzz/tsan-threads.c,
# against a daemon of the same build.
check-tsan: deps
	@$(MAKE) --no-print-directory B=$(TSAN_B) CFLAGS="-O1 -g -fsanitize=thread" \
	    LDFLAGS="-fsanitize=thread" all $(TSAN_B)/run-tests $(TSAN_B)/tsan-threads
	$(TSAN_ENV) $(call CHECK_ENV,$(TSAN_B)) CK_RUN_SUITE=api CK_DEFAULT_TIMEOUT=120 \
	    $(TSAN_B)/run-tests
	$(TSAN_ENV) $(call CHECK_ENV,$(TSAN_B)) CK_DEFAULT_TIMEOUT=120 $(TSAN_B)/tsan-threads

-include $(shell find $(FZ) -name '*.d' 2>/dev/null)
