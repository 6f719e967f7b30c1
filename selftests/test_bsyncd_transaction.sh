#!/bin/bash
# bsyncd's QMP transaction over two bsync devices: iotest 124's transaction
# cases in our own code (bitmap add + full backup in one transaction; an
# incremental that fails on one drive with completion-mode individual and
# grouped, then the grouped retry; the abort action), rollback (no bitmap,
# session, view, job or target left, a cleared bitmap's bits back), a
# gate held by another refusing the transaction (the gates that closed
# with it open again), a close that outlasts the bound (a write in flight
# held by dm-delay), and
# causality: a writer alternating between the devices with increasing
# sequence numbers, each write after the previous completed, and grouped
# full backups taken under it: every pair of images holds a prefix of the
# sequence (a consistent cut).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

d0=${BSYNC_DISK0:?no scratch disk}
d1=${BSYNC_DISK1:?needs two scratch disks}
size=$((16 * 1024 * 1024))
sectors=$((size / 512))
out=$(mktemp -d /tmp/bsyncd-txn.XXXXXX)

# What a hang left to see: the daemon's log and the kernel's, before the
# runner's timeout kills the test.
diagnose() {
	tail -n 60 "$BSYNCD_LOG" | sed 's/^/# bsyncd: /'
	dmesg | tail -n 30 | sed 's/^/# kernel: /'
}
( sleep "${TXN_WATCHDOG:-420}" && { echo "# watchdog: still running"; diagnose; } ) &
watchdog=$!

cleanup() {
	pkill -P "$watchdog" sleep 2>/dev/null
	[ -z "${writer:-}" ] || kill "$writer" 2>/dev/null
	[ "$_tap_failed" = 0 ] || diagnose
	bsyncd_stop
	for dv in x0 x1 xl0 xl1; do dm remove $dv 2>/dev/null; done
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $sectors linear $d0 0" | dm create xl0 && dm mknodes xl0
echo "0 $sectors linear $d1 0" | dm create xl1 && dm mknodes xl1
for l in xl0 xl1; do
	blkdiscard -f /dev/mapper/$l 2>/dev/null ||
		dd if=/dev/zero of=/dev/mapper/$l bs=1M count=16 oflag=direct status=none
done

bsyncd_start || { ok 1 "bsyncd starts"; tap_done; exit 1; }
q_ok bsync-device-add '{"node-name": "x0", "origin": "/dev/mapper/xl0", "zeroed": true}' &&
	q_ok bsync-device-add '{"node-name": "x1", "origin": "/dev/mapper/xl1", "zeroed": true}'
ok $? "two bsync devices x0 and x1"

# A daemon that hangs fails the test instead of stalling it.
q() {
	local cmd=$1 args=${2:-}
	timeout 20 qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"$cmd\"${args:+, \"arguments\": $args}}"
}

act() { # TYPE DATA-JSON
	echo "{\"type\": \"$1\", \"data\": $2}"
}
backup() { # DEVICE TARGET SYNC [extra]
	act drive-backup "{\"device\": \"$1\", \"target\": \"$2\", \"sync\": \"$3\"${4:+, $4}}"
}
txn() { # MODE ACTION... : the transaction request
	local mode=$1 a
	shift
	a=$(printf '%s,' "$@")
	echo "{\"execute\": \"transaction\", \"arguments\": {\"actions\": [${a%,}],
		\"properties\": {\"completion-mode\": \"$mode\"}}}"
}
# run_txn MODE ACTION...: the reply, then every event until no job is left, to $out/ev
nojobs="for i in \$(seq 200); do timeout 20 qmp-exec $BSYNCD_SOCK '{\"execute\": \"query-jobs\"}' |
	grep -q '^{\"return\":\[\]' && exit 0; sleep 0.1; done; exit 1"
run_txn() {
	timeout 60 qmp-exec "$BSYNCD_SOCK" "$(txn "$@")" --sh "$nojobs" --events 100 0.3 >"$out/ev" 2>/dev/null
	head -1 "$out/ev" | jq -r '.error.desc // "ok"'
}
# end JOB: how a job ended: completed, "error:<text>" or cancelled
end_of() {
	jq -rn --arg j "$1" 'first(inputs | select(.data.device? == $j and
		(.event == "BLOCK_JOB_COMPLETED" or .event == "BLOCK_JOB_CANCELLED")) |
		if .event == "BLOCK_JOB_CANCELLED" then "cancelled"
		elif .data.error then "error" else "completed" end) // "none"' "$out/ev"
}
leftovers() { # what a failed transaction must not leave: jobs, views, sessions, helper bitmaps
	local j b
	j=$(q query-jobs)
	b=$(q query-named-block-nodes)
	[[ $j == '{"return":'* && $b == '{"return":'* ]] || echo "a query failed: $j $b"
	jq -r '.return[].id' <<<"$j"
	dmsetup ls --target bsync-snap 2>/dev/null | grep -v '^No devices'
	for n in x0 x1; do
		dm message $n 0 session_status | grep -v '^state=none' | sed "s/^/$n: /"
		dm message $n 0 gate_status | grep -v '^state=open' | sed "s/^/$n: /"
	done
	jq -r '.return[]."dirty-bitmaps"[] | .name // "anon"' <<<"$b" | grep -v '^b[01]$'
}

