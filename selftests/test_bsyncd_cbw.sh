#!/bin/bash
# bsyncd and copy-before-write: a sync=none job (fleecing) copies the old
# data of clusters the guest overwrites until it is cancelled; a job whose
# scratch store fills up (break-snapshot) fails instead of writing a wrong
# image, and its bitmap follows the rule; a top backup copies only what was
# allocated. The default stores are made where users have them: on ext4
# (a file system with O_DIRECT, so their loop devices do direct I/O).
. "$(dirname "$0")/lib.sh"
BSYNCD_STORE=$(mktemp -d /tmp/bsyncd-cbw-store.XXXXXX)
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
sdisk=${BSYNC_DISK1:?no second scratch disk}
size=$((64 * 1024 * 1024))
out=$(mktemp -d /tmp/bsyncd-cbw.XXXXXX)
node=cbw0

cleanup() {
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove cbw-lin 2>/dev/null
	umount "$BSYNCD_STORE" 2>/dev/null
	rm -rf "$out" "$BSYNCD_STORE"
}
trap cleanup EXIT

modprobe ext4 2>/dev/null
mkfs.ext4 -q -F -E nodiscard "$sdisk" && mount -t ext4 "$sdisk" "$BSYNCD_STORE"
ok $? "store directory on ext4"

echo "0 $((size / 512)) linear $disk 0" | dm create cbw-lin && dm mknodes cbw-lin
blkdiscard -f /dev/mapper/cbw-lin 2>/dev/null || dd if=/dev/zero of=/dev/mapper/cbw-lin bs=1M count=64 oflag=direct status=none
bsyncd_start || { ok 1 "bsyncd starts"; tap_done; exit 1; }
q_ok bsync-device-add "{\"node-name\": \"$node\", \"origin\": \"/dev/mapper/cbw-lin\", \"zeroed\": true}"
ok $? "device"
qemu-io -f raw -t none -c "write -P0x10 0 1M" -c "write -P0x20 10M 256k" -c "write -P0x30 40M 64k" /dev/mapper/$node >/dev/null

# top: only the allocated clusters (1M + 256k + 64k = 21 clusters)
qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\", \"job-id\": \"t\",
	\"target\": \"$out/top.qcow2\", \"sync\": \"top\"}}" --until BLOCK_JOB_COMPLETED 60 >"$out/ev"
expect_eq "$((21 * 65536)) $((21 * 65536))" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED len) $(event_field "$out/ev" BLOCK_JOB_COMPLETED offset)" \
	"top: len = offset = allocated bytes"
expect_eq "$((21 * 65536))" "$(qemu-img map --output=json "$out/top.qcow2" | jq '[.[] | select(.data) | .length] | add')" \
	"top image holds exactly the allocated clusters"
qemu-img compare -q -F raw "$out/top.qcow2" /dev/mapper/$node
ok $? "top image equals the device (the rest reads as zero)"
cp "$out/top.qcow2" "$out/base.qcow2"

# sync=none: old data of overwritten clusters, until cancelled
qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\", \"job-id\": \"fl\",
	\"target\": \"$out/none.qcow2\", \"sync\": \"none\", \"backing-file\": \"base.qcow2\"}}" --events 2 10 >/dev/null
qemu-io -f raw -t none -c "write -P0x40 0 64k" -c "write -P0x50 10M 128k" -c "write -P0x60 40M 64k" /dev/mapper/$node >/dev/null
sleep 1
expect_eq running "$(job_field fl status)" "sync=none job keeps running"
expect_eq "1" "$(losetup -l -n -O DIO,BACK-FILE | awk '/bsyncd-store/ {print $1}')" \
	"the job's default store is a loop device doing direct I/O"
qmp-exec "$BSYNCD_SOCK" '{"execute": "job-cancel", "arguments": {"id": "fl"}}' --until BLOCK_JOB_CANCELLED 60 >"$out/ev"
expect_eq "BLOCK_JOB_CANCELLED" "$(tail -n +2 "$out/ev" | events_summary | grep BLOCK_JOB | xargs)" "cancel ends it"
expect_eq "$((4 * 65536))" "$(qemu-img map --output=json "$out/none.qcow2" | jq '[.[] | select(.depth == 0) | .length] | add')" \
	"the overwritten clusters (4) were preserved into the image"
qemu-img compare -q "$out/none.qcow2" "$out/base.qcow2"
ok $? "none image over its base reads the point in time (old data)"
! qemu-img compare -q -F raw "$out/none.qcow2" /dev/mapper/$node 2>/dev/null
ok $? "and differs from the device now"

# a store too small: the session breaks, the job fails, the bitmap is kept
q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"b\"}"
scattered() { # PATTERN: one 64 KiB write in each of 32 MiBs from 30M
	local k cmds=()
	for ((k = 0; k < 32; k++)); do cmds+=(-c "write -P$1 $(((30 + k) << 20)) 64k"); done
	qemu-io -f raw -t none "${cmds[@]}" /dev/mapper/$node >/dev/null
}
scattered 0x70
truncate -s 128k "$out/tiny.img"
qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\", \"job-id\": \"sm\",
	\"target\": \"$out/small.qcow2\", \"sync\": \"bitmap\", \"bitmap\": \"b\", \"bitmap-mode\": \"on-success\",
	\"speed\": 65536, \"x-store\": \"$out/tiny.img\"}}" --events 2 10 >/dev/null
# Paused, so the session breaks before the job can have read everything,
# however slow this kernel runs qemu-io.
q_ok job-pause '{"id": "sm"}'
scattered 0x71
ok $? "guest writes go on when the store is full (break-snapshot)"
# Full speed, and resume on the same connection that waits for the end:
# a failing job is over (and dismissed) at once.
qmp-exec "$BSYNCD_SOCK" '{"execute": "block-job-set-speed", "arguments": {"device": "sm", "speed": 0}}' \
	'{"execute": "job-resume", "arguments": {"id": "sm"}}' --until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq "Input/output error" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" "job over a broken snapshot fails with EIO"
if [ "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" != "Input/output error" ]; then
	echo "# events:" && sed 's/^/#   /' "$out/ev"
	echo "# bsyncd log:" && tail -n 40 "$BSYNCD_LOG" | sed 's/^/#   /'
fi
expect_eq "false 32" "$(bm_field $node b busy) $(bm_count $node b)" "on-success failure: bitmap keeps its 32 clusters"
expect_eq "true failed Input/output error" "$(bsyncctl image info --json "$out/small.qcow2" | jq -r '.partial, ."partial-record".result, ."partial-record".error' | xargs)" \
	"its image is marked partial: failed, EIO"
qemu-img check -q "$out/small.qcow2"
ok $? "its image is a consistent qcow2"

bsyncd_stop
ok $? "bsyncd exits cleanly"
tap_done
