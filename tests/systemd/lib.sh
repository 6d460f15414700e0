# tests/systemd/lib.sh: the box and the check harness behind `make check-systemd`
# (sourced by check.sh; see tests/systemd/README.md).
#
# The box is a real systemd 252 as PID 1 of its own PID and mount namespaces
# (../shared/tools/systemd-box), booted on an overlay whose lower layer is the
# cached Debian 12 root (build/systemd-box/root, made by root.sh) and whose
# upper layer lives for one run: every run starts from the same clean system,
# and nothing a run installs reaches the cache.
#
# A check is a shell function that reads the running system and returns 0 or
# 1; it reports what it read with `say`.  run_check runs one, prints PASS or
# FAIL with those lines, and counts.  Everything a run prints goes to
# $SDB/check-$MODE.log as well.

SDB_SYSTEMCTL_TIMEOUT=${SDB_SYSTEMCTL_TIMEOUT:-30}

# ---------------------------------------------------------------- messages

say()  { printf '      %s\n' "$*"; }
note() { printf '%s\n' "check-systemd: $*"; }
die()  { printf '%s\n' "check-systemd: $*" >&2; exit 1; }

# skip MESSAGE: the machine cannot boot the box.  Exit 0 unless
# SYSTEMD_BOX_REQUIRED=1 (then a skip is a failure).
skip() {
        printf '%s\n' "check-systemd: SKIPPED: $*" >&2
        if [ "${SYSTEMD_BOX_REQUIRED:-0}" = 1 ]; then
                printf '%s\n' "check-systemd: SYSTEMD_BOX_REQUIRED=1: a skip fails" >&2
                exit 1
        fi
        exit 0
}

# ---------------------------------------------------------------- the box

# box CMD...: run CMD inside the box (as root, in PID 1's namespaces, at /),
# with a clean environment.
box() {
        "$SYSTEMD_BOX" exec "$MERGED" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= DEBIAN_FRONTEND=noninteractive "$@"
}

# box_sh SCRIPT: a shell script inside the box.
box_sh() { box sh -c "$1"; }

box_is_up() { [ -f "$MERGED.pid" ] && kill -0 "$(cat "$MERGED.pid")" 2>/dev/null; }

# box_up: mount a fresh overlay on the cached root and boot it.
box_up() {
        box_down
        # Never rm -rf through a mounted overlay.
        ! mountpoint -q "$MERGED" 2>/dev/null || die "$MERGED is still mounted; unmount it first"
        rm -rf "$RUN"
        mkdir -p "$RUN/upper" "$RUN/work" "$MERGED" "$RUN/out"
        mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$MERGED" ||
                die "cannot mount the overlay on $MERGED"
        BOX_PID=$("$SYSTEMD_BOX" up "$MERGED") || die "the box did not boot (see $MERGED.boot.log)"
        # systemd-box unmounts /.oldroot before /proc is mounted in the new
        # root, which umount(8) needs: the host's file systems stay visible in
        # the box at /.oldroot (and would be in the daemon's namespace).
        if box grep -q ' /.oldroot ' /proc/self/mountinfo; then
                box umount -l /.oldroot || die "cannot unmount /.oldroot in the box"
        fi
        # The tool counts boot as done once only console jobs are left; wait
        # for the manager to answer and its start-up jobs to finish.
        local i s
        for i in $(seq 100); do
                s=$(box systemctl is-system-running 2>/dev/null)
                case $s in running | degraded) break ;; esac
                [ "$(box systemctl list-jobs --no-legend 2>/dev/null |
                        grep -vcE 'getty|ttyS|console|utmp|graphical.target|multi-user.target')" = 0 ] && break
                sleep 0.1
        done
        note "box up: PID 1 is $BOX_PID here, systemd $(box systemctl --version | head -n 1 | cut -d' ' -f2), state $(box systemctl is-system-running 2>/dev/null)"
}

# box_down: stop the box (kills everything inside) and drop the overlay.
box_down() {
        local i
        if [ -f "$MERGED.pid" ]; then
                local pid
                pid=$(cat "$MERGED.pid")
                "$SYSTEMD_BOX" down "$MERGED" >/dev/null 2>&1 || true
                for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        if mountpoint -q "$MERGED" 2>/dev/null; then
                for i in $(seq 50); do umount "$MERGED" 2>/dev/null && break; sleep 0.1; done
                mountpoint -q "$MERGED" && umount -l "$MERGED"
        fi
        return 0
}

# ---------------------------------------------------------------- systemd

# show UNIT PROP: one property's value as systemd has it.
show() { box systemctl show -p "$2" --value "$1"; }

mainpid() { show netpolld.service MainPID; }
# is_pid N: N names a process (never signal 0 or "": kill -STOP 0 would stop
# the caller's own process group).
is_pid() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
        local n=$(($1 * 10)) i
        shift
        for ((i = 0; i < n; i++)); do
                "$@" && return 0
                sleep 0.1
        done
        return 1
}

service_is() { [ "$(show netpolld.service ActiveState)" = "$1" ]; }

