# shellcheck shell=bash
# Pick the guest kernel: the newest version under /lib/modules that has a
# build/ tree and a matching /boot/vmlinuz-*. Never `uname -r`: the host runs
# a different kernel without module support. BSYNC_KVER overrides.

bsync_kver() {
	local v best=""

	if [ -n "${BSYNC_KVER:-}" ]; then
		echo "$BSYNC_KVER"
		return 0
	fi
	for v in $(ls /lib/modules 2>/dev/null | sort -V); do
		[ -d "/lib/modules/$v/build" ] && [ -f "/boot/vmlinuz-$v" ] && best=$v
	done
	if [ -z "$best" ]; then
		echo "no kernel with /lib/modules/VER/build and /boot/vmlinuz-VER; run scripts/setup" >&2
		return 1
	fi
	echo "$best"
}

# All installed guest kernels (oldest first), for running on each.
bsync_kvers() {
	local v

	for v in $(ls /lib/modules 2>/dev/null | sort -V); do
		[ -d "/lib/modules/$v/build" ] && [ -f "/boot/vmlinuz-$v" ] && echo "$v"
	done
}
