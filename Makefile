# dm-bsync: top-level build.
#
#   make              the module for every installed Debian kernel, and the userspace
#                     programs: what runs on a host (the tests are built by the check targets)
#   make check        lint, host unit tests (ASan/UBSan) and guest selftests
#   make check-packages  the Debian packages (debian/), built and then installed, upgraded
#                     and purged in a clean guest per kernel, the module built there by DKMS
#   make check-vmhost the VM host end to end: an inner VM on a bsync device over
#                     virtio-scsi and vhost-scsi, backed up across a QEMU crash and
#                     a host reboot, on every kernel (.ci/run runs it after make check)
#   make check-debug  guest selftests on a KASAN/lockdep kernel built from linux-source-6.1,
#                     after checking it catches two planted bugs (scripts/debug-canaries)
#   make bench        benchmarks in one deterministic guest boot (results in out/)
#   make crash-test   persistent bitmaps across 20 SIGKILLed guests (KILLS=N)
#   make soak         the long repetitions kept out of make check (fio: 20 backups)
#   make lint         checkpatch --strict on kernel sources, cppcheck on userspace,
#                     systemd-analyze verify on the units
#   make deps         install every package (same as scripts/setup)
#   make check-rt     copy-before-write and concurrency selftests on the PREEMPT_RT kernel
#
# KDIR=/path/to/kernel/build overrides the kernel tree.

TOP   := $(CURDIR)
KVER  ?= $(shell . scripts/lib/kernel.sh && bsync_kver)
KDIR  ?= /lib/modules/$(KVER)/build
KSRC_TAR ?= $(firstword $(wildcard /usr/src/linux-source-6.1.tar.xz))
TOOLS := build/ksrc

.PHONY: all module modules-all userspace selftests test-build check check-unit check-guest check-debug \
	check-vmhost bench crash-test soak lint deps clean tools

all: modules-all userspace

# What the guest tests run: the product and the selftests (which need
# linux-source-6.1's harness, installed by scripts/setup).
test-build: all selftests

# Each kernel gets its own build directory (build/kmod/VER), so the module
# can be built for every installed kernel and tested on each.
KVERS ?= $(shell . scripts/lib/kernel.sh && bsync_kvers)
module:
	scripts/build-module $(KDIR) build/kmod/$(notdir $(patsubst %/build,%,$(KDIR)))

# The PREEMPT_RT kernel is built for too (a break there fails make), though
# only check-rt boots it: bsync_kvers leaves it out of make check's matrix,
# and make check leaves its build to check-rt.
RT_KVER ?= $(shell . scripts/lib/kernel.sh && bsync_rt_kver)
modules-all:
	@for v in $(KVERS) $(RT_KVER); do scripts/build-module /lib/modules/$$v/build build/kmod/$$v || exit 1; done

userspace:
	$(MAKE) -C userspace progs

# kselftest_harness.h and checkpatch.pl come from linux-source-6.1.
tools: $(TOOLS)/.stamp
$(TOOLS)/.stamp: $(KSRC_TAR)
	@test -n "$(KSRC_TAR)" || { echo "linux-source-6.1 missing: run scripts/setup" >&2; exit 1; }
	rm -rf $(TOOLS) && mkdir -p $(TOOLS)
	tar -C $(TOOLS) --strip-components=1 -xJf $(KSRC_TAR) \
		--wildcards '*/tools/testing/selftests/kselftest_harness.h' \
		'*/tools/testing/selftests/kselftest.h' '*/scripts/checkpatch.pl' \
		'*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch'
	touch $@

selftests: tools userspace
	$(MAKE) -C selftests KSFT_DIR=$(TOP)/$(TOOLS)/tools/testing/selftests

# Only what the guests need is built before they boot, a job per core; lint
# and the unit tests' sanitizer build run in run-tests' host lane beside
# the guests, which leave part of the cores idle. The PREEMPT_RT module is
# left to check-rt, the lane that boots it.
JOBS ?= $(shell nproc)
check:
	$(MAKE) -j$(JOBS) test-build RT_KVER=
	scripts/run-tests

.PHONY: unit-build
unit-build:
	$(MAKE) -C userspace tests

# Nested VMs under TCG: about 17 minutes, beyond make check's budget.
check-vmhost: test-build
	scripts/check-vmhost

check-unit: userspace
	scripts/run-tests --unit-only

check-guest: test-build
	scripts/run-tests --guest-only

# The canaries first: a lane that cannot see a planted use-after-free and
# lock inversion proves nothing by passing.
check-debug: selftests
	scripts/debug-kernel
	scripts/debug-canaries
	scripts/run-tests --guest-only --debug-kernel

# Debian's 6.12 PREEMPT_RT kernel, two vCPUs under single-threaded TCG:
# the selftests of completion context, preemption and the write gate.
.PHONY: check-rt
check-rt: test-build
	scripts/check-rt

# The Debian packages, built, then installed, upgraded during a running
# backup and purged in a clean guest per kernel, DKMS compiling the module
# there once (at the install: 2-3 minutes under TCG; the upgrade's postinst
# loads it prebuilt from DKMS's tarball). About 9 minutes on a quiet host;
# .ci/run runs it.
# scripts/check-packages --help: --host-only, --guest-only, --upgrade-build.
.PHONY: check-packages
check-packages:
	scripts/check-packages

bench: test-build
	scripts/bench

# Soak-style repetitions kept out of make check: twenty incremental backups
# under fio on each kernel (make check runs four).
soak: test-build
	for kv in $$(. scripts/lib/kernel.sh && bsync_kvers); do \
		scripts/vm-run --kernel $$kv --disk 256M --disk 256M --timeout 3600 \
			--env FIO_STEPS=20 --env BSYNC_TEST_TIMEOUT=3000 --out out/soak/$$kv \
			-- selftests/run-guest test_bsyncd_fio || exit 1; \
	done