# new_daemon OLDPID: the service runs (READY=1 came) under another MainPID.
new_daemon() {
        local s
        s=$(box systemctl show -p MainPID,ActiveState,SubState netpolld.service | sort | tr '\n' ' ')
        case $s in
        "ActiveState=active MainPID=$1 "*) return 1 ;;
        "ActiveState=active MainPID=0 "*) return 1 ;;
        "ActiveState=active MainPID="*" SubState=running ") return 0 ;;
        esac
        return 1
}

# A cursor to read the journal from "now on".
journal_cursor() { box journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
journal_since() { box journalctl --no-pager -q --after-cursor="$1" "${@:2}"; }
# journal_grep CURSOR IDENT ERE: the first message of IDENT (as journalctl
# shows it: "netpolld[PID]", "systemd[1]") since CURSOR that matches ERE,
# waiting up to 5 s for journald to get it (it reads services' output
# asynchronously, and late on a busy machine).  No journalctl matches
# (_PID=...): with one, systemd 252's --after-cursor skips the first entry
# that matches.
journal_grep() {
        local cur=$1 ident="$2: " re=$3 line i
        for i in $(seq 50); do
                line=$(journal_since "$cur" -o short |
                        awk -v id="$ident" 'index($0, id) { print substr($0, index($0, id) + length(id)) }' |
                        grep -E -m 1 -- "$re")
                [ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
                sleep 0.1
        done
        return 1
}

# ensure_active: make sure the service runs (a client's connect starts it).
ensure_active() {
        service_is active && return 0
        box pollctl ping -c 1 >/dev/null 2>&1
        settled() { service_is active || service_is failed || service_is inactive; }
        wait_for 10 settled
        service_is active
}

# ---------------------------------------------------------------- clients

# waiter_start NAME [SETPRIV-ARGS...]: a `pollctl --json wait` parked on a
# FIFO nobody writes, in the background; with SETPRIV-ARGS, as that user.
# (Its stdout is a file, not the caller's: run_check reads a check's output
# through a pipe and would wait for every process holding it.)
waiter_start() {
        local name=$1
        shift
        box_sh "rm -f /tmp/np-$name.fifo && mkfifo -m 0666 /tmp/np-$name.fifo"
        rm -f "$RUN/out/$name.out" "$RUN/out/$name.rc"
        if [ $# -gt 0 ]; then
                (box setpriv "$@" pollctl --json wait "/tmp/np-$name.fifo" >"$RUN/out/$name.out" 2>&1
                        echo $? >"$RUN/out/$name.rc") >/dev/null 2>&1 &
        else
                (box pollctl --json wait "/tmp/np-$name.fifo" >"$RUN/out/$name.out" 2>&1
                        echo $? >"$RUN/out/$name.rc") >/dev/null 2>&1 &
        fi
}
# waiter_ready NAME: make its FIFO readable (one byte).
waiter_ready() { box_sh "echo x > /tmp/np-$1.fifo"; }
waiter_done() { [ -s "$RUN/out/$1.rc" ]; }
# waiter_wait NAME SECONDS: wait for it to end; its exit status, or 255.
waiter_wait() {
        wait_for "$2" waiter_done "$1" || return 255
        return "$(cat "$RUN/out/$1.rc")"
}
waiter_output() { cat "$RUN/out/$1.out" 2>/dev/null; }

# The daemon-wide figures pollctl status shows, as JSON (root is admin).
status_json() { box pollctl --json status 2>/dev/null; }
# json_num JSON KEY: the first numeric value of "KEY".
json_num() { printf '%s' "$1" | grep -o "\"$2\":[0-9-]*" | head -n 1 | cut -d: -f2; }
json_str() { printf '%s' "$1" | grep -o "\"$2\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }

# ---------------------------------------------------------------- the unit files

# unit_key FILE SECTION KEY: the last value of KEY in SECTION of a unit file.
unit_key() {
        awk -v s="[$2]" -v k="$3" '
                /^\[/ { in_s = ($0 == s); next }
                in_s && index($0, k "=") == 1 { v = substr($0, length(k) + 2) }
                END { print v }' "$1"
}

# ---------------------------------------------------------------- the harness

N_PASS=0
N_FAIL=0
FAILED=()

# run_check NAME FUNCTION: run one check, print PASS/FAIL and what it read.
run_check() {
        local name=$1 fn=$2 out rc t0 t1
        t0=$(date +%s%N)
        out=$("$fn" 2>&1)
        rc=$?
        t1=$(date +%s%N)
        local ms=$(((t1 - t0) / 1000000))
        if [ $rc = 0 ]; then
                N_PASS=$((N_PASS + 1))
                printf 'PASS  %-28s (%d.%01d s)\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
        else
                N_FAIL=$((N_FAIL + 1))
                FAILED+=("$name")
                printf 'FAIL  %-28s (%d.%01d s)\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
        fi
        [ -n "$out" ] && printf '%s\n' "$out"
        return 0
}

# expect WHAT GOT WANT: say what was read; fail (return 1) when it differs.
expect() {
        if [ "$2" = "$3" ]; then
                say "$1: $2"
                return 0
        fi
        say "$1: $2   <-- expected $3"
        return 1
}
# expect_match WHAT GOT ERE
expect_match() {
        if printf '%s' "$2" | grep -Eq -- "$3"; then
                say "$1: $2"
                return 0
        fi
        say "$1: $2   <-- expected to match /$3/"
        return 1
}
