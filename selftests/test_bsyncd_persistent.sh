#!/bin/bash
# Persistent bitmaps through bsyncd: bsync-device-add with a metadata
# device and its refusals, block-dirty-bitmap-add persistent (and QEMU's
# refusal without a metadata device), a full backup, then bsyncd restarted
# and the device table reloaded: the bitmap is back with the same count,
# and an incremental backup chained on the full one equals the device.
# Then a bitmap made inconsistent (its bits damaged on the metadata
# device while the device was down): reported, refused for backups, merges
# and enable with QEMU's text, and usable again after clear.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
mdisk=${BSYNC_DISK1:?no second scratch disk}
size=$((64 * 1024 * 1024))
out=$(mktemp -d /tmp/bsyncd-persist.XXXXXX)
lin=bsp-lin
md=bsp-md
node=bsp0
plain=bsp1

cleanup() {
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $plain 2>/dev/null
	dm remove $lin 2>/dev/null
	dm remove $md 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
echo "0 8192 linear $mdisk 0" | dm create $md && dm mknodes $md
blkdiscard -z /dev/mapper/$md 2>/dev/null || dd if=/dev/zero of=/dev/mapper/$md bs=1M count=4 oflag=direct status=none
dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=64 oflag=direct status=none

bsyncd_start
ok $? "bsyncd starts"

# --- device add with a metadata device, and its refusals
add_args() { echo "{\"node-name\": \"$1\", \"origin\": \"/dev/mapper/$lin\"${2:+, \"metadata\": \"$2\"}}"; }
expect_eq "metadata device '/dev/mapper/$lin' is the origin '/dev/mapper/$lin': the bitmaps need a block device of their own" \
	"$(q_err bsync-device-add "$(add_args x /dev/mapper/$lin)")" "metadata = origin refused"
expect_eq "'/dev/null' is not a block device" "$(q_err bsync-device-add "$(add_args x /dev/null)")" \
	"metadata must be a block device"
expect_eq "Could not open '/nonexistent': No such file or directory" \
	"$(q_err bsync-device-add "$(add_args x /nonexistent)")" "missing metadata device"
expect_eq "Invalid parameter type for 'metadata', expected: string" \
	"$(q_err bsync-device-add "{\"node-name\": \"x\", \"origin\": \"/dev/mapper/$lin\", \"metadata\": 1}")" \
	"metadata is a string"
expect_eq "" "$(q_err bsync-device-add "$(add_args $node /dev/mapper/$md)")" "bsync-device-add with metadata"
read -r maj min <<<"$(stat -L -c '%t %T' /dev/mapper/$md)"
dm table $node | grep -q " metadata $((0x$maj)):$((0x$min))\$"
ok $? "the table names the metadata device ($(dm table $node))"

# --- persistent bitmaps
q_ok bsync-device-add "$(add_args $plain)"
expect_eq "Can't store persistent bitmaps to $plain: Operation not supported" \
	"$(q_err block-dirty-bitmap-add "{\"node\": \"$plain\", \"name\": \"p\", \"persistent\": true}")" \
	"persistent bitmap refused without a metadata device"
q_ok bsync-device-remove "{\"node-name\": \"$plain\"}"
expect_eq "" "$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"inc\", \"persistent\": true}")" \
	"persistent bitmap added"
expect_eq "" "$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"fine\", \"granularity\": 4096, \"persistent\": true}")" \
	"a second one, 4 KiB"
q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"mem\"}"
expect_eq "true false null" "$(for f in persistent busy inconsistent; do bm_field $node inc $f; done | xargs)" \
	"query-named-block-nodes: persistent, not busy, no inconsistent member"
expect_eq false "$(bm_field $node mem persistent)" "an in-memory bitmap is not persistent"

qemu-io -f raw -t none -c "write -P0x11 0 64k" -c "write -P0x22 1M 128k" -c "write -P0x33 60M 4k" \
	/dev/mapper/$node >/dev/null
expect_eq 4 "$(bm_count $node inc)" "writes dirty 4 clusters"

ev=$out/ev
run_job_until BLOCK_JOB_COMPLETED 120 "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\",
	\"job-id\": \"full\", \"target\": \"$out/full.qcow2\", \"sync\": \"full\",
	\"bitmap\": \"inc\", \"bitmap-mode\": \"on-success\"}}" >"$ev"
expect_eq none "$(event_field "$ev" BLOCK_JOB_COMPLETED error)" "full backup with the persistent bitmap"
expect_eq 0 "$(bm_count $node inc)" "bitmap cleared by the full backup"

qemu-io -f raw -t none -c "write -P0x44 2M 64k" -c "write -P0x55 30M 192k" -c "write -z 1M 64k" \
	/dev/mapper/$node >/dev/null
count=$(bm_count $node inc)
fine=$(bm_count $node fine)
expect_eq 5 "$count" "5 clusters dirty after the full backup"

# --- restart: bsyncd stopped, the table reloaded, bsyncd started again
table=$(dm table $node)
bsyncd_stop
ok $? "bsyncd stops"
dm remove $node
ok $? "device removed"
echo "$table" | dm create $node && dm mknodes $node
ok $? "device made again from the same table"
bsyncd_start
ok $? "bsyncd starts again"
expect_eq "$count true true" "$(bm_count $node inc) $(bm_field $node inc persistent) $(bm_field $node inc recording)" \
	"the bitmap is back: same count, persistent, recording"
