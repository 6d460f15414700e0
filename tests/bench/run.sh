#!/bin/sh
# Runs every bench program of one `make bench`, then bench-report, which
# prints the table and writes results.json.
#
#   run.sh OUTDIR NETPOLLD QUICK(0|1)
#
# Each program runs under a time limit (a hung daemon must not hang CI).
# The table is printed even when a program failed, from what the others
# measured; the exit status is then 1.  Figures never decide the status:
# a target not met is a finding, not a failure.
set -u

out=$1
daemon=$2
quick=$3

programs="wake throughput deadline precision storm scale memory startup fdstore"
if [ "$quick" = 1 ]; then
        qflag=-q
        limit=45
else
        qflag=
        limit=150
fi

# Results of an earlier run must not pass for this one's.
rm -f "$out"/*.facts "$out"/*.dat "$out"/netpolld-*.log "$out"/results.json

failed=
start=$(date +%s)
run() {
        name=$1
        shift
        t0=$(date +%s)
        if timeout --kill-after=5 "$limit" "$@"; then
                printf 'bench: %-18s %s s\n' "$name" $(($(date +%s) - t0)) >&2
        else
                rc=$?
                printf 'bench: %-18s FAILED (exit %s%s)\n' "$name" $rc \
                        "$([ $rc = 124 ] && echo ", over $limit s")" >&2
                failed="$failed $name"
        fi
}

for p in $programs; do
        run "bench-$p" "$out/bench-$p" -d "$daemon" -o "$out" $qflag
done

# The Go baseline, when the make recipe could build it; otherwise its
# reason is in go-note, and the Go column stays empty.
if [ -x "$out/bench-go" ]; then
        GOMAXPROCS=$(nproc) run bench-go "$out/bench-go" -o "$out" $qflag
elif [ -f "$out/go-note" ]; then
        printf 'note\t%s\n' "$(cat "$out/go-note")" >"$out/run.facts"
fi
[ -f "$out/go-failed" ] && failed="$failed bench-go(build)"
for f in $failed; do
        printf 'note\t%s failed: its rows are missing or partial\n' "$f" >>"$out/run.facts"
done

"$out/bench-report" ${qflag:+-q} -j "$out/results.json" "$out"/*.facts || failed="$failed bench-report"
echo "bench: $(($(date +%s) - start)) s in all" >&2
if [ -n "$failed" ]; then
        echo "bench: FAILED:$failed" >&2
        exit 1
fi
exit 0
