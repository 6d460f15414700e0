# The Python binding (python/netpoll, ctypes on libnetpoll.so.0): its unittest
# suite runs against the built daemon and library, the relay example included.
# Included by the top Makefile; `make check` runs it, `make check-python` alone.

PYTHON ?= python3

.PHONY: check-python
check: check-python

# deps first (as check's own recipe does), then the two files the tests use.
check-python: deps
	@command -v $(PYTHON) >/dev/null || { echo "check-python: no $(PYTHON); as root: apt-get install -y python3" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(B)/netpolld $(B)/$(SONAME)
	PYTHONDONTWRITEBYTECODE=1 NETPOLLD_BIN=$(abspath $(B))/netpolld NETPOLL_LIBRARY=$(abspath $(B))/$(SONAME) \
	    $(PYTHON) -X dev -B python/tests/test_netpoll.py -v
