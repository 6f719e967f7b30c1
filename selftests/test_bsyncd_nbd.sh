#!/bin/bash
# Pull-mode backups: bsyncd's NBD export of a bsync device's point-in-time
# view with the qemu:dirty-bitmap:NAME context, checked with real clients
# (nbdinfo, qemu-img, qemu-io, nbdcopy, python3-libnbd) while fio writes it,
# answers compared with qemu-storage-daemon's on the same data and bitmap: the QMP commands
# and their errors, both contexts, the data of the instant while the device
# is written, read-only errors, several clients, hostile input, the
# bitmap rule when the fleecing job ends, and an incremental pull chain of
# qcow2 images restored with qemu-img.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
size=$((16 * 1024 * 1024))
out=$(mktemp -d /tmp/bsyncd-nbd.XXXXXX)
nsock=$out/nbd.sock
lin=bnbd-lin
node=bnbd0
cnode=bnbd1
uri="nbd+unix:///vda?socket=$nsock"
img="driver=nbd,server.type=unix,server.path=$nsock,export=vda"

cleanup() {
	for p in ${fio_pid:-} ${qsd_pid:-} ${sh_pid:-}; do kill "$p" 2>/dev/null; done
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $cnode 2>/dev/null
	dm remove $lin 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=16 oflag=direct status=none
bsyncd_start
ok $? "bsyncd starts"
q_ok bsync-device-add "{\"node-name\": \"$node\", \"origin\": \"/dev/mapper/$lin\", \"zeroed\": true}" &&
	q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"b0\", \"granularity\": 65536}"
ok $? "device and bitmap b0"
dev=/dev/mapper/$node

# hold MS LOG: a client (qemu-io) that connects, reads, then stays connected
# for MS milliseconds in the background (its pid in sh_pid); returns once it
# has read, which its line-buffered LOG says
hold() {
	local i
	stdbuf -oL qemu-io -r --image-opts "$img" -c 'read 0 512' -c "sleep $1" >"$2" 2>&1 &
	sh_pid=$!
	for ((i = 0; i < 300; i++)); do
		grep -q "^read 512/512" "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# lap LABEL: the seconds since the last lap, as a TAP comment
lap_t=$SECONDS
lap() { echo "# $1: $((SECONDS - lap_t)) s"; lap_t=$SECONDS; }

# pio PATTERN OFFSET LENGTH: write a qemu-io pattern to the device
pio() { qemu-io -f raw -t none -c "write -P $1 $2 $3" "$dev" >/dev/null; }

# the full backup's content, then what b0 records for the next one
pio 0x11 0 16M
q_ok block-dirty-bitmap-clear "{\"node\": \"$node\", \"name\": \"b0\"}"
dd if=$dev of="$out/full.raw" bs=1M iflag=direct status=none
pio 0x33 8M 1M
pio 0x44 12M 64k
pio 0x55 $((13 * 1048576 + 4096)) 4096	# one 4 KiB write marks its 64 KiB cluster
printf '%s\n' "8388608 1048576" "12582912 65536" "13631488 65536" >"$out/dirty.txt"
dd if=$dev of="$out/instant.raw" bs=1M iflag=direct status=none

lap "set-up"

# QMP: errors before a server runs
expect_eq "NBD server not running" \
	"$(q_err block-export-add "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"$node\"}")" \
	"block-export-add without a server"
expect_eq "NBD server not running" "$(q_err nbd-server-stop)" "nbd-server-stop without a server"
expect_eq "No TLS credentials with id 'tls0'" \
	"$(q_err nbd-server-start "{\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}, \"tls-creds\": \"tls0\"}")" \
	"tls-creds of no object (TLS: test_bsyncd_nbd_tls)"
q_err nbd-server-start '{"addr": {"type": "inet", "host": "127.0.0.1", "port": "10809"}}' |
	grep -q "NBD over TCP needs TLS"
ok $? "inet without the loopback opt-in refused"
q_err nbd-server-start '{"addr": {"type": "inet", "host": "10.0.2.15", "port": "10809"}, "x-allow-tcp-loopback": true}' |
	grep -q "only served on a loopback address"
ok $? "inet on a non-loopback address refused"
q_ok nbd-server-start '{"addr": {"type": "inet", "host": "127.0.0.1", "port": "10809"}, "x-allow-tcp-loopback": true}' &&
	q_ok nbd-server-stop
ok $? "loopback TCP with the opt-in starts and stops"

lap "errors"

