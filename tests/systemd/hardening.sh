# tests/systemd/hardening.sh: check_hardening for check.sh (sourced).
#
# Every key of the unit's [Service] section but the life-cycle ones (which
# their own checks cover) must be in force for the running daemon.  Each key
# has a reader hv_KEY here that reads the effect back from the process
# (/proc/PID/status, limits, ns/, mountinfo, its cgroup, its mount namespace
# entered with nsenter) or, for what only PID 1 and the kernel's seccomp
# filter know, from `systemctl show`.  A key without a reader is compared
# with `systemctl show` and marked so; a key systemd does not know fails.
# A reader says one line: KEY=VALUE -> what it read.

LIFECYCLE_KEYS="Type NotifyAccess ExecStart ExecReload Restart WatchdogSec TimeoutStopSec"

HPID=
HOUT=

# hread FILE: a file of the daemon's /proc, cached for this check.
hproc() { cat "$HOUT/proc-$1"; }
hstatus() { hproc status | awk -F':\t*' -v k="$1" '$1 == k {print $2}'; }
# nsrun CMD...: CMD as root in the daemon's mount namespace (its view of the
# file systems: what it can see and write).
nsrun() { box nsenter -t "$HPID" -m -- "$@"; }
# mnt MOUNTPOINT FIELD: of the topmost mount at MOUNTPOINT: opts (per-mount
# options), root (the mounted subtree), fstype, super (super options).
mnt() {
        hproc mountinfo | awk -v m="$1" -v f="$2" '
                $5 == m { for (i = 7; $i != "-"; i++) ; o = $6; r = $4; t = $(i + 1); s = $(i + 3) }
                END { if (f == "opts") print o; else if (f == "root") print r; else if (f == "fstype") print t; else print s }'
}
is_ro() { mnt "$1" opts | tr ',' '\n' | grep -qx ro; }
# The mount point that holds PATH in the daemon's namespace.
covering() {
        hproc mountinfo | awk -v p="$1" '{ m = $5; if ((p == m || index(p, m "/") == 1 || m == "/") && length(m) > length(best)) best = m } END { print best }'
}
ok_say() { say "$*"; return 0; }
bad_say() { say "$*   <-- not in force"; return 1; }
yesno() {
        case $1 in yes | true | on | 1) echo yes ;; no | false | off | 0) echo no ;; *) echo "$1" ;; esac
}
show_is() {
        # show_is KEY WANT: systemctl show KEY equals WANT.
        local got
        got=$(show netpolld.service "$1")
        if [ "$(yesno "$got")" = "$(yesno "$2")" ]; then ok_say "$1=$2 -> systemctl show: $got"
        else bad_say "$1=$2 -> systemctl show: $got"; fi
}
# The syscalls of filter sets, groups expanded (systemd-analyze syscall-filter).
syscall_set() {
        local g
        for g in "$@"; do
                box systemd-analyze syscall-filter --no-pager "$g" | awk 'NR > 1 && $1 !~ /^#/ && NF {print $1}' |
                        while read -r s; do
                                case $s in @*) syscall_set "$s" ;; *) echo "$s" ;; esac
                        done
        done | sort -u
}
allowed_syscalls() { show netpolld.service SystemCallFilter | tr ' ' '\n' | grep -v '^$' | sort -u; }
none_allowed() {
        # none_allowed SYSCALL...: prints those of them the filter allows.
        local s
        for s in "$@"; do allowed_syscalls | grep -qx "$s" && echo "$s"; done
}