# Crash safety of persistent bitmaps: 20 guests SIGKILLed at random moments.
crash-test: test-build
	scripts/crash-test --kills $(or $(KILLS),20)

lint: tools
	perl $(TOOLS)/scripts/checkpatch.pl --strict --no-tree --terse --show-types \
		-f dm-bsync/*.c dm-bsync/*.h
	$(MAKE) -C userspace lint
	@# The documentation, as strict as debian/rules' rst2man --strict (a warning
	@# fails the package build), after a canary: a short title underline must fail.
	@! printf 'Title here\n===\n\ntext\n' | rst2html --strict - >/dev/null 2>&1 || \
		{ echo "lint: rst2html --strict passed a broken document" >&2; exit 1; }
	@for f in Documentation/*.rst Documentation/admin-guide/device-mapper/*.rst; do \
		rst2html --strict $$f >/dev/null || { echo "lint: $$f" >&2; exit 1; }; \
	done
	@# The systemd units, ExecStart pointed at /bin/true (lint needs no build); any message fails.
	@d=$$(mktemp -d) && for u in bsyncd bsync-activate; do \
		sed 's|^\(ExecStart=\)/usr/local/s*bin/[a-z-]*|\1/bin/true|' scripts/$$u.service >$$d/$$u.service; \
	done && out=$$(systemd-analyze verify $$d/bsyncd.service $$d/bsync-activate.service 2>&1); \
	st=$$?; rm -rf $$d; [ $$st = 0 ] && [ -z "$$out" ] || \
		{ echo "$$out"; echo "lint: systemd-analyze verify of scripts/*.service failed" >&2; exit 1; }

deps:
	scripts/setup

clean:
	$(MAKE) -C userspace clean
	$(MAKE) -C selftests clean
	rm -rf build out

# make install [PREFIX=/usr/local] [DESTDIR=] [UNITDIR=...]: the module for
# every kernel built under build/kmod (to /lib/modules/<kver>/extra), bsyncd,
# bsyncctl and bsync-metadata, the systemd units (bsyncd, bsync-activate), the
# modules-load.d list (dm_mod, loop, dm-bsync), an example /etc/bsynctab if
# there is none, bash completion and the documentation.
# Build first (`make`); run as root, or give DESTDIR to stage a package.
# install-module and install-userspace are its two halves; the Debian
# packages (debian/rules) install the second and build the module by DKMS.
PREFIX  ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/dm-bsync
MODLOADDIR ?= $(PREFIX)/lib/modules-load.d
.PHONY: install install-module install-userspace
install: install-module install-userspace

install-module:
	@ls build/kmod/*/dm-bsync.ko >/dev/null 2>&1 || \
		{ echo "install: no module under build/kmod: run make first" >&2; exit 1; }
	@set -e; for ko in build/kmod/*/dm-bsync.ko; do \
		v=$$(basename $$(dirname $$ko)); \
		echo "install -D -m 0644 $$ko $(DESTDIR)/lib/modules/$$v/extra/dm-bsync.ko"; \
		install -D -m 0644 $$ko $(DESTDIR)/lib/modules/$$v/extra/dm-bsync.ko; \
		if [ -z "$(DESTDIR)" ]; then depmod -a $$v; fi; \
	done

# The units name the programs and the documentation under /usr/local:
# rewritten to DOCDIR, then to PREFIX.
UNIT_SED := s|/usr/local/share/doc/dm-bsync|$(DOCDIR)|g; s|/usr/local|$(PREFIX)|g
install-userspace:
	@for f in userspace/build/bsyncd userspace/build/bsyncctl userspace/build/bsync-metadata; do \
		test -x $$f || { echo "install: $$f is missing: run make first" >&2; exit 1; }; \
	done
	install -D -m 0755 userspace/build/bsyncd $(DESTDIR)$(PREFIX)/sbin/bsyncd
	install -D -m 0755 userspace/build/bsyncctl $(DESTDIR)$(PREFIX)/bin/bsyncctl
	install -D -m 0755 userspace/build/bsync-metadata $(DESTDIR)$(PREFIX)/sbin/bsync-metadata
	mkdir -p build
	sed '$(UNIT_SED)' scripts/bsyncd.service > build/bsyncd.service
	install -D -m 0644 build/bsyncd.service $(DESTDIR)$(UNITDIR)/bsyncd.service
	sed '$(UNIT_SED)' scripts/bsync-activate.service > build/bsync-activate.service
	install -D -m 0644 build/bsync-activate.service $(DESTDIR)$(UNITDIR)/bsync-activate.service
	install -D -m 0644 scripts/modules-load.conf $(DESTDIR)$(MODLOADDIR)/dm-bsync.conf
	@# The example /etc/bsynctab (comments only), never over one that exists.
	@if [ -e $(DESTDIR)/etc/bsynctab ]; then echo "keeping $(DESTDIR)/etc/bsynctab"; else \
		echo "install -D -m 0644 scripts/bsynctab.example $(DESTDIR)/etc/bsynctab"; \
		install -D -m 0644 scripts/bsynctab.example $(DESTDIR)/etc/bsynctab; fi
	install -D -m 0644 scripts/bash-completion/bsyncctl \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/bsyncctl
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 README.md $(wildcard Documentation/*.rst) \
		Documentation/admin-guide/device-mapper/bsync.rst $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
		echo "systemctl daemon-reload"; systemctl daemon-reload; \
	fi
