#!/bin/bash
# tests/systemd/root.sh SYSTEMD_BOX DIR: make DIR/root, the cached Debian 12 root
# the box boots (debootstrap minbase + systemd + dbus, by systemd-box build),
# with the .debs of the packages netpolld needs at run time downloaded into its
# apt cache but not installed: `make install` runs install them from there,
# `PKG=deb` runs let apt pull them in through the package's Depends, both
# without the network.
#
# Reused while DIR/root.stamp says the same recipe made it; built into
# DIR/root.new and renamed when complete, so an interrupted build is never
# taken for a cache.  Every mount of the build (debootstrap's, the tool's binds
# of /proc and /dev) happens in a private mount namespace: a `make clean`
# during a build removes files, never the host's /dev through a bind.
#
# Exit 0 ready, 77 the machine cannot build it (no debootstrap to be had, the
# mirror unreachable), 1 anything else.
set -u
box=${1:?SYSTEMD_BOX}
dir=${2:?DIR}

# What the checks need in the box beyond the base system: the runtime
# libraries, procps (/bin/kill, the unit's ExecReload=), libprotobuf-c-dev and
# libsystemd-dev (libnetpoll-dev's Depends: the .pc's Requires.private), and
# pkg-config (the deb-installed check reads libnetpoll.pc through it).
CACHED_DEBS="libprotobuf-c1 libinih1 libsystemd0 procps libprotobuf-c-dev libsystemd-dev pkg-config"
recipe="bookworm minbase+systemd,dbus (systemd-box build); apt cache: $CACHED_DEBS; v2"

if [ -d "$dir/root" ] && [ "$(cat "$dir/root.stamp" 2>/dev/null)" = "$recipe" ]; then
        exit 0
fi

network_error() {
        grep -qiE 'Failed getting release file|Temporary failure resolving|Could not resolve|Failed to fetch|Couldn.t download|Connection (failed|refused|timed out)|Network is unreachable|Unable to connect' "$@" 2>/dev/null
}

if ! command -v debootstrap >/dev/null; then
        echo "check-systemd: installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >"$dir/debootstrap-install.log" 2>&1 ||
                { apt-get update -qq >>"$dir/debootstrap-install.log" 2>&1 &&
                  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >>"$dir/debootstrap-install.log" 2>&1; }
        if ! command -v debootstrap >/dev/null; then
                echo "check-systemd: no debootstrap, and apt-get could not install it (see $dir/debootstrap-install.log)" >&2
                exit 77
        fi
fi

echo "check-systemd: building the box root (debootstrap bookworm, about a minute; cached in $dir/root)"
rm -rf "$dir/root" "$dir/root.stamp" "$dir/root.new" "$dir/root.new.log"
t0=$(date +%s)
if ! unshare --mount --propagation private "$box" build "$dir/root.new" >"$dir/root.build.log" 2>&1; then
        if network_error "$dir/root.new.log" "$dir/root.build.log"; then
                echo "check-systemd: the Debian mirror is unreachable (see $dir/root.new.log)" >&2
                rm -rf "$dir/root.new"
                exit 77
        fi
        echo "check-systemd: systemd-box build failed; see $dir/root.build.log and $dir/root.new.log" >&2
        tail -n 5 "$dir/root.build.log" "$dir/root.new.log" >&2
        exit 1
fi
# shellcheck disable=SC2016
if ! unshare --mount --propagation private sh -c '
        mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
        chroot "$1" apt-get install -y -qq --download-only $2' sh "$dir/root.new" "$CACHED_DEBS" \
        >>"$dir/root.build.log" 2>&1; then
        if network_error "$dir/root.build.log"; then
                echo "check-systemd: the Debian mirror is unreachable (see $dir/root.build.log)" >&2
                rm -rf "$dir/root.new"
                exit 77
        fi
        echo "check-systemd: downloading $CACHED_DEBS into the box root failed; see $dir/root.build.log" >&2
        exit 1
fi
mv "$dir/root.new" "$dir/root"
mv "$dir/root.new.log" "$dir/root.debootstrap.log" 2>/dev/null
echo "$recipe" >"$dir/root.stamp"
echo "check-systemd: box root built in $(($(date +%s) - t0)) s ($(du -sh "$dir/root" | cut -f1))"
