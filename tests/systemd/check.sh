#!/bin/bash
# tests/systemd/check.sh [--mode install|deb]: netpolld under a real systemd PID 1.
#
# Run by `make check-systemd` (PKG=deb for --mode deb); tests/systemd/README.md
# says what each check reads back and how to add one.  Boots the box
# (lib.sh), installs netpolld into it with `make install DESTDIR=... PREFIX=/usr`
# and the README's commands (install), or with `apt install ./*.deb` of
# `make deb`'s packages (deb, which also removes and purges them at the end),
# then runs the checks below.  Exit 0 when all pass or the machine cannot boot
# the box (a SKIPPED line says why), 1 otherwise.
set -u
set -o pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
. "$TOP/tests/systemd/lib.sh"

MODE=install
while [ $# -gt 0 ]; do
        case $1 in
        --mode) MODE=${2:?}; shift 2 ;;
        --mode=*) MODE=${1#--mode=}; shift ;;
        *) echo "usage: $0 [--mode install|deb]" >&2; exit 2 ;;
        esac
done
case $MODE in install | deb) ;; *) echo "check-systemd: PKG=install or PKG=deb, not '$MODE'" >&2; exit 2 ;; esac

MAKE=${MAKE:-make}
SYSTEMD_BOX=${SYSTEMD_BOX:-$TOP/../shared/tools/systemd-box}
SDB=${SDB:-$TOP/build/systemd-box}          # the cache and the run's files
BUILD_B=${BUILD_B:-$SDB/build}              # `make install` mode builds here
DEB_OUT=${DEB_OUT:-$TOP/build/deb}          # `make deb` leaves the packages here
ROOT=$SDB/root
RUN=$SDB/run
MERGED=$RUN/merged

SRC_SOCKET=$TOP/systemd/netpolld.socket
SRC_SYSUSERS=$TOP/systemd/netpolld.sysusers
SRC_TMPFILES=$TOP/systemd/netpolld.tmpfiles
SOCK=$(unit_key "$SRC_SOCKET" Socket ListenSequentialPacket)
CONF=/etc/netpolld/netpolld.conf

# ====================================================================== checks
#
# Each reads the running system and says what it read; the order below is the
# order they run in.  Only `activation` relies on its place (first after the
# installation: it reads the service as the installation left it); every
# other check brings the service up itself when it needs it running
# (ensure_active) and leaves it running with the unit's own settings.