# the export
q_ok nbd-server-start "{\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}}"
ok $? "nbd-server-start on a Unix socket"
expect_eq "srw-------" "$(stat -c %A "$nsock")" "NBD socket is mode 0600"
expect_eq "NBD server already running" \
	"$(q_err nbd-server-start "{\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}}")" "second start"
expect_eq "Cannot find device='' nor node-name='nope'" \
	"$(q_err block-export-add '{"type": "nbd", "id": "e0", "node-name": "nope"}')" "unknown node"
expect_eq "Bitmap 'nope' is not found" \
	"$(q_err block-export-add "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"$node\", \"bitmaps\": [\"nope\"]}")" \
	"unknown bitmap"
q_err block-export-add "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"$node\", \"writable\": true}" |
	grep -q "read-only"
ok $? "writable: true refused"
q_ok block-export-add "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"$node\", \"name\": \"vda\", \"bitmaps\": [\"b0\"]}"
ok $? "block-export-add with bitmap b0"
expect_eq "Block export id 'e0' is already in use" \
	"$(q_err block-export-add "{\"type\": \"nbd\", \"id\": \"e0\", \"node-name\": \"$node\"}")" "same id"
expect_eq '[{"id":"e0","node-name":"bnbd0","shutting-down":false,"type":"nbd"}]' \
	"$(q query-block-exports | jq -c '.return | map(to_entries | sort_by(.key) | from_entries)')" \
	"query-block-exports (keys sorted: gojq sorts them)"
expect_eq "backup running" "$(q query-jobs | jq -r '.return[] | select(.id == "e0") | "\(.type) \(.status)"')" \
	"a fleecing job of the export's id runs"
expect_eq "true" "$(bm_field $node b0 busy)" "b0 is busy (frozen) while exported"

lap "export"

# the device is written after the instant: the export must not see it
pio 0x99 8M 2M
pio 0x99 0 64k
pio 0x99 15M 1M
dd if=/dev/urandom of=$dev bs=64k count=4 seek=100 oflag=direct status=none

# and fio goes on writing it while the clients below read
fio --name=bg --filename=$dev --rw=randwrite --bs=64k --direct=1 --ioengine=psync --time_based \
	--runtime=120 --size=$size --output=/dev/null &
fio_pid=$!
lap "writes"
nbdinfo --list "nbd+unix:///?socket=$nsock" >"$out/list.txt" 2>&1
grep -q "qemu:dirty-bitmap:b0" "$out/list.txt" && grep -q "base:allocation" "$out/list.txt" &&
	grep -q "export=\"vda\"\|export: vda\|vda" "$out/list.txt"
ok $? "nbdinfo --list: the export and both contexts"
expect_eq "0 16777216 0 data" "$(nbdinfo --map "$uri" | awk '{print $1, $2, $3, $4}' | xargs)" \
	"nbdinfo --map: base:allocation is all data"
nbdinfo --map=qemu:dirty-bitmap:b0 --json "$uri" >"$out/map.json"
expect_eq "8388608:1048576 12582912:65536 13631488:65536" \
	"$(jq -r '.[] | select(.type == 1) | "\(.offset):\(.length)"' "$out/map.json" | xargs)" \
	"nbdinfo --map=qemu:dirty-bitmap:b0: the frozen bitmap"
expect_eq "16777216" "$(jq '[.[].length] | add' "$out/map.json")" "the map covers the export"
lap "nbdinfo"
qemu-img map --output=json --image-opts "$img,x-dirty-bitmap=qemu:dirty-bitmap:b0" >"$out/qmap.json"
expect_eq "8388608:1048576 12582912:65536 13631488:65536" \
	"$(jq -r '.[] | select(.data == false) | "\(.start):\(.length)"' "$out/qmap.json" | xargs)" \
	"qemu-img map x-dirty-bitmap: dirty shows as data:false"
qemu-io -r --image-opts "$img" -c 'read -P 0x33 8M 1M' -c 'read -P 0x11 9M 1M' \
	-c 'read -P 0x11 0 64k' -c 'read -P 0x44 12M 64k' -c 'read -P 0x11 15M 1M' >"$out/qio.txt" 2>&1 &&
	! grep -q "Pattern verification failed\|error" "$out/qio.txt"
ok $? "qemu-io -r: the patterns of the instant, not the later writes"
lap "qemu-img, qemu-io"
nbdcopy "$uri" "$out/copy.raw" && cmp "$out/copy.raw" "$out/instant.raw"
ok $? "nbdcopy of the export while the device was written = the instant"