hv_User() {
        local uid
        uid=$(box id -u "$1")
        local got
        got=$(hstatus Uid)
        [ "$(echo $got)" = "$uid $uid $uid $uid" ] && ok_say "User=$1 (uid $uid) -> Uid: $(echo $got)" ||
                bad_say "User=$1 (uid $uid) -> Uid: $(echo $got)"
}
hv_Group() {
        local gid got
        gid=$(box getent group "$1" | cut -d: -f3)
        got=$(hstatus Gid)
        [ "$(echo $got)" = "$gid $gid $gid $gid" ] && ok_say "Group=$1 (gid $gid) -> Gid: $(echo $got)" ||
                bad_say "Group=$1 (gid $gid) -> Gid: $(echo $got)"
}
hv_UMask() {
        [ "$(hstatus Umask)" = "$1" ] && ok_say "UMask=$1 -> Umask: $(hstatus Umask)" || bad_say "UMask=$1 -> Umask: $(hstatus Umask)"
}
hv_NoNewPrivileges() {
        [ "$(hstatus NoNewPrivs)" = 1 ] && ok_say "NoNewPrivileges=$1 -> NoNewPrivs: 1" ||
                bad_say "NoNewPrivileges=$1 -> NoNewPrivs: $(hstatus NoNewPrivs)"
}
hv_CapabilityBoundingSet() {
        local b e p
        b=$(hstatus CapBnd) e=$(hstatus CapEff) p=$(hstatus CapPrm)
        [ -z "$1" ] || { bad_say "CapabilityBoundingSet=$1: no reader for a non-empty set"; return; }
        [ "$b$e$p" = 000000000000000000000000000000000000000000000000 ] &&
                ok_say "CapabilityBoundingSet= -> CapBnd $b, CapEff $e, CapPrm $p" ||
                bad_say "CapabilityBoundingSet= -> CapBnd $b, CapEff $e, CapPrm $p"
}
hv_AmbientCapabilities() {
        [ -z "$1" ] || { bad_say "AmbientCapabilities=$1: no reader for a non-empty set"; return; }
        [ "$(hstatus CapAmb)" = 0000000000000000 ] && ok_say "AmbientCapabilities= -> CapAmb $(hstatus CapAmb)" ||
                bad_say "AmbientCapabilities= -> CapAmb $(hstatus CapAmb)"
}
hv_LimitNOFILE() {
        local soft hard p1 want
        read -r soft hard < <(hproc limits | awk '/^Max open files/ {print $4, $5}')
        p1=$(box awk '/^Max open files/ {print $5}' /proc/1/limits)
        want=$1
        # PID 1 can raise a hard limit only with CAP_SYS_RESOURCE (bit 24);
        # without it systemd gives the service its own, the closest it can.
        if [ "$p1" != unlimited ] && [ "$want" -gt "$p1" ] &&
                ! (($(printf '%d' 0x"$(box awk '/^CapEff/ {print $2}' /proc/1/status)") >> 24 & 1)); then
                [ "$soft $hard" = "$p1 $p1" ] &&
                        ok_say "LimitNOFILE=$1 -> Max open files $soft $hard (soft hard): the most this machine allows, PID 1 lacks CAP_SYS_RESOURCE and has $p1 itself" ||
                        bad_say "LimitNOFILE=$1 -> Max open files $soft $hard (PID 1 lacks CAP_SYS_RESOURCE, has $p1)"
                return
        fi
        [ "$soft $hard" = "$want $want" ] && ok_say "LimitNOFILE=$1 -> Max open files $soft $hard (soft hard)" ||
                bad_say "LimitNOFILE=$1 -> Max open files $soft $hard (soft hard)"
}
bytes() {
        local n=${1%[KMGT]} u=${1##*[0-9]}
        case $u in K) echo $((n << 10)) ;; M) echo $((n << 20)) ;; G) echo $((n << 30)) ;; T) echo $((n << 40)) ;; *) echo "$n" ;; esac
}
# cgfile CONTROLLER V2FILE V1FILE: the daemon's cgroup file, v2 or v1.
cgfile() {
        local path
        path=$(hproc cgroup | awk -F: -v c="$1" '$2 == c {print $3}')
        if [ -n "$path" ]; then echo "/sys/fs/cgroup/$1$path/$3"
        else echo "/sys/fs/cgroup$(hproc cgroup | awk -F: '$1 == "0" {print $3}')/$2"; fi
}
hv_MemoryMax() {
        local f got
        f=$(cgfile memory memory.max memory.limit_in_bytes)
        got=$(box cat "$f" 2>&1)
        [ "$got" = "$(bytes "$1")" ] && ok_say "MemoryMax=$1 -> $f: $got" || bad_say "MemoryMax=$1 -> $f: $got"
}
hv_TasksMax() {
        local f got
        f=$(cgfile pids pids.max pids.max)
        got=$(box cat "$f" 2>&1)
        [ "$got" = "$1" ] && ok_say "TasksMax=$1 -> $f: $got" || bad_say "TasksMax=$1 -> $f: $got"
}
hv_ProtectSystem() {
        local p out='' ok=0 w=
        [ "$1" = strict ] || { bad_say "ProtectSystem=$1: the reader knows strict only"; return; }
        # strict: all but the API file systems and PrivateTmp's is read-only;
        # test -w as root fails only on a read-only mount.
        # /run too: systemd 252 leaves it out of strict's read-only remount
        # when API file systems are mounted (the unit adds ReadOnlyPaths=/run).
        for p in / /usr /etc /var /var/lib /opt /srv /boot /run /run/lock /run/netpolld; do
                box test -e "$p" || continue
                if nsrun test -w "$p"; then w="$w $p"; ok=1; fi
                out="$out $p($(covering "$p"):$(mnt "$(covering "$p")" opts | cut -d, -f1))"
        done
        [ $ok = 0 ] && ok_say "ProtectSystem=strict -> read-only in its namespace (path(mount:opts)):$out" ||
                bad_say "ProtectSystem=strict -> writable in its namespace:$w;$out"
}
hv_ReadOnlyPaths() {
        local p out='' ok=0
        for p in $1; do
                p=${p#-}
                if nsrun test -w "$p"; then ok=1; out="$out $p(writable)"
                else out="$out $p($(covering "$p"):$(mnt "$(covering "$p")" opts | cut -d, -f1), not writable)"; fi
        done
        [ $ok = 0 ] && ok_say "ReadOnlyPaths=$1 ->$out" || bad_say "ReadOnlyPaths=$1 ->$out"
}
hv_ProtectHome() {
        local p out='' ok=0 r
        [ "$1" = yes ] || { bad_say "ProtectHome=$1: the reader knows yes only"; return; }
        box touch /home/.np-check-marker /root/.np-check-marker
        for p in /home /root /run/user; do
                box test -e "$p" || continue
                r=$(mnt "$p" root)
                out="$out $p(mount of $r, mode $(nsrun stat -c %a "$p"), entries $(nsrun ls -A "$p" | wc -l))"
                case $r in *inaccessible*) ;; *) ok=1 ;; esac
                [ "$(nsrun ls -A "$p" | wc -l)" = 0 ] || ok=1
        done
        box rm -f /home/.np-check-marker /root/.np-check-marker
        [ $ok = 0 ] && ok_say "ProtectHome=yes ->$out" || bad_say "ProtectHome=yes ->$out"
}
hv_PrivateTmp() {
        local p out='' ok=0 r
        box sh -c 'touch /tmp/.np-check-marker /var/tmp/.np-check-marker'
        for p in /tmp /var/tmp; do
                r=$(mnt "$p" root)
                out="$out $p(mount of $r, marker $(nsrun sh -c "test -e $p/.np-check-marker && echo visible || echo hidden"))"
                case $r in *systemd-private-*-netpolld.service-*) ;; *) ok=1 ;; esac
                nsrun test -e "$p/.np-check-marker" && ok=1
        done
        box rm -f /tmp/.np-check-marker /var/tmp/.np-check-marker
        [ $ok = 0 ] && ok_say "PrivateTmp=yes ->$out" || bad_say "PrivateTmp=yes ->$out"
}
hv_PrivateDevices() {
        local t devs blk bad
        t=$(mnt /dev fstype)
        devs=$(nsrun ls /dev | tr '\n' ' ')
        blk=$(nsrun find /dev -xdev -type b | wc -l)
        bad=$(nsrun sh -c 'ls -d /dev/mem /dev/kmem /dev/port /dev/kmsg /dev/vd* /dev/sd* /dev/nvme* 2>/dev/null' | tr '\n' ' ')
        [ "$t" = tmpfs ] && [ "$blk" = 0 ] && [ -z "$bad" ] &&
                ok_say "PrivateDevices=yes -> /dev is a $t, $blk block devices: $devs" ||
                bad_say "PrivateDevices=yes -> /dev $t, $blk block devices, present: $bad"
}
ns_differs() {
        # ns_differs KEY NS: the daemon's namespace NS is not PID 1's.
        local a b
        a=$(box readlink "/proc/$HPID/ns/$2") b=$(box readlink "/proc/1/ns/$2")
        [ -n "$a" ] && [ "$a" != "$b" ] && ok_say "$1 -> its $a, PID 1's $b" || bad_say "$1 -> its $a, PID 1's $b"
}
hv_PrivateNetwork() {
        local ifs
        ifs=$(hproc net-dev | awk -F: 'NR > 2 {gsub(/ /, "", $1); print $1}' | tr '\n' ' ')
        ns_differs "PrivateNetwork=$1 (interfaces: $ifs)" net || return 1
        [ "$ifs" = "lo " ] || bad_say "PrivateNetwork=$1 -> interfaces: $ifs"
}
hv_PrivateIPC() { ns_differs "PrivateIPC=$1" ipc; }
hv_ProtectHostname() {
        local allowed
        allowed=$(none_allowed sethostname setdomainname)
        ns_differs "ProtectHostname=$1 (sethostname/setdomainname allowed: ${allowed:-none})" uts || return 1
        [ -z "$allowed" ] || bad_say "ProtectHostname=$1 -> allowed: $allowed"
}
hv_ProtectClock() {
        local allowed dev
        allowed=$(none_allowed clock_settime clock_adjtime adjtimex settimeofday | tr '\n' ' ')
        dev=$(show netpolld.service DeviceAllow)
        [ -z "$allowed" ] && [ "$dev" = "char-rtc r" ] &&
                ok_say "ProtectClock=$1 -> clock_settime/clock_adjtime/adjtimex/settimeofday not in its filter; DeviceAllow=$dev" ||
                bad_say "ProtectClock=$1 -> allowed: $allowed; DeviceAllow=$dev"
}
hv_ProtectKernelTunables() {
        local sys ps
        sys=$(mnt /sys opts | cut -d, -f1)
        ps=$(nsrun sh -c 'test -e /proc/sys && { test -w /proc/sys/kernel && echo writable || echo read-only; } || echo absent')
        [ "$sys" = ro ] && ! nsrun test -w /sys/kernel && [ "$ps" != writable ] &&
                ok_say "ProtectKernelTunables=$1 -> /sys mounted $sys, /proc/sys $ps" ||
                bad_say "ProtectKernelTunables=$1 -> /sys mounted $sys, /proc/sys $ps"
}
hv_ProtectKernelModules() {
        local allowed mods
        allowed=$(none_allowed init_module finit_module delete_module | tr '\n' ' ')
        mods=$(nsrun sh -c 'test -e /usr/lib/modules && ls -A /usr/lib/modules | wc -l || echo absent')
        [ -z "$allowed" ] && { [ "$mods" = absent ] || [ "$mods" = 0 ]; } &&
                ok_say "ProtectKernelModules=$1 -> init_module/finit_module/delete_module not in its filter; /usr/lib/modules: $mods; systemctl show: $(show netpolld.service ProtectKernelModules)" ||
                bad_say "ProtectKernelModules=$1 -> allowed: $allowed; /usr/lib/modules: $mods"
}
hv_ProtectKernelLogs() {
        local allowed k
        allowed=$(none_allowed syslog)
        k=$(nsrun sh -c 'ls -d /dev/kmsg /proc/kmsg 2>/dev/null' | tr '\n' ' ')
        [ -z "$allowed" ] && [ -z "$k" ] &&
                ok_say "ProtectKernelLogs=$1 -> syslog(2) not in its filter; /dev/kmsg, /proc/kmsg absent" ||
                bad_say "ProtectKernelLogs=$1 -> allowed: $allowed; present: $k"
}
hv_ProtectControlGroups() {
        # Every cgroup mount, not only /sys/fs/cgroup: in hybrid mode that
        # is a tmpfs systemd mounts read-only anyway, the hierarchies below.
        local m list= rw=
        while read -r m o; do
                list="$list ${m#/sys/fs/cgroup}:${o%%,*}"
                [ "${o%%,*}" = ro ] || rw="$rw $m"
        done < <(hproc mountinfo | awk '$5 == "/sys/fs/cgroup" || index($5, "/sys/fs/cgroup/") == 1 {print $5, $6}')
        [ -n "$list" ] && [ -z "$rw" ] &&
                ok_say "ProtectControlGroups=$1 -> cgroup mounts (under /sys/fs/cgroup):$list" ||
                bad_say "ProtectControlGroups=$1 -> writable:${rw:- (no cgroup mount)};$list"
}
hv_ProcSubset() {
        local s
        s=$(mnt /proc super)
        printf '%s' "$s" | tr ',' '\n' | grep -qx "subset=$1" &&
                ok_say "ProcSubset=$1 -> /proc mounted $s; /proc/sys $(nsrun sh -c 'test -e /proc/sys && echo present || echo absent')" ||
                bad_say "ProcSubset=$1 -> /proc mounted $s"
}
hv_LockPersonality() {
        local p
        p=$(hproc personality)
        [ "$(show netpolld.service LockPersonality)" = yes ] && [ "$p" = 00000000 ] &&
                ok_say "LockPersonality=$1 -> systemctl show: yes; personality $p" ||
                bad_say "LockPersonality=$1 -> systemctl show: $(show netpolld.service LockPersonality); personality $p"
}
hv_IPAddressDeny() {
        local got
        got=$(show netpolld.service IPAddressDeny | tr ' ' '\n' | sort | tr '\n' ' ')
        [ "$1" = any ] || { bad_say "IPAddressDeny=$1: the reader knows any only"; return; }
        [ "$got" = "0.0.0.0/0 ::/0 " ] && ok_say "IPAddressDeny=any -> systemctl show: $got" ||
                bad_say "IPAddressDeny=any -> systemctl show: $got"
}
hv_DevicePolicy() {
        local f list
        f=$(cgfile devices - devices.list)
        list=$(box cat "$f" 2>/dev/null | tr '\n' ',')
        # closed: only the pseudo devices null zero full random urandom tty
        # ptmx and pts (1:3 1:5 1:7 1:8 1:9 5:0 5:2 136:*), systemd's
        # inaccessible nodes (0:0), and the rtc (DeviceAllow=char-rtc r).
        local rtc extra
        rtc=$(box awk '$2 == "rtc" {print $1}' /proc/devices)
        extra=$(printf '%s' "$list" | tr ',' '\n' | grep -v '^$' |
                grep -vxE "c (1:[35789]|5:[02]|136:\*|0:0) rwm?|b 0:0 rwm|c 136:\* rw${rtc:+|c $rtc:\* r}")
        if [ "$(show netpolld.service DevicePolicy)" = "$1" ] && [ -z "$extra" ]; then
                ok_say "DevicePolicy=$1 -> systemctl show: $1; ${f##*/}: ${list:-(cgroup v2: a BPF program)}"
        else
                bad_say "DevicePolicy=$1 -> systemctl show: $(show netpolld.service DevicePolicy); ${f##*/}: $list; beyond closed: $extra"
        fi
}
hv_SystemCallFilter() {
        # The unit's lines, in order: @system-service, ~@privileged @resources,
        # sched_setattr.  Read back: the allow list PID 1 computed has
        # sched_setattr, nothing of @privileged or @resources but it, nothing
        # outside @system-service; and the kernel has the filter (Seccomp: 2).
        local all priv svc extra denied_ok n
        all=$(allowed_syscalls)
        priv=$(syscall_set @privileged @resources | grep -vx sched_setattr)
        svc=$(syscall_set @system-service)
        extra=$(comm -23 <(echo "$all") <(echo "$svc") | grep -vx sched_setattr | tr '\n' ' ')
        denied_ok=$(comm -12 <(echo "$all") <(echo "$priv") | tr '\n' ' ')
        n=$(echo "$all" | wc -l)
        if echo "$all" | grep -qx sched_setattr && [ -z "$denied_ok" ] && [ -z "$extra" ] &&
                [ "$(hstatus Seccomp)" = 2 ]; then
                ok_say "SystemCallFilter=@system-service ~@privileged @resources +sched_setattr -> $n syscalls allowed, sched_setattr among them, none of the $(echo "$priv" | wc -l) others of @privileged/@resources, none outside @system-service; Seccomp: $(hstatus Seccomp), Seccomp_filters: $(hstatus Seccomp_filters)"
        else
                bad_say "SystemCallFilter -> sched_setattr $(echo "$all" | grep -cx sched_setattr); allowed from @privileged/@resources: $denied_ok; outside @system-service: $extra; Seccomp: $(hstatus Seccomp)"
        fi
}
hv_SystemCallErrorNumber() {
        local got
        got=$(show netpolld.service SystemCallErrorNumber)
        case "$1:$got" in EPERM:1 | EPERM:EPERM) ok_say "SystemCallErrorNumber=$1 -> systemctl show: $got" ;;
        *) bad_say "SystemCallErrorNumber=$1 -> systemctl show: $got" ;; esac
}
hv_SystemCallArchitectures() {
        show_is SystemCallArchitectures "$1" && [ "$(hstatus Seccomp)" = 2 ]
}
hv_RestrictAddressFamilies() { show_is RestrictAddressFamilies "$1"; }