# --- iotest 124: bitmaps added and full backups, in one transaction
expect_eq ok "$(run_txn individual "$(act block-dirty-bitmap-add '{"node": "x0", "name": "b0"}')" \
	"$(act block-dirty-bitmap-add '{"node": "x1", "name": "b1"}')" \
	"$(backup x0 "$out/f0.qcow2" full '"job-id": "f0"')" "$(backup x1 "$out/f1.qcow2" full '"job-id": "f1"')")" \
	"bitmap add + full backup of both drives in one transaction"
expect_eq "completed completed" "$(end_of f0) $(end_of f1)" "both full backups complete"
expect_eq "0 0" "$(bm_count x0 b0) $(bm_count x1 b1)" "both bitmaps added empty at the backups' instant"
qemu-img compare -q -f qcow2 -F raw "$out/f0.qcow2" /dev/mapper/x0 &&
	qemu-img compare -q -f qcow2 -F raw "$out/f1.qcow2" /dev/mapper/x1
ok $? "the full images equal the devices"

# --- iotest 124 test_transaction_failure: one drive's incremental fails
qemu-io -f raw -t none -c "write -P 0x11 1M 64k" /dev/mapper/x0 >/dev/null
qemu-io -f raw -t none -c "write -P 0x22 2M 64k" -c "write -P 0x23 5M 64k" /dev/mapper/x1 >/dev/null
inc() { # DEVICE BITMAP TARGET BASE JOB
	backup "$1" "$3" incremental "\"bitmap\": \"$2\", \"job-id\": \"$5\", \"backing-file\": \"$4\", \"backing-fmt\": \"qcow2\""
}
q_ok x-debug-inject-error '{"device": "x1", "operation": "read", "errno": 5}'
expect_eq ok "$(run_txn individual "$(inc x0 b0 "$out/i0.qcow2" "$out/f0.qcow2" i0)" \
	"$(inc x1 b1 "$out/i1.qcow2" "$out/f1.qcow2" i1)")" "individual: two incrementals, x1's read fails"
expect_eq "completed error" "$(end_of i0) $(end_of i1)" "individual: x0's completes, x1's fails alone"
expect_eq "0 2" "$(bm_count x0 b0) $(bm_count x1 b1)" \
	"individual: b0 cleared by its success, b1 keeps its bits (QEMU: only the failed drive's bitmap survives)"

qemu-io -f raw -t none -c "write -P 0x12 3M 64k" /dev/mapper/x0 >/dev/null
rm -f "$out/i1.qcow2"
q_ok x-debug-inject-error '{"device": "x1", "operation": "read", "errno": 5}'
expect_eq ok "$(run_txn grouped "$(inc x0 b0 "$out/g0.qcow2" "$out/i0.qcow2" g0)" \
	"$(inc x1 b1 "$out/g1.qcow2" "$out/f1.qcow2" g1)")" "grouped: two incrementals, x1's read fails"
expect_eq "cancelled error" "$(end_of g0) $(end_of g1)" "grouped: x1's fails and x0's is cancelled"
expect_eq "1 2" "$(bm_count x0 b0) $(bm_count x1 b1)" \
	"grouped: neither bitmap is cleared (the group's failure)"
rm -f "$out/g0.qcow2" "$out/g1.qcow2"
expect_eq ok "$(run_txn grouped "$(inc x0 b0 "$out/g0.qcow2" "$out/i0.qcow2" g0)" \
	"$(inc x1 b1 "$out/g1.qcow2" "$out/f1.qcow2" g1)")" "grouped retry: one incremental for both drives"