kill $fio_pid
wait $fio_pid 2>/dev/null
lap "nbdcopy"

# differential: qemu-storage-daemon serving the instant's data with the same
# bitmap, carried by a qcow2 (write -z on an empty qcow2 only sets its bits)
carrier() {
	local o n
	qemu-img create -q -f qcow2 "$1" $size && qemu-img bitmap --add -g 65536 "$1" b0 || return 1
	while read -r o n; do
		qemu-io -f qcow2 -c "write -z $o $n" "$1" >/dev/null || return 1
	done <"$out/dirty.txt"
}
carrier "$out/carrier.qcow2"
ok $? "a qcow2 carrying b0's bits for qemu-storage-daemon"
qemu-storage-daemon \
	--blockdev driver=file,node-name=vf,filename="$out/instant.raw",read-only=on \
	--blockdev driver=raw,node-name=view,file=vf,read-only=on \
	--blockdev driver=file,node-name=cf,filename="$out/carrier.qcow2",read-only=on \
	--blockdev driver=qcow2,node-name=carrier,file=cf,read-only=on \
	--nbd-server addr.type=unix,addr.path="$out/qsd.sock" \
	--export '{"type": "nbd", "id": "q", "node-name": "view", "name": "vda", "bitmaps": [{"node": "carrier", "name": "b0"}]}' \
	>"$out/qsd.log" 2>&1 &
qsd_pid=$!
for ((i = 0; i < 100; i++)); do [ -S "$out/qsd.sock" ] && break; sleep 0.1; done
expect_eq "$(nbdinfo --map=qemu:dirty-bitmap:b0 "nbd+unix:///vda?socket=$out/qsd.sock")" \
	"$(nbdinfo --map=qemu:dirty-bitmap:b0 "$uri")" "nbdinfo --map: the same as qemu-storage-daemon's"
python3 "$(dirname "$0")/nbd_diff.py" "$nsock" "$out/qsd.sock" vda b0 1000 >"$out/diff.txt" 2>&1
while read -r res desc; do
	case $res in
	PASS) ok 0 "differential: $desc" ;;
	*) ok 1 "differential: $res $desc" ;;
	esac
done <"$out/diff.txt"
expect_eq 3 "$(grep -c '^PASS' "$out/diff.txt")" "the differential ran every check"
kill $qsd_pid
wait $qsd_pid 2>/dev/null
lap "differential"

# python3-libnbd: incremental pull, read-only errors, several clients, hostile input
cp "$out/full.raw" "$out/inc.raw"
python3 "$(dirname "$0")/nbd_client.py" "$nsock" vda b0 "$out/instant.raw" "$out/dirty.txt" \
	"$out/inc.raw" >"$out/py.txt" 2>&1
while read -r res desc; do
	case $res in
	PASS) ok 0 "libnbd: $desc" ;;
	FAIL) ok 1 "libnbd: $desc" ;;
	*) ok 1 "libnbd: $res $desc" ;;
	esac
done <"$out/py.txt"
[ "$(grep -c '^PASS' "$out/py.txt")" -ge 20 ]
ok $? "the libnbd client ran every check"
lap "libnbd"

# deleting the export ends the job; every dirty cluster was read: b0 keeps only later writes
expect_eq "true" "$(q query-jobs | jq '[.return[] | select(.id == "e0")] | length == 1')" \
	"bsyncd survived the hostile clients with its job"
succ=$(bm_count $node "")
hold 60000 "$out/in1"
expect_eq "export 'e0' still in use" "$(q_err block-export-del '{"id": "e0"}')" "safe delete with a client"
kill $sh_pid; wait $sh_pid 2>/dev/null
qmp-exec "$BSYNCD_SOCK" '{"execute": "block-export-del", "arguments": {"id": "e0"}}' \
	--until BLOCK_JOB_COMPLETED 20 >"$out/ev.txt"
grep -q '"BLOCK_EXPORT_DELETED".*"e0"' "$out/ev.txt" && ! grep -q '"error"' "$out/ev.txt"
ok $? "block-export-del: BLOCK_EXPORT_DELETED, the job completes"
expect_eq "false" "$(bm_field $node b0 busy)" "b0 no longer busy"
expect_eq "$succ" "$(bm_count $node b0)" "on success b0 holds only what was written after the instant ($succ clusters)"
expect_eq "[]" "$(q query-block-exports | jq -c .return)" "no export left"

