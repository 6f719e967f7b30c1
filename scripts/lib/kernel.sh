# shellcheck shell=bash
# Pick the guest kernel: the newest version under /lib/modules that has a
# build/ tree and a matching /boot/vmlinuz-*. Never `uname -r`: the host runs
# a different kernel without module support. BSYNC_KVER overrides.
#
# PREEMPT_RT kernels (*-rt-*) are not in the matrix of bsync_kver and
# bsync_kvers (make check boots one guest per kernel and has no time for
# another): scripts/check-rt boots the one bsync_rt_kver returns, and make
# builds the module for it too (the Makefile's RT_KVER).

# Installed kernels with headers and an image, oldest first, RT ones too.
bsync_build_kvers() {
	local v

	for v in $(ls /lib/modules 2>/dev/null | sort -V); do
		[ -d "/lib/modules/$v/build" ] && [ -f "/boot/vmlinuz-$v" ] && echo "$v"
	done
}

bsync_kver() {
	local best

	if [ -n "${BSYNC_KVER:-}" ]; then
		echo "$BSYNC_KVER"
		return 0
	fi
	best=$(bsync_kvers | tail -n 1)
	if [ -z "$best" ]; then
		echo "no kernel with /lib/modules/VER/build and /boot/vmlinuz-VER; run scripts/setup" >&2
		return 1
	fi
	echo "$best"
}

# All installed guest kernels but the RT ones (oldest first), for running on each.
bsync_kvers() {
	bsync_build_kvers | grep -v -- '-rt-'
}

# The newest installed PREEMPT_RT kernel, or nothing (status 1).
bsync_rt_kver() {
	local v

	v=$(bsync_build_kvers | grep -- '-rt-' | tail -n 1)
	[ -n "$v" ] || return 1
	echo "$v"
}
