# shellcheck shell=bash
# The VM host's side of the nested tests: start an inner VM (selftests/vmhost/
# inner-init) on a bsync device over QEMU's virtio-scsi (scsi-hd) or over
# vhost-scsi (an LIO block backstore: QEMU never sees the I/O), talk to it a
# command a line, and check a restored backup against what the inner VM had
# synced. Source after selftests/lib.sh.

VMH_DIR=${VMH_DIR:-/tmp/vmhost}
# The inner VM's kernel: check-vmhost gives the oldest installed kernel to
# every VM host. It is the VM's own, not the one under test (the host's),
# and Debian's 6.12 booted as an inner VM under nested TCG died in its early
# code patching (a #GP at text_poke_early's iretq) in 3 of 8 boots, 6.1 in
# none of 6.
VMH_KVER=${VMH_INNER_KVER:-$(uname -r)}
VMH_WWPN=naa.5001405bd0000001
# Boot time under nested TCG: no mitigations to patch in, no TSC checks, no
# crypto self-tests (together about a third of the inner boot).
VMH_APPEND="mitigations=off tsc=reliable no_timer_check rcupdate.rcu_expedited=1 cryptomgr.notests"
inner_pid=
mkdir -p "$VMH_DIR"
export PATH=$BSYNC_TOP/userspace/build:$PATH
lsmod | grep -q '^dm_bsync ' || insmod "$BSYNC_TOP/build/kmod/$(uname -r)/dm-bsync.ko" ||
	echo "not ok - load dm-bsync"
modprobe -q loop
modprobe -q ext4

# bsync_stable_name DEV: the /dev/disk/by-id name udev gives a QEMU SCSI disk
# (made here: the test guest runs no udev), the kind of name /etc/bsynctab wants.
bsync_stable_name() {
	local blk serial
	blk=$(basename "$1")
	serial=$(tail -c +5 "/sys/block/$blk/device/vpd_pg80" | tr -dc 'A-Za-z0-9_.-')
	mkdir -p /dev/disk/by-id
	ln -sfn "../../$blk" "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_$serial"
	echo "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_$serial"
}

# vmh_host: this guest as the VM host. $BSYNC_DISK0 is the VM's disk (the
# origin), $BSYNC_DISK1 the bitmaps' metadata device, $BSYNC_DISK2 the
# backup store (ext4, mounted at $bk); the guide's example names map to them.
vmh_host() {
	# shellcheck disable=SC2034 # store: the boot scripts mount it
	origin=${BSYNC_DISK0:?} meta=${BSYNC_DISK1:?} store=${BSYNC_DISK2:?}
	bk=/srv/backup
	vmh_names[/dev/disk/by-id/wwn-0x5000c500a1b2c3d4]=$(bsync_stable_name "$origin")
	vmh_names[/dev/vg0/vm1-bsync]=$(bsync_stable_name "$meta")
	trap vmh_cleanup EXIT
}

vmh_cleanup() {
	[ -n "$inner_pid" ] && inner_kill
	lio_vhost_del 2>/dev/null
	[ -n "${holder:-}" ] && kill -9 "$holder" 2>/dev/null
	umount "$bk" 2>/dev/null
	[ -n "${bsyncd_pid:-}" ] && kill "$bsyncd_pid" 2>/dev/null && wait "$bsyncd_pid"
}

