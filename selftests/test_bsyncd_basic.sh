#!/bin/bash
# bsyncd over QMP on a real bsync device: socket, nodes, bitmap commands and
# their errors, query-named-block-nodes, full and incremental backups into
# qcow2 chained by backing file, checked with qemu-img check/compare.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
size=$((64 * 1024 * 1024))
out=$(mktemp -d /tmp/bsyncd-basic.XXXXXX)
lin=bsd-lin
node=bsd0

cleanup() {
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $lin 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
blkdiscard -f /dev/mapper/$lin 2>/dev/null || dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=64 oflag=direct status=none

bsyncd_start
ok $? "bsyncd starts and answers"
expect_eq "srw-------" "$(stat -c %A "$BSYNCD_SOCK")" "socket is mode 0600"
expect_eq "true" "$(qmp-exec "$BSYNCD_SOCK" '{"execute": "query-version"}' | jq '.return.package == "bsyncd"')" \
	"query-version after negotiation"
# qmp-exec's --sh keeps the connection between requests; --elapsed times the last one
qe=$(qmp-exec "$BSYNCD_SOCK" --sh 'sleep 0.3; exit 3' '{"execute": "query-version"}' --elapsed --sh true)
expect_eq "3 bsyncd 0" "$(echo "$qe" | jq -r '.sh // .return.package // empty' | xargs)" \
	"qmp-exec --sh runs commands in order on one connection"
expect_eq "true" "$(echo "$qe" | jq -s '[.[] | select(has("elapsed"))] | length == 1 and .[0].elapsed < 0.3')" \
	"qmp-exec --elapsed counts from the last request, not from the start"

# nodes
q_ok bsync-device-add "{\"node-name\": \"$node\", \"origin\": \"/dev/mapper/$lin\", \"zeroed\": true}"
ok $? "bsync-device-add"
expect_eq "node-name '$node' is already in use" \
	"$(q_err bsync-device-add "{\"node-name\": \"$node\", \"origin\": \"/dev/mapper/$lin\"}")" \
	"second device with the same name refused"
expect_eq "Parameter 'origin' is missing" "$(q_err bsync-device-add '{"node-name": "x"}')" \
	"missing argument"
expect_eq "Invalid parameter type for 'zeroed', expected: boolean" \
	"$(q_err bsync-device-add '{"node-name": "x", "origin": "/dev/null", "zeroed": 1}')" "wrong type"
expect_eq "'/dev/null' is not a block device" \
	"$(q_err bsync-device-add '{"node-name": "x", "origin": "/dev/null"}')" "origin must be a block device"
expect_eq "$size" "$(q query-named-block-nodes | jq --arg n $node '.return[] | select(."node-name" == $n) | .size')" \
	"query-named-block-nodes lists the node with its size"

# bitmaps
expect_eq "Bitmap name cannot be empty" "$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"\"}")" "empty name"
expect_eq "Cannot find device='nope' nor node-name='nope'" \
	"$(q_err block-dirty-bitmap-add '{"node": "nope", "name": "b"}')" "unknown node on add"
expect_eq "Granularity must be power of 2 and at least 512" \
	"$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"b\", \"granularity\": 1000}")" "bad granularity"
q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"bitmap0\", \"granularity\": 65536}"
ok $? "add bitmap0"
expect_eq "Bitmap already exists: bitmap0" \
	"$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"bitmap0\"}")" "duplicate bitmap"
expect_eq "Dirty bitmap 'zz' not found" "$(q_err block-dirty-bitmap-clear "{\"node\": \"$node\", \"name\": \"zz\"}")" \
	"clear of a missing bitmap"
expect_eq "Node 'nope' not found" "$(q_err block-dirty-bitmap-remove '{"node": "nope", "name": "b"}')" \
	"remove on a missing node"
expect_eq "0 65536 true false false" \
	"$(for f in count granularity recording busy persistent; do bm_field $node bitmap0 $f; done | xargs)" \
	"new bitmap: empty, recording, not busy, not persistent"

qemu-io -f raw -t none -c "write -P0x11 0 64k" -c "write -P0x22 1M 128k" -c "write -P0x33 60M 4k" \
	/dev/mapper/$node >/dev/null
