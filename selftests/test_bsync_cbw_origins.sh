#!/bin/bash
# Copy-before-write over origins that complete I/O in the submitter's own
# context: null_blk with irqmode=0 (completion inline, inside the plug
# flush) and brd (bio-based, completes in submit_bio). The store is a
# sparse file on a loop device, as bsyncd's default store. Under fio and dd
# writes, the view must read the data as at the session's start, and the
# kernel must log no splat (the store write was once submitted from the
# origin read's completion, inside the plug flush: an oops on 6.12 in
# null_queue_rq, a scheduling warning from wbt_wait on 6.1).
. "$(dirname "$0")/lib.sh"

size=$((64 * 1024 * 1024))
sectors=$((size / 512))
dev=bt-cbwo
view=bt-cbwo-view
tmp=$(mktemp -d /tmp/cbw-origins.XXXXXX)
secs=${BSYNC_CBW_SECS:-5}

splats() { dmesg | grep -cE 'BUG:|WARNING:|Oops|Call Trace:|scheduling while atomic'; }

cleanup() {
	pkill -x fio 2>/dev/null
	while pgrep -x fio >/dev/null; do sleep 0.1; done
	dm remove $view 2>/dev/null
	dm remove $dev 2>/dev/null
	[ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null
	loopdev=
	rm -f "$tmp/store"
}

# run_case NAME ORIGIN: fill, start a session, load, compare the view.
run_case() {
	local name=$1 origin=$2 before st preserved
	before=$(splats)
	truncate -s $((2 * size)) "$tmp/store"
	loopdev=$(losetup -f --show "$tmp/store")
	ok $? "$name: store on $loopdev"
	bsync_create $dev "$origin" $sectors
	ok $? "$name: bsync on $origin"
	head -c $size /dev/urandom >"$tmp/img"
	dd if="$tmp/img" of=/dev/mapper/$dev bs=1M oflag=direct status=none
	ok $? "$name: device filled"
	dm message $dev 0 session_start "$loopdev" 64k full -
	ok $? "$name: session started"
	echo "0 $sectors bsync-snap /dev/mapper/$dev" | dm create --readonly $view && dm mknodes $view
	ok $? "$name: view created"

	# Discards too over null_blk. Not over brd: 6.12's takes them, but a
	# discard racing a write to the same page can hit its BUG_ON in
	# copy_to_brd (seen on 6.12.118, in brd's own submit path).
	trim=()
	[ "$name" != brd ] && trim=(--name=t --rw=randtrim --bsrange=64k-1m --iodepth=2)
	fio --ioengine=libaio --direct=1 --time_based --runtime="$secs" \
		--filename=/dev/mapper/$dev --randrepeat=0 \
		--name=w --rw=randwrite --bsrange=4k-1m --iodepth=16 \
		--name=s --rw=write --bs=64k --iodepth=4 "${trim[@]}" >"$tmp/fio.out" 2>&1 &
	# Buffered dd as well: writeback plugs and merges.
	dd if=/dev/urandom of=/dev/mapper/$dev bs=1M count=16 seek=24 conv=fsync status=none
	ok $? "$name: dd writes during the session"
	wait
	grep -q 'err= 0' "$tmp/fio.out" && ! grep -q 'err=[1-9]' "$tmp/fio.out"
	ok $? "$name: fio writes succeeded"

	st=$(dm message $dev 0 session_status)
	case $st in state=active*) ok 0 "$name: session active" ;;
	*) ok 1 "$name: session active ($st)" ;; esac
	preserved=$(echo "$st" | sed -n 's/.*preserved=\([0-9]*\).*/\1/p')
	[ "${preserved:-0}" -gt 0 ]
	ok $? "$name: copy-before-write preserved $preserved clusters"
	dd if=/dev/mapper/$view bs=1M iflag=direct status=none | cmp -s - "$tmp/img"
	ok $? "$name: the view reads the data as at the session's start"
	dm message $dev 0 session_end
	ok $? "$name: session ended"
	expect_eq "$before" "$(splats)" "$name: no kernel splat"
	cleanup
}

trap cleanup EXIT

modprobe loop 2>/dev/null
if modprobe null_blk nr_devices=1 queue_mode=2 irqmode=0 memory_backed=1 discard=1 gb=1 bs=4096; then
	udevadm settle 2>/dev/null
	run_case null_blk-irqmode0 /dev/nullb0
	rmmod null_blk
else
	skip "null_blk not available"
fi

if modprobe brd rd_nr=1 rd_size=$((size / 1024)); then
	run_case brd /dev/ram0
	rmmod brd
else
	skip "brd not available"
fi

rm -rf "$tmp"
tap_done