# The units as installed: loaded, ExecStart= an executable that exists, the
# socket enabled and listening where systemd/netpolld.socket says, the
# service left to the socket (not enabled on its own).
check_installed() {
        local ok=0 exe cfg
        expect "netpolld.service LoadState" "$(show netpolld.service LoadState)" loaded || ok=1
        say "netpolld.service FragmentPath: $(show netpolld.service FragmentPath)"
        expect "netpolld.socket LoadState" "$(show netpolld.socket LoadState)" loaded || ok=1
        exe=$(show netpolld.service ExecStart | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
        expect "ExecStart= path" "$exe" /usr/sbin/netpolld || ok=1
        expect "$exe in the box" "$(box sh -c "test -x '$exe' && echo executable || echo missing")" executable || ok=1
        cfg=$(show netpolld.service ExecStart | grep -o -- '--config [^ ;]*' | cut -d' ' -f2)
        expect "ExecStart= --config" "$cfg" "$CONF" || ok=1
        expect "netpolld --check-config --config $cfg (exit status)" \
                "$(box netpolld --check-config --config "$cfg" >/dev/null 2>&1; echo $?)" 0 || ok=1
        expect "netpolld.socket UnitFileState" "$(show netpolld.socket UnitFileState)" enabled || ok=1
        expect "netpolld.socket ActiveState/SubState" \
                "$(show netpolld.socket ActiveState)/$(show netpolld.socket SubState)" active/listening || ok=1
        expect "netpolld.socket Listen" "$(show netpolld.socket Listen)" "$SOCK (SequentialPacket)" || ok=1
        expect "netpolld.service UnitFileState (the socket starts it)" \
                "$(show netpolld.service UnitFileState)" disabled || ok=1
        return $ok
}

# Socket activation: the service is not running until a client connects to
# the socket path of systemd/netpolld.socket, then runs on the passed socket.
check_activation() {
        local ok=0 pid out cur
        cur=$(journal_cursor)
        expect "$SOCK" "$(box stat -c %F "$SOCK" 2>&1)" socket || ok=1
        expect "netpolld.service before any client (ActiveState, MainPID)" \
                "$(show netpolld.service ActiveState), $(mainpid)" "inactive, 0" || ok=1
        out=$(box pollctl --socket "$SOCK" ping -c 1 2>&1)
        expect_match "pollctl --socket $SOCK ping -c 1" "$out" '^1 round trips?:' || ok=1
        wait_for 10 service_is active
        pid=$(mainpid)
        expect "netpolld.service after (ActiveState/SubState)" \
                "$(show netpolld.service ActiveState)/$(show netpolld.service SubState)" active/running || ok=1
        expect_match "MainPID" "$pid" '^[1-9][0-9]*$' || ok=1
        expect "TriggeredBy" "$(show netpolld.service TriggeredBy)" netpolld.socket || ok=1
        # The socket it listens on is systemd's: the one listening socket
        # bound at $SOCK, held by PID 1 and by the daemon.
        local ino
        ino=$(box awk -v p="$SOCK" '$NF == p && $4 == "00010000" {print $7}' /proc/net/unix | tr '\n' ' ')
        expect_match "listening sockets bound at $SOCK (/proc/net/unix inodes)" "$ino" '^[0-9]+ $' || ok=1
        ino=${ino% }
        expect_match "fds on socket:[$ino] held by PID 1 and by the daemon" \
                "$(box sh -c "ls -l /proc/1/fd" | grep -c "socket:\[$ino\]") and $(box sh -c "ls -l /proc/$pid/fd" | grep -c "socket:\[$ino\]")" \
                '^[1-9][0-9]* and [1-9][0-9]*$' || ok=1
        out=$(journal_grep "$cur" "netpolld[$pid]" 'serving on')
        say "the daemon's log: $out"
        return $ok
}

# READY and STATUS as systemd shows them: Type=notify reaches running only on
# READY=1; StatusText follows the daemon's figures while a client waits.
check_ready_status() {
        local ok=0 rc
        ensure_active || { say "netpolld.service does not start"; return 1; }
        expect "Type" "$(show netpolld.service Type)" notify || ok=1
        expect "NotifyAccess" "$(show netpolld.service NotifyAccess)" main || ok=1
        expect "ActiveState/SubState (running: READY=1 came)" \
                "$(show netpolld.service ActiveState)/$(show netpolld.service SubState)" active/running || ok=1
        expect_match "StatusText" "$(show netpolld.service StatusText)" \
                '^([0-9]+ connections, [0-9]+ descriptors, [0-9]+ waiters|serving [0-9]+ connections)$' || ok=1
        waiter_start status
        status_has() { show netpolld.service StatusText | grep -Eq "$1"; }
        wait_for 5 status_has '^[0-9]+ connections, 1 descriptors, 1 waiters$'
        expect_match "StatusText, one client parked in pollctl wait" \
                "$(show netpolld.service StatusText)" '^1 connections, 1 descriptors, 1 waiters$' || ok=1
        waiter_ready status
        waiter_wait status 5
        rc=$?
        expect "that pollctl wait, its FIFO written (exit status, result)" \
                "$rc, $(json_str "$(waiter_output status)" result)" "0, ready" || ok=1
        wait_for 5 status_has '^0 connections, 0 descriptors, 0 waiters$'
        expect "StatusText, the client gone" "$(show netpolld.service StatusText)" \
                "0 connections, 0 descriptors, 0 waiters" || ok=1
        return $ok
}

# set_conf KEY VALUE: set KEY in the box's netpolld.conf (the line must exist).
set_conf() { box sed -i "s|^#* *$1 *=.*|$1 = $2|" "$CONF"; }

# systemctl reload: RELOADING=1 then READY=1 reach PID 1 (its debug log shows
# every notification), the daemon keeps its PID and applies the new file.
check_reload() {
        local ok=0 pid cur rc log before
        ensure_active || { say "netpolld.service does not start"; return 1; }
        pid=$(mainpid)
        box cp "$CONF" /tmp/netpolld.conf.orig
        before=$(json_num "$(status_json)" max_connections)
        say "pollctl status before: max_connections $before"
        set_conf max_connections 777
        say "$CONF now: $(box grep '^max_connections ' "$CONF")"
        cur=$(journal_cursor)
        box systemd-analyze log-level debug
        box systemctl reload netpolld.service
        rc=$?
        box systemd-analyze log-level info
        expect "systemctl reload (exit status)" "$rc" 0 || ok=1
        journal_grep "$cur" "netpolld[$pid]" 'configuration reloaded' >/dev/null
        log=$(journal_since "$cur" -o cat)
        # The notifications in the order PID 1 received them.
        expect "notifications from PID $pid during the reload" \
                "$(printf '%s\n' "$log" | sed -n "s/^netpolld.service: Got notification message from PID $pid (\(RELOADING=1\|READY=1\).*/\1/p" | tr '\n' ' ' | sed 's/ $//')" \
                "RELOADING=1 READY=1" || ok=1
        expect_match "PID 1's log" "$(printf '%s\n' "$log" | grep -m 1 '^Reloaded netpolld.service')" '^Reloaded netpolld.service' || ok=1
        expect_match "the daemon's log" "$(printf '%s\n' "$log" | grep -m 1 'configuration reloaded')" "configuration reloaded from $CONF" || ok=1
        expect "MainPID (unchanged)" "$(mainpid)" "$pid" || ok=1
        expect "ActiveState/SubState" "$(show netpolld.service ActiveState)/$(show netpolld.service SubState)" active/running || ok=1
        expect "pollctl status: max_connections" "$(json_num "$(status_json)" max_connections)" 777 || ok=1
        box cp /tmp/netpolld.conf.orig "$CONF"
        box systemctl reload netpolld.service
        expect "restored, pollctl status: max_connections" "$(json_num "$(status_json)" max_connections)" "$before" || ok=1
        return $ok
}

# A reload with an invalid file: refused with FILE:LINE, the running
# configuration kept, the daemon still up.
check_reload_bad_config() {
        local ok=0 pid cur before
        ensure_active || { say "netpolld.service does not start"; return 1; }
        pid=$(mainpid)
        box cp "$CONF" /tmp/netpolld.conf.orig
        before=$(json_num "$(status_json)" max_connections)
        set_conf max_connections many
        say "$CONF now: $(box grep -n '^max_connections ' "$CONF")"
        cur=$(journal_cursor)
        box systemctl reload netpolld.service
        expect_match "the daemon's log" "$(journal_grep "$cur" "netpolld[$pid]" "$CONF:")" "refused.*$CONF:[0-9]+: max_connections" || ok=1
        expect "MainPID (unchanged)" "$(mainpid)" "$pid" || ok=1
        expect "ActiveState/SubState" "$(show netpolld.service ActiveState)/$(show netpolld.service SubState)" active/running || ok=1
        expect "pollctl status: max_connections (kept)" "$(json_num "$(status_json)" max_connections)" "$before" || ok=1
        box cp /tmp/netpolld.conf.orig "$CONF"
        return $ok
}

# The watchdog: with WatchdogSec=2s (a drop-in) a running daemon is left alone
# (its WATCHDOG=1 keep coming), and one stopped with SIGSTOP is killed and
# restarted after about 2 s.
WATCHDOG_DROPIN=/run/systemd/system/netpolld.service.d/50-check-watchdog.conf
check_watchdog() {
        local ok=0 pid new n0 ts0 ts1 t0 t1 ms cur log
        box_sh "mkdir -p ${WATCHDOG_DROPIN%/*} && printf '[Service]\nWatchdogSec=2s\n' > $WATCHDOG_DROPIN"
        box systemctl daemon-reload
        box systemctl restart netpolld.service
        expect "WatchdogUSec (drop-in)" "$(show netpolld.service WatchdogUSec)" 2s || ok=1
        pid=$(mainpid)
        is_pid "$pid" || { say "netpolld.service does not run (MainPID '$pid')"; box rm -f "$WATCHDOG_DROPIN"; box systemctl daemon-reload; return 1; }
        n0=$(show netpolld.service NRestarts)
        ts0=$(show netpolld.service WatchdogTimestampMonotonic)
        sleep 3
        ts1=$(show netpolld.service WatchdogTimestampMonotonic)
        expect "after 3 s running: MainPID, NRestarts" "$(mainpid), $(show netpolld.service NRestarts)" "$pid, $n0" || ok=1
        if [ "${ts1:-0}" -gt "${ts0:-0}" ]; then
                say "WatchdogTimestampMonotonic (last WATCHDOG=1): $ts0 -> $ts1"
        else
                say "WatchdogTimestampMonotonic (last WATCHDOG=1): $ts0 -> $ts1   <-- expected to advance"
                ok=1
        fi
        cur=$(journal_cursor)
        t0=$(date +%s%N)
        box sh -c "kill -STOP $pid"
        sleep 1
        expect "1 s after SIGSTOP: MainPID, its state" \
                "$(mainpid), $(box sh -c "sed 's/.*) \(.\).*/\1/' /proc/$pid/stat")" "$pid, T" || ok=1
        wait_for 20 new_daemon "$pid"
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        new=$(mainpid)
        if [ "$new" != "$pid" ] && service_is active && [ $ms -ge 1400 ]; then
                say "restarted: MainPID $pid -> $new, active again $ms ms after SIGSTOP"
        else
                say "MainPID $pid -> $new, ActiveState $(show netpolld.service ActiveState), $ms ms after SIGSTOP   <-- expected a new MainPID after >= 1.4 s"
                ok=1
        fi
        expect "NRestarts" "$(show netpolld.service NRestarts)" $((n0 + 1)) || ok=1
        expect_match "PID 1's log" "$(journal_grep "$cur" 'systemd[1]' 'netpolld.service: Watchdog timeout')" 'Watchdog timeout \(limit 2s\)' || ok=1
        expect_match "PID 1's log" "$(journal_grep "$cur" 'systemd[1]' 'netpolld.service: Failed with result')" "Failed with result 'watchdog'" || ok=1
        box rm -f "$WATCHDOG_DROPIN"
        box systemctl daemon-reload
        box systemctl restart netpolld.service
        say "drop-in removed, WatchdogUSec back to $(show netpolld.service WatchdogUSec)"
        return $ok
}

# systemctl stop: a lame duck.  Waits parked by two clients (root, and an
# unprivileged user of the socket's group) end with NP_ERR_CLOSING, pollctl's
# "closing" (exit status 1); the daemon exits 0 and leaves the socket, which
# systemd owns, in place.
check_stop_lame_duck() {
        local ok=0 gid t0 t1 ms rc out w
        ensure_active || { say "netpolld.service does not start"; return 1; }
        gid=$(box getent group netpoll | cut -d: -f3)
        waiter_start duck-root
        waiter_start duck-user --reuid=65534 --regid=65534 --groups="$gid"
        waiters() { [ "$(json_num "$(status_json)" waiters)" = 2 ]; }
        wait_for 5 waiters
        expect "pollctl status: waiters parked" "$(json_num "$(status_json)" waiters)" 2 || ok=1
        t0=$(date +%s%N)
        box systemctl stop netpolld.service 2>/dev/null
        rc=$?
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        expect "systemctl stop (exit status)" "$rc" 0 || ok=1
        say "systemctl stop took $ms ms (TimeoutStopSec=$(show netpolld.service TimeoutStopUSec))"
        for w in duck-root duck-user; do
                waiter_wait $w 5
                rc=$?
                out=$(waiter_output $w)
                expect "pollctl wait ($w): exit status, result" "$rc, $(json_str "$out" result)" "1, closing" || ok=1
                expect_match "pollctl wait ($w): message" "$(printf '%s\n' "$out" | grep -m 1 'pollctl wait')" 'descriptor is closing' || ok=1
        done
        expect "Result, ExecMainCode (1 exited), ExecMainStatus" \
                "$(show netpolld.service Result), $(show netpolld.service ExecMainCode), $(show netpolld.service ExecMainStatus)" \
                "success, 1, 0" || ok=1
        expect "netpolld.service ActiveState" "$(show netpolld.service ActiveState)" inactive || ok=1
        expect "netpolld.socket still listening" "$(show netpolld.socket SubState)" listening || ok=1
        expect "$SOCK after the stop" "$(box stat -c %F "$SOCK" 2>&1)" socket || ok=1
        return $ok
}

# Restart=on-failure: kill -9 of the main PID, and systemd alone (no client
# connects meanwhile) starts a new daemon.
check_restart_on_failure() {
        local ok=0 pid n0 cur log new
        ensure_active || { say "netpolld.service does not start"; return 1; }
        expect "Restart" "$(show netpolld.service Restart)" on-failure || ok=1
        pid=$(mainpid)
        is_pid "$pid" || { say "netpolld.service does not run (MainPID '$pid')"; return 1; }
        n0=$(show netpolld.service NRestarts)
        cur=$(journal_cursor)
        box sh -c "kill -KILL $pid"
        wait_for 10 new_daemon "$pid"
        new=$(mainpid)
        if [ "$new" != "$pid" ] && [ "$new" != 0 ]; then
                say "MainPID $pid -> $new"
        else
                say "MainPID $pid -> $new   <-- expected a new daemon"
                ok=1
        fi
        expect "ActiveState/SubState" "$(show netpolld.service ActiveState)/$(show netpolld.service SubState)" active/running || ok=1
        expect "NRestarts" "$(show netpolld.service NRestarts)" $((n0 + 1)) || ok=1
        expect_match "PID 1's log" "$(journal_grep "$cur" 'systemd[1]' 'netpolld.service: Main process exited')" 'code=killed, status=9/KILL' || ok=1
        expect_match "PID 1's log" "$(journal_grep "$cur" 'systemd[1]' 'netpolld.service: Scheduled restart job')" 'restart counter is at' || ok=1
        expect_match "the new daemon answers (pollctl ping)" "$(box pollctl ping -c 1 2>&1)" '^1 round trips?:' || ok=1
        return $ok
}

# The netpoll user from netpolld.sysusers runs the daemon; the socket file has
# the group and mode of netpolld.socket, its directory those of
# netpolld.tmpfiles; a user outside the group is refused, one in it admitted.
check_user_and_socket() {
        local ok=0 pid pw uid gid sysmax want_group want_mode tmp
        ensure_active || { say "netpolld.service does not start"; return 1; }
        pid=$(mainpid)
        pw=$(box getent passwd netpoll)
        say "getent passwd netpoll: $pw"
        say "netpolld.sysusers: $(grep -v '^#' "$SRC_SYSUSERS")"
        uid=$(echo "$pw" | cut -d: -f3)
        gid=$(echo "$pw" | cut -d: -f4)
        sysmax=$(box awk '$1 == "SYS_UID_MAX" {print $2}' /etc/login.defs)
        sysmax=${sysmax:-999}
        if [ -n "$uid" ] && [ "$uid" -le "${sysmax:-999}" ] && [ "$uid" -gt 0 ]; then
                say "uid $uid: a system user (<= SYS_UID_MAX, $sysmax)"
        else
                say "uid '$uid'   <-- expected a system uid (1..${sysmax:-999})"
                ok=1
        fi
        expect "gecos" "$(echo "$pw" | cut -d: -f5)" "$(sed -n 's/^u netpoll - "\(.*\)".*/\1/p' "$SRC_SYSUSERS")" || ok=1
        expect "group netpoll" "$(box getent group netpoll | cut -d: -f1,3)" "netpoll:$gid" || ok=1
        expect "/proc/$pid/status Uid (real, effective, saved, fs)" \
                "$(box awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/"$pid"/status)" "$uid $uid $uid $uid" || ok=1
        expect "/proc/$pid/status Gid" \
                "$(box awk '/^Gid:/ {print $2, $3, $4, $5}' /proc/"$pid"/status)" "$gid $gid $gid $gid" || ok=1
        expect "/proc/$pid/status Groups" "$(box awk '/^Groups:/ {print $2}' /proc/"$pid"/status)" "$gid" || ok=1
        want_group=$(unit_key "$SRC_SOCKET" Socket SocketGroup)
        want_mode=$(unit_key "$SRC_SOCKET" Socket SocketMode)
        expect "$SOCK (owner group mode type; netpolld.socket: SocketGroup=$want_group SocketMode=$want_mode)" \
                "$(box stat -c '%U %G %a %F' "$SOCK")" "root $want_group ${want_mode#0} socket" || ok=1
        tmp=$(awk '$2 == "/run/netpolld" {print $3, $4, $5}' "$SRC_TMPFILES")
        expect "/run/netpolld (mode owner group; netpolld.tmpfiles: $tmp)" \
                "$(box stat -c '%#a %U %G' /run/netpolld)" "$tmp" || ok=1
        expect_match "pollctl ping as nobody, no supplementary group" \
                "$(box setpriv --reuid=65534 --regid=65534 --clear-groups pollctl ping -c 1 2>&1 | tr '\n' ' '; echo "exit ${PIPESTATUS[0]}")" \
                'Permission denied.*exit 1$' || ok=1
        expect_match "pollctl ping as nobody in group netpoll" \
                "$(box setpriv --reuid=65534 --regid=65534 --groups="$gid" pollctl ping -c 1 2>&1 | tr '\n' ' '; echo "exit ${PIPESTATUS[0]}")" \
                '^1 round trips?:.*exit 0$' || ok=1
        return $ok
}

# Every hardening option of the unit, read back from the running process:
# hardening.sh has one reader per option, and an option without one fails.
. "$TOP/tests/systemd/hardening.sh"

# The online exposure score, against check-units' offline threshold.
check_security_score() {
        local ok=0 out score thr rc
        ensure_active || { say "netpolld.service does not start"; return 1; }
        thr=$(grep -o 'security --offline=true --threshold=[0-9]*' "$TOP/Makefile" | head -n 1 | cut -d= -f3)
        thr=${thr:-20}
        out=$(box systemd-analyze security --no-pager --threshold="$thr" netpolld.service 2>&1)
        rc=$?
        score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for netpolld.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
        say "systemd-analyze security netpolld.service: $score (threshold $((thr / 10)).$((thr % 10)), from the Makefile's check-units)"
        printf '%s\n' "$out" | grep '^✗' | sed 's/  */ /g' | cut -c1-110 | while read -r l; do say "  $l"; done
        expect "systemd-analyze security --threshold=$thr (exit status)" "$rc" 0 || ok=1
        [ -n "$score" ] || { say "no score in its output"; ok=1; }
        return $ok
}

# ============================================================ deb mode checks

DEB_PKGS="netpolld libnetpoll0 libnetpoll-dev"

# The packages as installed: their maintainer scripts ran sysusers and
# tmpfiles, enabled and started the socket, not the service.
check_deb_installed() {
        local ok=0 p dep ma out
        for p in $DEB_PKGS; do
                expect "dpkg: $p" "$(box dpkg-query -W -f='${Status} ${Version}' "$p" 2>&1)" \
                        "install ok installed $(dpkg-deb -f "$DEB_OUT"/${p}_*.deb Version)" || ok=1
        done
        dep=$(box dpkg-query -W -f='${Depends}' netpolld)
        say "netpolld Depends: $dep"
        for p in procps libprotobuf-c1 libinih1 libsystemd0; do
                printf '%s' "$dep" | grep -q "\b$p\b" || { say "   <-- $p missing from Depends"; ok=1; }
        done
        expect "netpolld conffiles" "$(box dpkg-query -W -f='${Conffiles}' netpolld | awk 'NF {print $1}')" "$CONF" || ok=1
        ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
        expect_match "ldconfig -p: libnetpoll.so.0" "$(box ldconfig -p | grep -m 1 'libnetpoll.so.0 ')" "=> (/usr)?/lib/$ma/libnetpoll.so.0\$" || ok=1
        expect "libnetpoll.pc libdir" "$(box sed -n 's/^libdir=//p' /usr/lib/"$ma"/pkgconfig/libnetpoll.pc)" "/usr/lib/$ma" || ok=1
        # libnetpoll-dev's Depends bring every module of its .pc's
        # Requires.private (pkg-config fails on a missing one, --static or
        # not).  pkg-config comes from the root's cache, and goes again.
        box apt-get install -y -qq --no-download pkg-config >/dev/null 2>&1 ||
                box apt-get install -y -qq pkg-config >/dev/null 2>&1
        expect_match "pkg-config --cflags --libs libnetpoll" "$(box pkg-config --cflags --libs libnetpoll 2>&1 | tr '\n' ' ')" '^-lnetpoll *$' || ok=1
        out=$(box pkg-config --static --libs libnetpoll 2>&1 | tr '\n' ' ')
        if printf '%s' "$out" | grep -q -- '-lprotobuf-c' && printf '%s' "$out" | grep -q -- '-lsystemd'; then
                say "pkg-config --static --libs libnetpoll: $out"
        else
                say "pkg-config --static --libs libnetpoll: $out   <-- expected -lprotobuf-c and -lsystemd"
                ok=1
        fi
        box apt-get purge -y -qq pkg-config >/dev/null 2>&1
        box apt-get autoremove --purge -y -qq >/dev/null 2>&1
        expect "unit files" "$(box dpkg -L netpolld | grep -E '\.(service|socket)$' | tr '\n' ' ')" \
                "/lib/systemd/system/netpolld.service /lib/systemd/system/netpolld.socket " || ok=1
        expect_match "user netpoll (sysusers in postinst)" "$(box getent passwd netpoll)" '^netpoll:' || ok=1
        expect "/run/netpolld (tmpfiles in postinst)" "$(box stat -c '%#a %U %G' /run/netpolld 2>&1)" \
                "$(awk '$2 == "/run/netpolld" {print $3, $4, $5}' "$SRC_TMPFILES")" || ok=1
        return $ok
}

# An upgrade (the package installed over itself runs the maintainer scripts
# as an upgrade does):
# the socket is left alone, a running service is try-restarted into the new
# binary, and a client parked in a wait keeps it across the restart (the fd
# store), then gets its readiness.
check_deb_upgrade() {
        local ok=0 pid new out rc sock0
        ensure_active || { say "netpolld.service does not start"; return 1; }
        pid=$(mainpid)
        sock0=$(box stat -c %i "$SOCK")
        waiter_start upgrade
        waiters() { [ "$(json_num "$(status_json)" waiters)" = 1 ]; }
        wait_for 5 waiters
        expect "pollctl status: waiters parked" "$(json_num "$(status_json)" waiters)" 1 || ok=1
        # dpkg -i, not apt-get install --reinstall ./x.deb: apt 2.6 fails that
        # with "Pathname to install is not absolute".
        out=$(box sh -c 'dpkg -i /tmp/netpolld-debs/netpolld_*.deb' 2>&1)
        expect "dpkg -i netpolld_*.deb over itself (exit status)" "$?" 0 || { printf '%s\n' "$out" | tail -n 5; ok=1; }
        say "dpkg: $(printf '%s\n' "$out" | grep -m 1 '^Preparing to unpack')"
        wait_for 10 new_daemon "$pid"
        new=$(mainpid)
        if [ "$new" != "$pid" ] && service_is active; then say "netpolld.service try-restarted: MainPID $pid -> $new"
        else say "MainPID $pid -> $new, ActiveState $(show netpolld.service ActiveState)   <-- expected a restart"; ok=1; fi
        expect "$SOCK (inode; the socket unit untouched)" "$(box stat -c %i "$SOCK")" "$sock0" || ok=1
        expect "the client's wait, across the restart (exited yet)" "$(waiter_done upgrade && echo yes || echo no)" no || ok=1
        expect "pollctl status (new daemon): waiters" "$(json_num "$(status_json)" waiters)" 1 || ok=1
        waiter_ready upgrade
        waiter_wait upgrade 5
        rc=$?
        expect "that wait, its FIFO written (exit status, result)" "$rc, $(json_str "$(waiter_output upgrade)" result)" "0, ready" || ok=1
        return $ok
}

# A list of what is on the box's disk, for the leftovers of a purge: every
# path but the package manager's own state, logs, caches and volatile trees,
# and a checksum of every file under /etc.
snapshot() {
        box sh -c 'find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
                -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \
                -o -path /var/lib/dpkg -o -path /.oldroot \) -prune -o -printf "%y %m %u:%g %p\n";
                find /etc -xdev -type f -exec md5sum {} +' | sort
}

# apt remove: the running daemon stopped, units and binaries gone, the
# configuration kept (policy: a removed package keeps its conffiles).
check_deb_remove() {
        local ok=0 out procs
        ensure_active || { say "netpolld.service does not start (before the removal)"; ok=1; }
        say "before: netpolld.service $(show netpolld.service ActiveState), MainPID $(mainpid)"
        out=$(box apt-get remove -y $DEB_PKGS 2>&1)
        expect "apt-get remove $DEB_PKGS (exit status)" "$?" 0 || { printf '%s\n' "$out" | tail -n 5; ok=1; }
        procs=$(box sh -c 'grep -lx netpolld /proc/[0-9]*/comm 2>/dev/null' | tr '\n' ' ')
        expect "netpolld processes" "${procs:-none}" none || ok=1
        expect "netpolld.service, netpolld.socket LoadState" \
                "$(show netpolld.service LoadState), $(show netpolld.socket LoadState)" "not-found, not-found" || ok=1
        expect "$SOCK" "$(box sh -c "test -e '$SOCK' && echo present || echo absent")" absent || ok=1
        expect "/usr/sbin/netpolld, /usr/bin/pollctl" "$(box sh -c 'ls /usr/sbin/netpolld /usr/bin/pollctl 2>/dev/null | wc -l')" 0 || ok=1
        expect "dpkg: netpolld" "$(box dpkg-query -W -f='${Status}' netpolld 2>&1)" "deinstall ok config-files" || ok=1
        expect "$CONF (kept until purge)" "$(box sh -c "test -f $CONF && echo present || echo absent")" present || ok=1
        return $ok
}

# apt purge, then autoremove of what the packages pulled in: nothing left
# beyond what policy keeps (the system user and group in /etc/passwd,
# /etc/group, /etc/shadow, /etc/gshadow and their backups).
check_deb_purge() {
        local ok=0 out left bad p rc=
        # What apt still knows of them: the removed packages' configuration.
        for p in $DEB_PKGS; do
                [ "$(box dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "deinstall ok config-files" ] && rc="$rc $p"
        done
        out=$(box apt-get purge -y $rc 2>&1)
        expect "apt-get purge$rc (exit status)" "$?" 0 || { printf '%s\n' "$out" | tail -n 5; ok=1; }
        out=$(box apt-get autoremove --purge -y 2>&1)
        expect "apt-get autoremove --purge (exit status)" "$?" 0 || ok=1
        say "autoremoved: $(printf '%s\n' "$out" | sed -n 's/^Purging configuration files for \([^ ]*\).*/\1/p; s/^Removing \([^ ]*\) .*/\1/p' | sort -u | tr '\n' ' ')"
        for p in $DEB_PKGS; do
                expect_match "dpkg: $p" "$(box dpkg-query -W -f='${Status}' "$p" 2>/dev/null || echo 'not known')" \
                        '^(not known|unknown ok not-installed)$' || ok=1
        done
        snapshot >"$RUN/out/snap-after"
        # Lines only in one list: a path added or removed, or an /etc file changed.
        left=$(comm -3 "$RUN/out/snap-before" "$RUN/out/snap-after" |
                sed -e 's/^\t/+ /' -e 's/^\([^+]\)/- \1/' | awk '{print $NF}' | sort -u)
        bad=$(printf '%s\n' "$left" | grep -vxE '/etc/(passwd|group|shadow|gshadow)-?' | grep -v '^$')
        say "left behind (changed or added since before the installation):"
        printf '%s\n' "$left" | grep -v '^$' | while read -r p; do say "  $p"; done
        [ -n "$left" ] || say "  nothing"
        say "of which the netpoll user and group: $(box getent passwd netpoll | cut -d: -f1,3) $(box getent group netpoll | cut -d: -f1,3)"
        say "/run/netpolld (volatile, gone at reboot): $(box sh -c 'test -e /run/netpolld && stat -c "%#a %U %G" /run/netpolld || echo absent')"
        if [ -n "$bad" ]; then
                say "   <-- not what policy keeps: $(echo "$bad" | tr '\n' ' ')"
                ok=1
        fi
        return $ok
}

# A restart storm under the real PID 1 (issue 12): tests/faults/restart-storm
# run inside the box as a client of the installed service, with
# STORM_RESTARTS of each kind (systemctl restart, kill -9 with
# Restart=on-failure, SIGUSR2), 50 clients x 100 pipes with parked waits,
# armed waits, deadlines and a writer, and a churn client; then systemctl
# stop must end the parked waits with NP_ERR_CLOSING and empty the store.
check_restart_storm() {
        local ok=0 bin=$BUILD_B/faults/restart-storm n=${STORM_RESTARTS:-100}
        "$MAKE" -C "$TOP" --no-print-directory B="$BUILD_B" PREFIX=/usr "$bin" \
                >"$RUN/out/storm-build.log" 2>&1 ||
                { tail -n 5 "$RUN/out/storm-build.log"; say "cannot build restart-storm"; return 1; }
        cp "$bin" "$MERGED/usr/local/bin/restart-storm"
        # Every client is root's: let one uid hold them all (the box's
        # RLIMIT_NOFILE is 20,000, and 25% of it is less than 5,000).
        cp "$MERGED/etc/netpolld/netpolld.conf" "$RUN/out/netpolld.conf.saved"
        sed -i 's/^max_descriptors_per_uid = .*/max_descriptors_per_uid = 100%/' \
                "$MERGED/etc/netpolld/netpolld.conf"
        say "config: $(grep '^max_descriptors_per_uid' "$MERGED/etc/netpolld/netpolld.conf")"
        # Hundreds of starts in a few minutes: past the default start rate
        # limit (5 in 10 s), after which systemd would give up on the unit.
        mkdir -p "$MERGED/etc/systemd/system/netpolld.service.d"
        printf '[Unit]\nStartLimitIntervalSec=0\n' \
                >"$MERGED/etc/systemd/system/netpolld.service.d/storm.conf"
        box systemctl daemon-reload
        say "drop-in: StartLimitIntervalSec=0 (the storm starts the service 200 times)"
        # A fresh instance: the store emptied, the next connect starts it.
        box systemctl stop netpolld.service
        # The issue's 50 x 100 descriptors (the storm's full size): 64 fds
        # to a store entry, some 85 entries, well within the unit's 512
        # (systemd 252 stops answering systemctl once PID 1 holds more than
        # 1,024 fds).
        box env FAULTS_SYSTEMD_SOCKET=/run/netpolld/netpolld.sock FAULTS_RESTARTS="$n" \
                /usr/local/bin/restart-storm >"$RUN/out/storm.log" 2>&1 || ok=1
        cp "$RUN/out/netpolld.conf.saved" "$MERGED/etc/netpolld/netpolld.conf"
        rm -f "$MERGED/etc/systemd/system/netpolld.service.d/storm.conf"
        box systemctl daemon-reload
        grep -E "restart-storm: (kind|upgrade|restart|kill -9) |storm [0-9.]+ s:|between restarts|after the storm|fd store holds|stop:|FAIL|error:" \
                "$RUN/out/storm.log" | sed 's/^restart-storm: //' | head -n 24 |
                while IFS= read -r line; do say "$line"; done
        expect "restart-storm (${n} restarts of each kind)" \
                "$(tail -n 1 "$RUN/out/storm.log")" "PASS restart-storm" || ok=1
        expect "fds in systemd's store after systemctl stop" \
                "$(show netpolld.service NFileDescriptorStore)" 0 || ok=1
        return $ok
}

# ====================================================================== the run

CHECKS=(
        "installed           check_installed"
        "activation          check_activation"
        "ready-status        check_ready_status"
        "reload              check_reload"
        "reload-bad-config   check_reload_bad_config"
        "watchdog            check_watchdog"
        "stop-lame-duck      check_stop_lame_duck"
        "restart-on-failure  check_restart_on_failure"
        "user-and-socket     check_user_and_socket"
        "hardening           check_hardening"
        "security-score      check_security_score"
)
# Once is enough: `make install` mode only (the same daemon either way).
INSTALL_CHECKS_LAST=("restart-storm       check_restart_storm")
DEB_CHECKS_FIRST=("deb-installed       check_deb_installed")
DEB_CHECKS_LAST=(
        "deb-upgrade         check_deb_upgrade"
        "deb-remove          check_deb_remove"
        "deb-purge           check_deb_purge"
)

# ---------------------------------------------------------------- installing

install_runtime_packages() {
        # From the root's apt cache (root.sh), else from the mirror.
        box apt-get install -y -qq --no-download "$@" >"$RUN/out/apt-runtime.log" 2>&1 ||
                box apt-get install -y -qq "$@" >>"$RUN/out/apt-runtime.log" 2>&1 ||
                { tail -n 5 "$RUN/out/apt-runtime.log"; die "apt-get install $* failed in the box"; }
}

install_make() {
        "$MAKE" -C "$TOP" --no-print-directory B="$BUILD_B" PREFIX=/usr install DESTDIR="$MERGED" \
                >"$RUN/out/make-install.log" 2>&1 ||
                { tail -n 20 "$RUN/out/make-install.log"; die "make install DESTDIR=$MERGED failed"; }
        install_runtime_packages libprotobuf-c1 libinih1 libsystemd0 procps
        # README, "Installing with make install".
        box sh -c 'systemd-sysusers && systemd-tmpfiles --create netpolld.conf &&
                systemctl daemon-reload && systemctl enable --now netpolld.socket' \
                >"$RUN/out/enable.log" 2>&1 || { cat "$RUN/out/enable.log"; die "enabling netpolld.socket failed"; }
        note "installed: make install DESTDIR=<box> PREFIX=/usr, apt-get install libprotobuf-c1 libinih1 libsystemd0 procps, systemd-sysusers, systemd-tmpfiles --create, systemctl enable --now netpolld.socket"
}

install_deb() {
        local debs
        debs=$(cd "$DEB_OUT" && ls netpolld_*.deb libnetpoll0_*.deb libnetpoll-dev_*.deb 2>/dev/null)
        [ "$(echo "$debs" | wc -w)" = 3 ] || die "make deb left no netpolld, libnetpoll0 and libnetpoll-dev .debs in $DEB_OUT"
        snapshot >"$RUN/out/snap-before"
        mkdir -p "$MERGED/tmp/netpolld-debs"
        (cd "$DEB_OUT" && cp $debs "$MERGED/tmp/netpolld-debs/")
        chmod 0755 "$MERGED/tmp/netpolld-debs"
        chmod 0644 "$MERGED"/tmp/netpolld-debs/*.deb
        # apt-get, not dpkg -i: the dependencies come from the archive (here its
        # cache in the root), as they would on a user's machine.
        box sh -c 'cd /tmp/netpolld-debs && apt-get install -y --no-download ./*.deb' >"$RUN/out/apt-install.log" 2>&1 ||
                box sh -c 'cd /tmp/netpolld-debs && apt-get install -y ./*.deb' >>"$RUN/out/apt-install.log" 2>&1 ||
                { tail -n 20 "$RUN/out/apt-install.log"; die "apt-get install ./*.deb failed in the box"; }
        note "installed: apt-get install ./$(echo $debs | sed 's/ / .\//g') ($(grep -c '^Setting up' "$RUN/out/apt-install.log") packages set up: $(sed -n 's/^Setting up \([^ ]*\) .*/\1/p' "$RUN/out/apt-install.log" | tr '\n' ' '))"
}

# ---------------------------------------------------------------- main

preflight() {
        [ "$(id -u)" = 0 ] || skip "needs root (the box is namespaces, mounts and a debootstrap'ed root)"
        [ -x "$SYSTEMD_BOX" ] || skip "no systemd-box at $SYSTEMD_BOX (set SYSTEMD_BOX=)"
        local t
        for t in unshare nsenter mount mountpoint flock setsid; do
                command -v $t >/dev/null || skip "no $t on this machine"
        done
        unshare --pid --fork --mount --uts --ipc true 2>/dev/null ||
                skip "unshare of PID, mount, UTS and IPC namespaces is not permitted here"
        grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
                skip "the kernel has no overlay file system"
}

main() {
        local t0 rc
        t0=$(date +%s)
        preflight
        mkdir -p "$SDB"
        exec 9>"$SDB/lock"
        flock -w 900 9 || die "another check-systemd holds $SDB/lock"

        "$TOP/tests/systemd/root.sh" "$SYSTEMD_BOX" "$SDB"
        rc=$?
        [ $rc = 77 ] && skip "cannot build the box root (see above)"
        [ $rc = 0 ] || die "building the box root failed"

        if [ "$MODE" = install ]; then
                "$MAKE" -C "$TOP" --no-print-directory B="$BUILD_B" PREFIX=/usr all >"$SDB/build.log" 2>&1 ||
                        { tail -n 20 "$SDB/build.log"; die "make B=$BUILD_B PREFIX=/usr all failed"; }
        else
                "$MAKE" -C "$TOP" --no-print-directory deb || die "make deb failed"
        fi

        if [ "${SYSTEMD_BOX_KEEP:-0}" = 1 ]; then
                trap 'note "SYSTEMD_BOX_KEEP=1: the box is still up: $SYSTEMD_BOX exec $MERGED CMD...; $SYSTEMD_BOX down $MERGED && umount $MERGED"' EXIT
        else
                trap box_down EXIT
        fi
        trap 'exit 130' INT TERM
        # A hung check must not hang CI: the whole run has a deadline.
        # (Stopping the box ends whatever command inside it the run waits on.)
        # (It must not hold the lock's fd 9, and its sleep dies with it.)
        (
                exec 9>&- >/dev/null
                sleep "${SYSTEMD_CHECK_TIMEOUT:-900}" &
                trap 'kill $! 2>/dev/null; exit 0' TERM
                wait $!
                echo "check-systemd: timed out after ${SYSTEMD_CHECK_TIMEOUT:-900} s" >&2
                kill -TERM $$
                "$SYSTEMD_BOX" down "$MERGED"
        ) &
        DEADLINE_PID=$!
        box_up
        exec > >(tee "$SDB/check-$MODE.log") 2>&1
        case $MODE in install) install_make ;; deb) install_deb ;; esac
        note "running the checks ($MODE)"

        local c
        if [ "$MODE" = deb ]; then
                for c in "${DEB_CHECKS_FIRST[@]}"; do run_check $c; done
        fi
        for c in "${CHECKS[@]}"; do run_check $c; done
        if [ "$MODE" = deb ]; then
                for c in "${DEB_CHECKS_LAST[@]}"; do run_check $c; done
        else
                for c in "${INSTALL_CHECKS_LAST[@]}"; do run_check $c; done
        fi

        kill "$DEADLINE_PID" 2>/dev/null
        echo "check-systemd ($MODE): $N_PASS passed, $N_FAIL failed in $(($(date +%s) - t0)) s${FAILED[*]:+ (failed: ${FAILED[*]})}"
        [ $N_FAIL = 0 ]
}

main