expect_eq "completed completed" "$(end_of g0) $(end_of g1)" "grouped retry: both complete"
expect_eq "0 0" "$(bm_count x0 b0) $(bm_count x1 b1)" "grouped retry: both bitmaps cleared"
qemu-img compare -q -f qcow2 -F raw "$out/g0.qcow2" /dev/mapper/x0 &&
	qemu-img compare -q -f qcow2 -F raw "$out/g1.qcow2" /dev/mapper/x1
ok $? "the retried incrementals on their bases equal the devices"

# --- abort, and rollback of everything before a failing action
expect_eq "Transaction aborted using Abort action" \
	"$(run_txn individual "$(act block-dirty-bitmap-add '{"node": "x0", "name": "r0"}')" \
		"$(backup x1 "$out/a1.qcow2" full '"job-id": "a1"')" "$(act abort '{}')")" \
	"abort as the third action fails the transaction"
expect_eq "" "$(leftovers)" "abort: no bitmap, job, view, session or held gate left"
[ ! -e "$out/a1.qcow2" ]
ok $? "abort: the backup's target was removed"

echo "# rollback"
timeout 20 qemu-io -f raw -t none -c "write -P 0x24 7M 64k" /dev/mapper/x1 >/dev/null
ok $? "a write to x1 after the aborted transaction"
expect_eq "Granularity must be power of 2 and at least 512" \
	"$(run_txn individual "$(act block-dirty-bitmap-add '{"node": "x0", "name": "r0"}')" \
		"$(act block-dirty-bitmap-clear '{"node": "x1", "name": "b1"}')" \
		"$(backup x0 "$out/r0.qcow2" full '"job-id": "r0", "bitmap": "b0", "bitmap-mode": "on-success"')" \
		"$(act block-dirty-bitmap-add '{"node": "x1", "name": "r1", "granularity": 1000}')")" \
	"a transaction whose fourth action fails returns its error"
expect_eq "" "$(leftovers)" "rollback: no bitmap, job, view, session or held gate left"
expect_eq "1 false" "$(bm_count x1 b1) $(bm_field x0 b0 busy)" \
	"rollback: the cleared b1 has its bit back, b0 is not frozen"
[ ! -e "$out/r0.qcow2" ]
ok $? "rollback: the backup's target was removed"
# a gate that does not close: x0's held by another (the first in name
# order); x1's, closed at the same time, opens again
dm message x0 0 gate_close 77 20000
expect_eq "Node 'x0' is busy: its write gate is held by another transaction" \
	"$(run_txn individual "$(act block-dirty-bitmap-add '{"node": "x1", "name": "r1"}')" \
		"$(act block-dirty-bitmap-add '{"node": "x0", "name": "r0"}')")" \
	"a gate held by another: the transaction is refused, naming it"
expect_eq "state=open" "$(dm message x1 0 gate_status | cut -d' ' -f1)" "the other device's gate is open again"
dm message x0 0 gate_open 77
expect_eq "" "$(leftovers)" "a refused close: no bitmap, job, view, session or held gate left"
# a close that times out: x1's origin holds writes 6 s (dm-delay), one is
# in flight when the gates close, and bsyncd's bound is 5 s: refused,
# naming x1, x0's gate opens again, and the late write still lands
modprobe dm-delay
dm suspend xl1 && echo "0 $sectors delay $d1 0 0 $d1 0 6000" | dm load xl1 && dm resume xl1
dd if=/dev/urandom of="$out/late" bs=4k count=1 status=none
dd if="$out/late" of=/dev/mapper/x1 bs=4k seek=100 oflag=direct status=none &
late=$!
sleep 0.5
expect_eq "Node 'x1': its in-flight writes did not complete within 5000 ms; no action was taken" \
	"$(run_txn individual "$(act block-dirty-bitmap-add '{"node": "x0", "name": "r0"}')" \
		"$(act block-dirty-bitmap-add '{"node": "x1", "name": "r1"}')")" \
	"a write in flight past the bound: the transaction is refused, naming its device"