# vmh_bsyncd: start bsyncd where bsyncctl looks for it, as its unit does;
# status 0 once it answers. Its copy-before-write store is on tmpfs: this
# guest's /var is an overlay on 9p, which bsyncd refuses (it cannot tell
# that it is not on the protected disk).
vmh_bsyncd() {
	local i
	mkdir -p /run/bsyncd /var/lib/bsyncd && mount -t tmpfs tmpfs /var/lib/bsyncd || return 1
	bsyncd --socket /run/bsyncd/bsyncd.sock --store-dir /var/lib/bsyncd 2>>"$VMH_DIR/bsyncd.log" &
	bsyncd_pid=$!
	for ((i = 0; i < 100; i++)); do
		bsyncctl device list >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# The inner VM's kernel and initramfs (selftests/vmhost/mkinner), made once
# in VMH_CACHE (check-vmhost makes them on the host, outside TCG).
VMH_CACHE=${VMH_CACHE:-$VMH_DIR}
inner_files() {
	[ -f "$VMH_CACHE/inner-$VMH_KVER.cpio.gz" ] ||
		"$(dirname "${BASH_SOURCE[0]}")/mkinner" "$VMH_KVER" "$VMH_CACHE" ${BSYNC_MODDIR:+"$BSYNC_MODDIR"} >&2 ||
		return 1
	if [ -f "$VMH_CACHE/vmlinux-$VMH_KVER" ]; then
		echo "$VMH_CACHE/vmlinux-$VMH_KVER $VMH_CACHE/inner-$VMH_KVER.cpio.gz"
	else
		echo "/boot/vmlinuz-$VMH_KVER $VMH_CACHE/inner-$VMH_KVER.cpio.gz"
	fi
}

# Documentation/vm-host-guide.rst, run: the literal block after each
# ".. vmhost-test: NAME" comment, with the guide's disk names turned into
# this guest's (vmh_subst).
VMH_GUIDE=$BSYNC_TOP/Documentation/vm-host-guide.rst
declare -A vmh_names=()

# guide_block NAME: the block's lines, unindented.
guide_block() {
	awk -v name="$1" '
		$0 == ".. vmhost-test: " name { on = 1; next }
		!on { next }
		/^::$/ || /^$/ { if (started && /^$/) blank = 1; next }
		/^    / { if (blank && started) exit; started = 1; print substr($0, 5); next }
		started { exit }
	' "$VMH_GUIDE" | vmh_subst
}

vmh_subst() {
	local line k
	while IFS= read -r line; do
		for k in "${!vmh_names[@]}"; do line=${line//"$k"/"${vmh_names[$k]}"}; done
		printf '%s\n' "$line"
	done
}

# guide_cmds NAME: its "# " command lines (continuations joined), one a line.
guide_cmds() {
	guide_block "$1" | awk '
		cont { cmd = cmd " " $0; sub(/^ +/, "", $0) }
		!cont && /^# / { cmd = substr($0, 3) }
		!cont && !/^# / { next }
		{ if (cmd ~ /\\$/) { sub(/ *\\$/, "", cmd); cont = 1 } else { print cmd; cont = 0 } }
	' | sed 's/   */ /g'
}

# guide_qemu NAME: the disk options of the guide's QEMU command line (what
# follows "[...]").
guide_qemu() { guide_cmds "$1" | sed -n 's/^qemu-system-x86_64 .*\[\.\.\.\] //p'; }

# inner_qemu_args MODE: how the inner VM gets its disk, as the guide says:
# scsi-hd (QEMU's virtio-scsi on /dev/mapper/vm1) or vhost-scsi (the LIO
# target of the guide's "lio" block).
inner_qemu_args() { guide_qemu "qemu-$1"; }

# inner_start MODE TAG: boot the inner VM (its console in
# $VMH_DIR/TAG.console, its QMP at $VMH_DIR/TAG.qmp) and wait for "ready".
# -cpu qemu64: few CPU features, so little code for the kernel to patch at
# boot. A boot whose kernel panics before init runs (seen under nested TCG in
# the kernel's early code patching, text_poke_early, long before any disk is
# touched) is logged and tried once more.
inner_start() {
	local mode=$1 tag=$2 try
	for try in 1 2; do
		inner_boot "$mode" "$tag" && return 0
		grep -q 'Kernel panic' "$VMH_DIR/$tag.console" 2>/dev/null &&
			! grep -q 'inner-init: start' "$VMH_DIR/$tag.console" || return 1
		echo "# inner VM $tag: the kernel panicked before init (attempt $try):"
		grep -m 3 -E 'RIP:|BUG|Oops|panic' "$VMH_DIR/$tag.console" | sed 's/^/#   /'
		inner_kill
	done
	return 1
}

inner_boot() {
	local mode=$1 tag=$2 files t0=$SECONDS
	files=$(inner_files) || return 1
	# shellcheck disable=SC2086 # two paths
	set -- "$mode" "$tag" $files
	rm -f "$VMH_DIR/$tag".{ctl.in,ctl.out,console,qmp,qemu.log}
	mkfifo "$VMH_DIR/$tag.ctl.in" "$VMH_DIR/$tag.ctl.out"
	# shellcheck disable=SC2046
	qemu-system-x86_64 -accel tcg -M pc -cpu qemu64 -smp 1 -m 256 -nodefaults -no-user-config \
		-display none -no-reboot -kernel "$3" -initrd "$4" \
		-append "console=ttyS0 rdinit=/init panic=-1 quiet $VMH_APPEND" \
		-serial "file:$VMH_DIR/$tag.console" -serial "pipe:$VMH_DIR/$tag.ctl" \
		-qmp "unix:$VMH_DIR/$tag.qmp,server=on,wait=off" \
		$(inner_qemu_args "$mode") >"$VMH_DIR/$tag.qemu.log" 2>&1 &
	inner_pid=$!
	exec 7<>"$VMH_DIR/$tag.ctl.in" 8<>"$VMH_DIR/$tag.ctl.out"
	inner_read "${VMH_BOOT_TIMEOUT:-900}" || {
		echo "# inner VM $tag did not come up; QEMU said:"
		sed 's/^/#   /' "$VMH_DIR/$tag.qemu.log"
		tail -n 20 "$VMH_DIR/$tag.console" | sed 's/^/#   /'
		return 1
	}
	case $REPLY in ready*) ;; *) echo "# inner VM $tag: $REPLY"; return 1 ;; esac
	echo "# inner VM $tag up in $((SECONDS - t0)) s: $REPLY"
}