expect_eq "$fine" "$(bm_count $node fine)" "the 4 KiB one too"
expect_eq "" "$(bm_field $node mem count)" "the in-memory one is gone"

run_job_until BLOCK_JOB_COMPLETED 120 "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\",
	\"job-id\": \"inc1\", \"target\": \"$out/inc1.qcow2\", \"sync\": \"incremental\", \"bitmap\": \"inc\",
	\"backing-file\": \"full.qcow2\", \"backing-fmt\": \"qcow2\"}}" >"$ev"
expect_eq "$((count * 65536)) none" "$(event_field "$ev" BLOCK_JOB_COMPLETED len) $(event_field "$ev" BLOCK_JOB_COMPLETED error)" \
	"incremental after the restart copies the 5 clusters"
qemu-img compare -q -f qcow2 -F raw "$out/inc1.qcow2" /dev/mapper/$node
ok $? "chain full <- inc1 equals the device"

# --- an inconsistent bitmap: damage its bits while the device is down
table=$(dm table $node)
bsyncd_stop
dm remove $node
blk=$(bsync-metadata dump /dev/mapper/$md --json |
	jq -r '."area-start"[.area] + (.bitmaps[] | select(.name == "fine") | .offset)')
dd if=/dev/urandom of=/dev/mapper/$md bs=4k seek="$blk" count=1 oflag=direct status=none
bsync-metadata check /dev/mapper/$md >/dev/null 2>&1
expect_eq 1 $? "bsync-metadata check finds the damage"
echo "$table" | dm create $node && dm mknodes $node
bsyncd_start
expect_eq "true true" "$(bm_field $node fine inconsistent) $(bm_field $node fine persistent)" \
	"query-named-block-nodes: inconsistent: true"
expect_eq null "$(bm_field $node inc inconsistent)" "the other bitmap is fine"
msg="Bitmap 'fine' is inconsistent and cannot be used"
expect_eq "$msg" "$(q_err drive-backup "{\"device\": \"$node\", \"target\": \"$out/x.qcow2\",
	\"sync\": \"incremental\", \"bitmap\": \"fine\"}")" "incremental backup refused"
expect_eq "$msg" "$(q_err drive-backup "{\"device\": \"$node\", \"target\": \"$out/x.qcow2\",
	\"sync\": \"full\", \"bitmap\": \"fine\", \"bitmap-mode\": \"always\"}")" "full backup with it refused"
expect_eq "Bitmap sync mode must be given when providing a bitmap" \
	"$(q_err drive-backup "{\"device\": \"$node\", \"target\": \"$out/x.qcow2\", \"sync\": \"full\", \"bitmap\": \"fine\"}")" \
	"QEMU's order: the missing mode first"
[ ! -e "$out/x.qcow2" ]
ok $? "no image left behind"
expect_eq "$msg" "$(q_err block-dirty-bitmap-merge "{\"node\": \"$node\", \"target\": \"inc\", \"bitmaps\": [\"fine\"]}")" \
	"merge from it refused"
expect_eq "$msg" "$(q_err block-dirty-bitmap-merge "{\"node\": \"$node\", \"target\": \"fine\", \"bitmaps\": [\"inc\"]}")" \
	"merge into it refused"
expect_eq "$msg" "$(q_err block-dirty-bitmap-disable "{\"node\": \"$node\", \"name\": \"fine\"}")" "disable refused"
BSYNCD_SOCKET=$BSYNCD_SOCK bsyncctl bitmap list $node --bytes | awk '$2 == "fine" { print $7, $8 }' >"$out/row"
expect_eq "yes yes" "$(cat "$out/row")" "bsyncctl bitmap list: PERSISTENT yes, INCONSISTENT yes"
BSYNCD_SOCKET=$BSYNCD_SOCK bsyncctl backup $node "$out/y.qcow2" --sync incremental --bitmap fine 2>"$out/err"
expect_eq 1 $? "bsyncctl backup: exit 1"
expect_eq "bsyncctl: backup $node: $msg|hint: the bitmap may miss writes: 'bsyncctl bitmap clear' makes it usable again" \
	"$(head -2 "$out/err" | paste -sd'|')" "bsyncctl prints the error and the hint"
expect_eq "" "$(q_err block-dirty-bitmap-clear "{\"node\": \"$node\", \"name\": \"fine\"}")" "clear is allowed"
expect_eq "null 0" "$(bm_field $node fine inconsistent) $(bm_count $node fine)" "cleared: consistent and empty"

# --- at most 16 persistent bitmaps (inc and fine are two)
for ((i = 3; i <= 16; i++)); do
	q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"p$i\", \"granularity\": 1048576, \"persistent\": true}" ||
		break
done
expect_eq 17 "$i" "16 persistent bitmaps"
expect_eq "Maximum number of persistent bitmaps is already reached" \
	"$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"p17\", \"persistent\": true}")" \
	"the 17th refused with QEMU's text"
expect_eq "" "$(q_err block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"p17\"}")" \
	"an in-memory one is still allowed"

bsyncd_stop
ok $? "bsyncd exits 0"
dm remove $node
bsync-metadata check /dev/mapper/$md >"$out/chk" 2>&1
ok $? "metadata consistent after the removal: $(tail -1 "$out/chk")"
expect_eq 16 "$(bsync-metadata dump /dev/mapper/$md --json | jq '.bitmaps | length')" "16 bitmaps on the metadata device"
tap_done