expect_eq 4 "$(bm_count $node bitmap0)" "writes dirty 4 clusters"
q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"b2\", \"disabled\": true}"
expect_eq false "$(bm_field $node b2 recording)" "disabled bitmap is not recording"
q_ok block-dirty-bitmap-merge "{\"node\": \"$node\", \"target\": \"b2\", \"bitmaps\": [\"bitmap0\"]}"
expect_eq 4 "$(bm_count $node b2)" "merge copies the bits into a disabled bitmap"
q_ok block-dirty-bitmap-enable "{\"node\": \"$node\", \"name\": \"b2\"}"
expect_eq true "$(bm_field $node b2 recording)" "enable"
q_ok block-dirty-bitmap-clear "{\"node\": \"$node\", \"name\": \"b2\"}"
expect_eq 0 "$(bm_count $node b2)" "clear"
q_ok block-dirty-bitmap-remove "{\"node\": \"$node\", \"name\": \"b2\"}"
expect_eq "" "$(bm_field $node b2 count)" "remove"

# full backup, then an incremental chained on it
ev=$out/ev
run_job_until BLOCK_JOB_COMPLETED 120 "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\",
	\"job-id\": \"full0\", \"target\": \"$out/full.qcow2\", \"format\": \"qcow2\", \"sync\": \"full\",
	\"bitmap\": \"bitmap0\", \"bitmap-mode\": \"on-success\"}}" >"$ev"
expect_eq "true" "$(head -1 "$ev" | jq 'has("return")')" "drive-backup full accepted"
expect_eq "status:created status:running status:waiting status:pending BLOCK_JOB_COMPLETED" \
	"$(tail -n +2 "$ev" | events_summary | xargs)" "events of a full backup"
expect_eq "$size $size none" "$(event_field "$ev" BLOCK_JOB_COMPLETED len) $(event_field "$ev" BLOCK_JOB_COMPLETED offset) $(event_field "$ev" BLOCK_JOB_COMPLETED error)" \
	"full: len = offset = device size, no error"
qemu-img check -q "$out/full.qcow2"
ok $? "full image passes qemu-img check"
qemu-img compare -q -f qcow2 -F raw "$out/full.qcow2" /dev/mapper/$node
ok $? "full image equals the device"
expect_eq 0 "$(bm_count $node bitmap0)" "full + on-success: bitmap holds only writes since the start"

qemu-io -f raw -t none -c "write -P0x44 2M 64k" -c "write -z 1M 64k" /dev/mapper/$node >/dev/null
expect_eq 2 "$(bm_count $node bitmap0)" "two clusters dirty after the full backup"
run_job_until BLOCK_JOB_COMPLETED 120 "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\",
	\"job-id\": \"inc1\", \"target\": \"$out/inc1.qcow2\", \"sync\": \"incremental\", \"bitmap\": \"bitmap0\",
	\"backing-file\": \"full.qcow2\", \"backing-fmt\": \"qcow2\"}}" >"$ev"
expect_eq "131072 131072" "$(event_field "$ev" BLOCK_JOB_COMPLETED len) $(event_field "$ev" BLOCK_JOB_COMPLETED offset)" \
	"incremental: len = offset = 2 clusters"
qemu-img check -q "$out/inc1.qcow2"
ok $? "incremental image passes qemu-img check"
expect_eq "$out/full.qcow2" "$(qemu-img info --output=json "$out/inc1.qcow2" | jq -r '."full-backing-filename"')" \
	"incremental's backing file is the full backup"
qemu-img compare -q -f qcow2 -F raw "$out/inc1.qcow2" /dev/mapper/$node
ok $? "chain full <- inc1 equals the device (zeroed cluster hides old data)"
expect_eq 0 "$(bm_count $node bitmap0)" "bitmap empty again"

# A job's view is removed after it completes, without holding it up: two
# jobs back to back, then the device removed at once; no view is left.
for j in 1 2; do
	run_job_until BLOCK_JOB_COMPLETED 120 "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\",
		\"job-id\": \"b2b$j\", \"target\": \"$out/b2b$j.qcow2\", \"sync\": \"full\"}}" >"$ev"
	expect_eq none "$(event_field "$ev" BLOCK_JOB_COMPLETED error)" "back-to-back full backup $j completes"
done

# device removal
expect_eq "" "$(q_err bsync-device-remove "{\"node-name\": \"$node\"}")" "bsync-device-remove"
expect_eq "" "$(dmsetup ls --target bsync-snap 2>/dev/null | grep -v 'No devices' | awk '{print $1}')" \
	"no snapshot view is left once the device is removed"
expect_eq "Cannot find device='$node' nor node-name='$node'" \
	"$(q_err bsync-device-remove "{\"node-name\": \"$node\"}")" "removed node is gone"

bsyncd_stop
ok $? "SIGTERM: bsyncd exits 0"
[ ! -e "$BSYNCD_SOCK" ]
ok $? "socket removed on exit"
tap_done
