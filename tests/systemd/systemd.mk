# The Debian package and the checks under a real systemd (included by the Makefile).
#
#   make check-systemd            install the build into a booted Debian 12 box
#                                 (systemd 252 as its PID 1) and check netpolld there
#   make check-systemd PKG=deb    the same with `make deb`'s packages, installed with
#                                 apt, then removed and purged
#   make deb                      netpolld, libnetpoll0 and libnetpoll-dev .debs in
#                                 build/deb/, built from a clean copy of the tree,
#                                 lintian-checked
#
# check-systemd needs root and systemd-box (SYSTEMD_BOX=, see below); where the
# machine cannot boot the box it says why and succeeds (SYSTEMD_BOX_REQUIRED=1 makes
# that a failure).  The box's root is built once (about a minute) into
# build/systemd-box/root.  tests/systemd/README.md has the details.

PKG         ?= install
# Beside the checkout, as in the workplace; else where this machine keeps it
# (a clone elsewhere, as CI makes one, still finds it).
SYSTEMD_BOX ?= $(firstword $(wildcard $(abspath ../shared/tools/systemd-box) \
                   /work/shared/tools/systemd-box) $(abspath ../shared/tools/systemd-box))
DEB_OUT     ?= $(abspath $(B))/deb

.PHONY: check-systemd deb

check-systemd:
	@MAKE='$(MAKE)' SYSTEMD_BOX='$(SYSTEMD_BOX)' SDB='$(abspath $(B))/systemd-box' \
	    BUILD_B='$(abspath $(B))/systemd-box/build' DEB_OUT='$(DEB_OUT)' \
	    tests/systemd/check.sh --mode '$(PKG)'

deb:
	@DEB_OUT='$(DEB_OUT)' tests/systemd/deb.sh