# inner_read TIMEOUT: the next line from the inner VM into REPLY.
inner_read() {
	local t part=
	# The serial port delivers a line in pieces: a read that times out
	# leaves what it had in REPLY.
	for ((t = 0; t < $1; t++)); do
		if read -r -t 1 -u 8; then
			REPLY=$part$REPLY
			return 0
		fi
		part+=$REPLY
		kill -0 "$inner_pid" 2>/dev/null || break
	done
	REPLY=$part
	return 1
}

# inner CMD ARGS...: one command; its answer (without "ok ") in REPLY, status 0 if ok.
inner() {
	echo "$*" >&7
	inner_read "${VMH_CMD_TIMEOUT:-300}" || { REPLY="no answer to '$*'"; return 1; }
	case $REPLY in
	"ok "*) REPLY=${REPLY#ok }; return 0 ;;
	*) return 1 ;;
	esac
}

# inner_write NAME MIB: write, and record NAME's checksum in synced[NAME].
declare -A synced=()
inner_write() {
	inner write "$1" "$2" || return 1
	# shellcheck disable=SC2086 # "write NAME SHA"
	set -- $REPLY
	synced[$2]=$3
}

inner_rm() { inner rm "$1" && unset "synced[$1]"; }

inner_kill() {
	kill -9 "$inner_pid" 2>/dev/null
	wait "$inner_pid" 2>/dev/null
	inner_pid=
	exec 7>&- 8<&-
}

# inner_poweroff: clean power-off; status 0 if QEMU exited by itself.
inner_poweroff() {
	local i
	inner poweroff || return 1
	for ((i = 0; i < 600; i++)); do
		kill -0 "$inner_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$inner_pid" 2>/dev/null && { inner_kill; return 1; }
	wait "$inner_pid" 2>/dev/null
	inner_pid=
	exec 7>&- 8<&-
}

# inner_qmp TAG JSON: one command to the inner QEMU's own QMP monitor.
inner_qmp() { qmp-exec "$VMH_DIR/$1.qmp" "$2"; }

# snapshot_expect: "NAME SHA" lines of what the inner VM had synced, now.
snapshot_expect() {
	local f
	for f in "${!synced[@]}"; do echo "$f ${synced[$f]}"; done | sort
}

# dm_discards DEV: discard requests completed by /dev/mapper/DEV so far.
dm_discards() {
	local mm
	mm=$(stat -L -c '%t %T' "/dev/mapper/$1") || return 1
	# shellcheck disable=SC2086 # "MAJOR MINOR" in hex
	set -- $mm
	awk '{ print $12 }' "/sys/dev/block/$((16#$1)):$((16#$2))/stat"
}