lap "delete"

# a second export whose client does not read everything: the job fails, b0 keeps its bits
q_ok block-export-add "{\"type\": \"nbd\", \"id\": \"e1\", \"node-name\": \"$node\", \"name\": \"vda\", \"bitmaps\": [\"b0\"]}"
ok $? "a second export"
qemu-io -r --image-opts "$img" -c 'read 0 1M' >/dev/null
qmp-exec "$BSYNCD_SOCK" '{"execute": "block-export-del", "arguments": {"id": "e1", "mode": "hard"}}' \
	--until BLOCK_JOB_COMPLETED 20 >"$out/ev1.txt"
grep -q '"error".*not read every dirty\|not read every dirty.*"error"\|before clients read every' "$out/ev1.txt"
ok $? "export deleted before every dirty cluster was read: the job fails, saying why"
expect_eq "$succ" "$(bm_count $node b0)" "on failure b0 keeps its bits"

# hard delete with a client connected, and job-cancel
q_ok block-export-add "{\"type\": \"nbd\", \"id\": \"e2\", \"node-name\": \"$node\", \"name\": \"vda\"}"
hold 60000 "$out/in2"
qmp-exec "$BSYNCD_SOCK" '{"execute": "job-cancel", "arguments": {"id": "e2"}}' \
	--until BLOCK_JOB_CANCELLED 20 >"$out/ev2.txt"
grep -q BLOCK_EXPORT_DELETED "$out/ev2.txt" && grep -q BLOCK_JOB_CANCELLED "$out/ev2.txt"
ok $? "job-cancel drops the export's client and deletes the export"
kill $sh_pid 2>/dev/null; wait $sh_pid 2>/dev/null
expect_eq "Export 'e2' is not found" "$(q_err block-export-del '{"id": "e2"}')" "unknown export"
bsyncctl --socket "$BSYNCD_SOCK" export add $node --id e3 --name vda --bitmap b0
ok $? "bsyncctl export add"
expect_eq "e3 $node nbd" "$(bsyncctl --socket "$BSYNCD_SOCK" export list | awk 'NR == 2 {print $1, $2, $3}')" \
	"bsyncctl export list"
expect_eq "bsyncctl: export remove nope: Export 'nope' is not found" \
	"$(bsyncctl --socket "$BSYNCD_SOCK" export remove nope 2>&1)" "bsyncctl export remove: the daemon's error"
qmp-exec "$BSYNCD_SOCK" '{"execute": "nbd-server-stop"}' --until BLOCK_JOB_COMPLETED 20 >"$out/ev3.txt"
grep -q BLOCK_EXPORT_DELETED "$out/ev3.txt" && [ ! -e "$nsock" ]
ok $? "nbd-server-stop deletes the exports and the socket"
q_ok bsync-device-remove "{\"node-name\": \"$node\"}"
ok $? "the device can be removed afterwards"
lap "the rest"

# An incremental pull chain restored with qemu-img, three instants.  At
# each, while nothing writes the device, dd copies it (the reference), then
# the export takes its point in time with bitmap c0; the device is written
# while it is read.  Instant 0 is pulled whole into c0.qcow2; each later one
# reads only c0's dirty extents (nbdinfo --map) into a qcow2 backed by the
# previous image, with qemu-img convert on byte ranges of the export and the
# image.  Each image must equal its instant's copy, and each incremental
# read exactly what was written after the previous export was added.
curi="nbd+unix:///chain?socket=$nsock"
q_ok nbd-server-start "{\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}}" &&
	q_ok bsync-device-add "{\"node-name\": \"$cnode\", \"origin\": \"/dev/mapper/$lin\", \"zeroed\": true}" &&
	q_ok block-dirty-bitmap-add "{\"node\": \"$cnode\", \"name\": \"c0\", \"granularity\": 65536}"
ok $? "chain: the server again, a device on the same disk, bitmap c0"
dev=/dev/mapper/$cnode

