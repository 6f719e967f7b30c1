#!/bin/bash
# A huge discard and a huge write-zeroes during a full backup session:
# copy-before-write preserves every cluster they cover, a bounded budget
# at a time (cbw_device_mb), never one buffer per cluster up front. The
# writes complete, the session stays active, copy buffers never exceed the
# budget, the kernel neither OOMs nor splats, and the view still reads the
# device as at the session's start.
#
# Sizes follow the scratch disks: with $BSYNC_DISK0 and $BSYNC_DISK1 of
# 4 GiB or more, a 3 GiB discard and a 512 MiB write-zeroes, as in
#   scripts/vm-run --mem 1024 --disk 4G --disk 4G -- selftests/run-guest bigio
# and with make check's 256 MiB disks, 128 MiB and 32 MiB.
. "$(dirname "$0")/lib.sh"

origin=${BSYNC_DISK0:?no scratch disk}
sdisk=${BSYNC_DISK1:?no second scratch disk}
dev=bt-bigio
view=bt-bigio-view
mnt=$(mktemp -d /tmp/bigio.XXXXXX)
MiB=$((1024 * 1024))

osize=$(blockdev --getsize64 "$origin")
ssize=$(blockdev --getsize64 "$sdisk")
if [ "$osize" -ge $((4096 * MiB)) ] && [ "$ssize" -ge $((4096 * MiB)) ]; then
	size=$((4096 * MiB)) dlen=$((3072 * MiB)) zlen=$((512 * MiB)) chunk=$((256 * MiB))
else
	size=$((256 * MiB)) dlen=$((128 * MiB)) zlen=$((32 * MiB)) chunk=$((32 * MiB))
fi
sectors=$((size / 512))
budget=$(cat /sys/module/dm_bsync/parameters/cbw_device_mb 2>/dev/null || echo 16)

splats() { dmesg | grep -cE 'BUG:|WARNING:|Oops|Call Trace:|Out of memory|invoked oom-killer'; }
field() { dm message $dev 0 session_status | tr ' ' '\n' | sed -n "s/^$1=//p"; }
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

cleanup() {
	[ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
	dm remove $view 2>/dev/null
	dm remove $dev 2>/dev/null
	[ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null
	loopdev=
	# The ended session releases the store, and the loop device its
	# file, a moment later: the disk must be free for the next test.
	for _ in $(seq 100); do
		umount "$mnt" 2>/dev/null && break
		mountpoint -q "$mnt" || break
		sleep 0.1
	done
	rmdir "$mnt" 2>/dev/null
	# Later tests use the disk raw; blkdiscard refuses one with a filesystem.
	mountpoint -q "$mnt" 2>/dev/null || wipefs -a -q "$sdisk" 2>/dev/null
}
trap cleanup EXIT

echo "# device $((size / MiB)) MiB, discard $((dlen / MiB)) MiB, write-zeroes $((zlen / MiB)) MiB," \
	"RAM $(($(meminfo MemTotal) / 1024)) MiB, budget $budget MiB"
before=$(splats)
modprobe loop 2>/dev/null
modprobe ext4 2>/dev/null
mkfs.ext4 -q -F -E nodiscard "$sdisk" && mount "$sdisk" "$mnt" &&
	truncate -s $((dlen + zlen + 64 * MiB)) "$mnt/store" &&
	loopdev=$(losetup -f --show "$mnt/store")
ok $? "store: a sparse file on ext4 on $loopdev"
bsync_create $dev "$origin" $sectors
ok $? "bsync device of $((size / MiB)) MiB"
dmaj=$(dm info -c --noheadings -o major,minor --separator : $dev)
[ "$(cat "/sys/dev/block/$dmaj/queue/discard_max_bytes")" -gt 0 ]
ok $? "the device takes discards"

# Data worth keeping: a random MiB at every chunk, in both ranges and after.
for ((off = 0; off < size; off += chunk)); do
	dd if=/dev/urandom of=/dev/mapper/$dev bs=1M count=1 seek=$((off / MiB)) \
		oflag=direct status=none || break
done
ok $? "data written"
# What the view must show: the 2 MiB at each chunk (its data and the
# discarded or zeroed MiB after it), not all of a 4 GiB device.
sums() { # DEVICE
	local off
	for ((off = 0; off < size; off += chunk)); do
		dd if="$1" bs=1M count=2 skip=$((off / MiB)) iflag=direct status=none | md5sum
	done | md5sum
}
sum_dev=$(sums /dev/mapper/$dev)

dm message $dev 0 session_start "$loopdev" 64k full -
ok $? "full session started"
echo "0 $sectors bsync-snap /dev/mapper/$dev" | dm create --readonly $view && dm mknodes $view
ok $? "view created"

# Lowest free and available memory, highest slab, while the big I/O runs.
(
	minfree=$(meminfo MemFree) minavail=$(meminfo MemAvailable) maxslab=$(meminfo Slab)
	while :; do
		f=$(meminfo MemFree) a=$(meminfo MemAvailable) s=$(meminfo Slab)
		[ "$f" -lt "$minfree" ] && minfree=$f
		[ "$a" -lt "$minavail" ] && minavail=$a
		[ "$s" -gt "$maxslab" ] && maxslab=$s
		echo "$minfree $minavail $maxslab" >/tmp/bigio-mem
		sleep 0.5
	done
) &
sampler=$!
free_before=$(meminfo MemFree)

t0=$(date +%s)
blkdiscard -o 0 -l $dlen /dev/mapper/$dev
ok $? "discard of $((dlen / MiB)) MiB during the session ($(($(date +%s) - t0)) s)"
t0=$(date +%s)
blkdiscard -z -o $dlen -l $zlen /dev/mapper/$dev
ok $? "write-zeroes of $((zlen / MiB)) MiB during the session ($(($(date +%s) - t0)) s)"
kill "$sampler"
sampler=

st=$(dm message $dev 0 session_status)
echo "# $st"
case $st in state=active*) ok 0 "session still active" ;; *) ok 1 "session still active" ;; esac
preserved=$(field preserved)
expect_eq $(((dlen + zlen) / 65536)) "$preserved" "every cluster the two covered was preserved"
peak=$(field copy_mem_peak)
[ -n "$peak" ] && [ "$peak" -le $((budget * MiB)) ]
ok $? "copy buffers peaked at $((${peak:-0} / 1024)) KiB, within the $budget MiB budget"
read -r minfree minavail maxslab </tmp/bigio-mem
echo "# memory: MemFree $((free_before / 1024)) MiB before, lowest $((minfree / 1024)) MiB;" \
	"lowest MemAvailable $((minavail / 1024)) MiB; highest Slab $((maxslab / 1024)) MiB"

sum_view=$(sums /dev/mapper/$view)
expect_eq "$sum_dev" "$sum_view" "the view reads the device as at the session's start"
dm message $dev 0 session_end
ok $? "session ended"
expect_eq "$before" "$(splats)" "no OOM, no kernel splat"
tap_done