# backup_start LABEL IMAGE ARGS...: start a backup of vm1 and hold it
# paused, so that what the VM writes next falls inside its session for sure
# (a small one could end while the VM is still writing); backup_finish
# LABEL checks it was still there, lets it run out and dismisses it.
backup_start() {
	local label=$1
	shift
	# (slow until paused: it cannot end in the moment before the pause)
	bsyncctl backup vm1 "$@" --speed 1M --no-auto-dismiss >/dev/null && bsyncctl job pause vm1
	ok $? "$label started and paused"
}

backup_finish() {
	local st
	st=$(bsyncctl --json job list 2>/dev/null | jq -r '.[0].status')
	# (paused, or running up to its next pause point: not concluded)
	case $st in running | paused) st=on ;; esac
	expect_eq on "$st" "$1: its session was still on after the VM's writes"
	qmp-exec /run/bsyncd/bsyncd.sock \
		'{"execute": "block-job-set-speed", "arguments": {"device": "vm1", "speed": 0}}' |
		jq -e 'has("return")' >/dev/null && bsyncctl job resume vm1 &&
		bsyncctl job wait vm1 >/dev/null
	ok $? "$1 succeeds"
	bsyncctl job dismiss vm1
}

# inner_discards WHAT REACHED CMD...: an inner command that discards (its
# "ok" says WHAT), then that its discards reached vm1 (said by REACHED).
inner_discards() {
	local what=$1 reached=$2 d0 d1
	shift 2
	d0=$(dm_discards vm1)
	inner "$@"
	ok $? "$what: $REPLY"
	d1=$(dm_discards vm1)
	[ "$d1" -gt "$d0" ]
	ok $? "$reached ($d0 -> $d1 discard requests)"
}

# LIO: the guide's configfs commands (its "lio" block), in one shell.
LIO=/sys/kernel/config/target
lio_vhost_add() {
	# systemd mounts configfs on a host (sys-kernel-config.mount); not here.
	modprobe -q target_core_mod || return 1
	grep -q ' /sys/kernel/config ' /proc/mounts || mount -t configfs configfs /sys/kernel/config
	guide_cmds lio | (set -e; while IFS= read -r c; do eval "$c"; done)
}

lio_vhost_del() {
	local so=$LIO/core/iblock_0/vm1 tpg=$LIO/vhost/$VMH_WWPN/tpgt_1
	rm -f "$tpg/lun/lun_0/vm1"
	rmdir "$tpg/lun/lun_0" "$tpg" "$LIO/vhost/$VMH_WWPN" "$so" "$LIO/core/iblock_0" 2>/dev/null
	[ ! -e "$so" ]
}

# verify_point IMAGE EXPECT-FILE LABEL: restore the chain whose tip is IMAGE
# with qemu-img into a raw file, replay the journal as a mount would (the
# image is crash-consistent: the instant fell while the file system ran),
# then "e2fsck -fn" must be clean and every "NAME SHA" of EXPECT-FILE (what
# the inner VM had synced before the backup's instant) must be there with
# that checksum, and no other file.
verify_point() {
	local img=$1 want=$2 label=$3 raw=$VMH_DIR/restore.raw mnt=$VMH_DIR/mnt have
	rm -f "$raw"
	qemu-img convert -O raw "$img" "$raw"
	ok $? "$label: qemu-img restores the chain ending in $(basename "$img")"
	e2fsck -E journal_only -y "$raw" >/dev/null 2>&1
	e2fsck -fn "$raw" >"$VMH_DIR/fsck.log" 2>&1
	local st=$?
	[ $st -eq 0 ] || sed 's/^/#   /' "$VMH_DIR/fsck.log"
	ok $st "$label: e2fsck -fn of the restored file system is clean"
	mkdir -p "$mnt"
	mount -o ro,loop "$raw" "$mnt" || { ok 1 "$label: mount the restored file system"; return; }
	have=$(cd "$mnt" && for f in *; do
		[ -f "$f" ] && echo "$f $(sha256sum "$f" | cut -d' ' -f1)"
	done | sort)
	umount "$mnt"
	rm -f "$raw"
	echo "$have" >"$VMH_DIR/have"
	if cmp -s "$VMH_DIR/have" "$want"; then
		ok 0 "$label: every file synced before the instant, with its checksum, and no other ($(wc -l <"$want") files)"
	else
		diff "$VMH_DIR/have" "$want" | sed 's/^/#   /'
		ok 1 "$label: the restored files are those synced before the instant"
	fi
}