expect_eq "state=open" "$(dm message x0 0 gate_status | cut -d' ' -f1)" "the other device's gate is open again"
wait $late
ok $? "the write in flight completed"
dm suspend xl1 && echo "0 $sectors linear $d1 0" | dm load xl1 && dm resume xl1
dd if=/dev/mapper/x1 of="$out/late.read" bs=4k skip=100 count=1 iflag=direct status=none
cmp -s "$out/late" "$out/late.read"
ok $? "it landed"
expect_eq "" "$(leftovers)" "a close that timed out: no bitmap, job, view, session or held gate left"
expect_eq "Action 'block-dirty-bitmap-add' does not support transaction property completion-mode = grouped" \
	"$(run_txn grouped "$(act block-dirty-bitmap-add '{"node": "x0", "name": "r0"}')")" \
	"grouped refuses a bitmap action (QEMU)"

# --- causality: a consistent cut under an alternating writer
echo "# causality"
# Block k of a round's area on x<k%2> gets sequence number k; each write
# O_DIRECT, after the previous completed. The writer reports how many it
# wrote and the longest a write waited (the guest-visible pause).
writer_py='
import mmap, os, struct, sys, time
base, n, prog = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fds = [os.open("/dev/mapper/x%d" % i, os.O_WRONLY | os.O_DIRECT) for i in (0, 1)]
buf = mmap.mmap(-1, 4096)
worst = 0.0
for k in range(1, n + 1):
    buf.seek(0)
    buf.write(struct.pack("<QQ", 0x5345514e4f, k))
    t = time.monotonic()
    os.pwrite(fds[k % 2], buf, (base + k // 2) * 4096)
    worst = max(worst, time.monotonic() - t)
    if k % 50 == 0:
        with open(prog, "w") as f:
            f.write("%d\n" % k)
    time.sleep(0.001)
with open(prog, "w") as f:
    f.write("%d %.3f\n" % (n, worst))
'
check_py='
import struct, sys
base, n, a, b = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
imgs = [open(p, "rb").read() for p in (a, b)]
seen = set()
for k in range(1, n + 1):
    off = (base + k // 2) * 4096
    magic, seq = struct.unpack_from("<QQ", imgs[k % 2], off)
    if magic == 0x5345514e4f:
        seen.add(seq)
m = max(seen) if seen else 0
missing = [k for k in range(1, m + 1) if k not in seen]
print("%d %d" % (m, len(missing)))
'
interior=0
consistent=0
rounds=3
nseq=1600
for ((r = 0; r < rounds; r++)); do
	base=$((r * 1024))
	rm -f "$out/prog" "$out/c0.qcow2" "$out/c1.qcow2"
	timeout 60 python3 -c "$writer_py" "$base" "$nseq" "$out/prog" &
	writer=$!
	for ((i = 0; i < 200; i++)); do
		[ -s "$out/prog" ] && [ "$(cut -d' ' -f1 <"$out/prog")" -ge 200 ] && break
		sleep 0.05
	done
	res=$(run_txn grouped "$(backup x0 "$out/c0.qcow2" full '"job-id": "c0"')" \
		"$(backup x1 "$out/c1.qcow2" full '"job-id": "c1"')")
	wait "$writer"
	writer=
	if [ "$res" != ok ] || [ "$(end_of c0) $(end_of c1)" != "completed completed" ]; then
		echo "# round $r: $res, $(end_of c0) $(end_of c1)"
		continue
	fi
	if ! qemu-img convert -f qcow2 -O raw "$out/c0.qcow2" "$out/c0.raw" ||
		! qemu-img convert -f qcow2 -O raw "$out/c1.qcow2" "$out/c1.raw"; then
		continue
	fi
	cut=$(python3 -c "$check_py" "$base" "$nseq" "$out/c0.raw" "$out/c1.raw")
	read -r m missing <<<"$cut"
	echo "# round $r: the images hold sequence 1..$m, $missing missing below it; writer: $(cat "$out/prog") (count, longest write s)"
	[ "$missing" = 0 ] && consistent=$((consistent + 1))
	[ "$m" -gt 0 ] && [ "$m" -lt "$nseq" ] && interior=$((interior + 1))
	rm -f "$out/c0.raw" "$out/c1.raw"
done
expect_eq "$rounds" "$consistent" "causality: every pair of images is a consistent cut ($rounds grouped backups under load)"
[ "$interior" -gt 0 ]
ok $? "causality: $interior of $rounds cuts fell inside the writing (the test saw writes on both sides)"
expect_eq "" "$(leftovers)" "nothing left after the backups"

q_ok bsync-device-remove '{"node-name": "x0"}' && q_ok bsync-device-remove '{"node-name": "x1"}'
ok $? "devices removed"
bsyncd_stop
ok $? "bsyncd exits cleanly"
tap_done