# pull_start K: instant K's reference copy, then its export (job xK)
pull_start() {
	dd if=$dev of="$out/ref$1.raw" bs=1M iflag=direct status=none &&
		q_ok block-export-add "{\"type\": \"nbd\", \"id\": \"x$1\", \"node-name\": \"$cnode\", \"name\": \"chain\", \"bitmaps\": [\"c0\"]}"
}
# pull_end K: delete export K; its job must complete without an error
pull_end() {
	qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"x$1\"}}" \
		--until BLOCK_JOB_COMPLETED 20 >"$out/xev$1.txt" &&
		grep -q '"BLOCK_JOB_COMPLETED"' "$out/xev$1.txt" && ! grep -q '"error"' "$out/xev$1.txt"
}
# pull_inc K PREV: c0's dirty extents, as "offset length" lines in dirtyK.txt,
# copied from the export into incK.qcow2, whose backing file is PREV
pull_inc() {
	local o n
	nbdinfo --map=qemu:dirty-bitmap:c0 "$curi" | awk '$4 == "dirty" {print $1, $2}' >"$out/dirty$1.txt" &&
		qemu-img create -q -f qcow2 -b "$2" -F qcow2 "$out/inc$1.qcow2" || return 1
	while read -r o n; do
		qemu-img convert -n --image-opts \
			"driver=raw,offset=$o,size=$n,file.driver=nbd,file.server.type=unix,file.server.path=$nsock,file.export=chain" \
			--target-image-opts \
			"driver=raw,offset=$o,size=$n,file.driver=qcow2,file.file.driver=file,file.file.filename=$out/inc$1.qcow2" ||
			return 1
	done <"$out/dirty$1.txt"
}
# put SOURCE SEEK COUNT: COUNT 64 KiB clusters of /dev/SOURCE written at
# cluster SEEK (dd: a qemu-io starts several times slower in a TCG guest)
put() { dd if="/dev/$1" of=$dev bs=64k seek="$2" count="$3" oflag=direct status=none; }

# instant 0: c0 has 1 MiB dirty; the full pull reads it, so c0 is left
# with the three clusters written while the export was read (dirty in the
# frozen bitmap too)
put urandom 32 16
pull_start 0
ok $? "instant 0: reference copy, export with c0"
put urandom 32 3
qemu-img convert -O qcow2 --image-opts "driver=nbd,server.type=unix,server.path=$nsock,export=chain" \
	"$out/c0.qcow2"
ok $? "instant 0: qemu-img convert pulls the whole export into c0.qcow2"
pull_end 0
ok $? "instant 0: the export deleted, its job completes"
expect_eq 3 "$(bm_count $cnode c0)" "instant 0: c0 keeps only the 3 clusters written during the pull"

# instant 1: zeroes over the device's last MiB of data must reach the
# image, not leave the backing file's data showing
put zero 240 16
pull_start 1
ok $? "instant 1: reference copy, export with c0"
dd if=/dev/urandom of=$dev bs=4k seek=1 count=1 oflag=direct status=none
pull_inc 1 c0.qcow2
ok $? "instant 1: the dirty extents pulled into inc1.qcow2 (backing c0.qcow2)"
pull_end 1
ok $? "instant 1: the export deleted, its job completes"
expect_eq "2097152 196608|15728640 1048576" "$(paste -sd'|' "$out/dirty1.txt")" \
	"instant 1: the dirty extents are what was written since instant 0's export"
expect_eq 1 "$(bm_count $cnode c0)" "instant 1: c0 keeps only the cluster written during the pull"

# instant 2: the cluster written during instant 1's pull and the next one
put urandom 1 1
pull_start 2
ok $? "instant 2: reference copy, export with c0"
pull_inc 2 inc1.qcow2
ok $? "instant 2: the dirty extents pulled into inc2.qcow2 (backing inc1.qcow2)"
pull_end 2
ok $? "instant 2: the export deleted, its job completes"
expect_eq "0 131072" "$(paste -sd'|' "$out/dirty2.txt")" \
	"instant 2: the dirty extents are what was written since instant 1's export"
expect_eq 0 "$(bm_count $cnode c0)" "instant 2: c0 is clean"

# the restore: each chain tip, as qemu-img reads it, against its instant
tips=(c0 inc1 inc2)
for k in 0 1 2; do
	qemu-img compare -q -f qcow2 -F raw "$out/${tips[k]}.qcow2" "$out/ref$k.raw"
	ok $? "instant $k: ${tips[k]}.qcow2 equals the device as it was"
done
! cmp -s "$out/ref0.raw" "$out/ref1.raw" && ! cmp -s "$out/ref1.raw" "$out/ref2.raw"
ok $? "the three instants differ, so a stale image could not pass"
q_ok nbd-server-stop && q_ok bsync-device-remove "{\"node-name\": \"$cnode\"}"
ok $? "chain: the server stops, the device is removed"
lap "chain"
bsyncd_stop
ok $? "bsyncd exits 0"
tap_done