check_hardening() {
        local ok=0 unit key val keys generic=
        ensure_active || { say "netpolld.service does not start"; return 1; }
        HPID=$(mainpid)
        is_pid "$HPID" || { say "netpolld.service does not run (MainPID '$HPID')"; return 1; }
        HOUT=$RUN/out/hardening
        mkdir -p "$HOUT"
        for f in status limits mountinfo cgroup personality; do
                box cat "/proc/$HPID/$f" >"$HOUT/proc-$f" 2>&1
        done
        box cat "/proc/$HPID/net/dev" >"$HOUT/proc-net-dev" 2>&1
        unit=$(show netpolld.service FragmentPath)
        say "the running daemon: pid $HPID; the unit: $unit"
        # Each key once, with its last value (SystemCallFilter= lines add up;
        # its reader knows that).
        keys=$(box awk '/^\[/ { s = $0; next } s == "[Service]" && /^[A-Za-z]+=/ {
                        k = substr($0, 1, index($0, "=") - 1); if (!(k in seen)) { seen[k] = 1; order[++n] = k } v[k] = substr($0, index($0, "=") + 1) }
                END { for (i = 1; i <= n; i++) print order[i] "=" v[order[i]] }' "$unit")
        while IFS= read -r kv; do
                key=${kv%%=*}
                val=${kv#*=}
                case " $LIFECYCLE_KEYS " in *" $key "*) continue ;; esac
                if declare -F "hv_$key" >/dev/null; then
                        "hv_$key" "$val" || ok=1
                elif box systemctl show -p "$key" netpolld.service | grep -q "^$key="; then
                        show_is "$key" "$val" || ok=1
                        generic="$generic $key"
                else
                        bad_say "$key=$val: systemd shows no such property and there is no reader for it"
                        ok=1
                fi
        done <<<"$keys"
        [ -z "$generic" ] || say "(read from systemctl show only:$generic)"
        return $ok
}
