#!/bin/bash
# bsyncd beyond the seed: one job per device and concurrent jobs on two
# devices, a client that leaves mid-job, pause/resume/set-speed, refusals
# while a job runs, SIGTERM mid-job (bitmap reclaimed), kill -9 mid-job and
# restart (frozen bitmap reclaimed, the next incremental chain equals the
# device), a real origin read failure (dm-flakey under bsync), an injected
# ENOSPC with bitmap-mode always, and stores stacked on the protected device.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

d0=${BSYNC_DISK0:?no scratch disk}
d1=${BSYNC_DISK1:?needs two scratch disks}
size=$((64 * 1024 * 1024))
sectors=$((size / 512))
out=$(mktemp -d /tmp/bsyncd-robust.XXXXXX)
modprobe dm-flakey 2>/dev/null

cleanup() {
	bsyncd_stop
	for dv in r0 r1 rb-stk rb-mid0 rb-lin0 rb-lin1; do dm remove $dv 2>/dev/null; done
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $sectors linear $d0 0" | dm create rb-lin0 && dm mknodes rb-lin0
echo "0 $sectors linear /dev/mapper/rb-lin0 0" | dm create rb-mid0 && dm mknodes rb-mid0
echo "0 $sectors linear $d1 0" | dm create rb-lin1 && dm mknodes rb-lin1
blkdiscard -f /dev/mapper/rb-lin1 2>/dev/null || dd if=/dev/zero of=/dev/mapper/rb-lin1 bs=1M count=64 oflag=direct status=none
# origin 0 holds data everywhere (not zeroed: every cluster is read)
dd if=/dev/urandom of=/dev/mapper/rb-mid0 bs=1M count=64 oflag=direct status=none

bsyncd_start || { ok 1 "bsyncd starts"; tap_done; exit 1; }
q_ok bsync-device-add '{"node-name": "r0", "origin": "/dev/mapper/rb-mid0"}'
ok $? "r0 over a device with data"
q_ok bsync-device-add '{"node-name": "r1", "origin": "/dev/mapper/rb-lin1", "zeroed": true}'
ok $? "r1 over a zeroed device"
q_ok block-dirty-bitmap-add '{"node": "r0", "name": "b0"}'
qemu-io -f raw -t none -c "write -P1 0 64k" -c "write -P2 8M 64k" -c "write -P3 40M 64k" /dev/mapper/r0 >/dev/null

backup() { # JOB NODE TARGET SYNC [extra]
	echo "{\"execute\": \"drive-backup\", \"arguments\": {\"job-id\": \"$1\", \"device\": \"$2\",
		\"target\": \"$3\", \"sync\": \"$4\"${5:+, $5}}}"
}
wait_status() { # JOB STATUS
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(job_field "$1" status)" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# --- one job per device, refusals while it runs, a second device in parallel
q_ok drive-backup "$(backup j1 r0 "$out/j1.qcow2" full '"bitmap": "b0", "bitmap-mode": "on-success", "speed": 1048576' |
	jq -c .arguments)"
ok $? "slow full backup j1 on r0 starts (its client has gone)"
expect_eq running "$(job_field j1 status)" "j1 keeps running after its client left"
expect_eq "Node 'r0' is busy: block device is in use by block job: backup" \
	"$(q_err drive-backup "$(backup j1b r0 "$out/x.qcow2" full | jq -c .arguments)")" "second job on the same device refused"
expect_eq "Job ID 'j1' already in use" \
	"$(q_err drive-backup "$(backup j1 r1 "$out/x.qcow2" full | jq -c .arguments)")" "duplicate job id refused"
expect_eq "Bitmap 'b0' is currently in use by another operation and cannot be used" \
	"$(q_err block-dirty-bitmap-remove '{"node": "r0", "name": "b0"}')" "frozen bitmap cannot be removed"
expect_eq "Node 'r0' is busy: block device is in use by block job: backup" \
	"$(q_err bsync-device-remove '{"node-name": "r0"}')" "device with a job cannot be removed"
qmp-exec "$BSYNCD_SOCK" "$(backup j2 r1 "$out/j2.qcow2" full)" --until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq "none" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" "j2 on r1 completes while j1 runs"
expect_eq running "$(job_field j1 status)" "j1 still running"
q_ok job-pause '{"id": "j1"}'
wait_status j1 paused
ok $? "job-pause: j1 paused"
expect_eq "Job is already paused" "$(q_err job-pause '{"id": "j1"}')" "second pause refused"
expect_eq "The block job for device 'j1' is currently paused" "$(q_err block-job-cancel '{"device": "j1"}')" \
	"block-job-cancel without force refused while paused"
q_ok job-resume '{"id": "j1"}'
wait_status j1 running
ok $? "job-resume: j1 running"
expect_eq 1048576 "$(job_field j1 speed)" "query-block-jobs shows the speed"
qmp-exec "$BSYNCD_SOCK" '{"execute": "block-job-set-speed", "arguments": {"device": "j1", "speed": 0}}' \
	--until BLOCK_JOB_COMPLETED 300 >"$out/ev"
expect_eq "none $size" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error) $(event_field "$out/ev" BLOCK_JOB_COMPLETED offset)" \
	"j1 completes after set-speed 0"
qemu-img check -q "$out/j1.qcow2" && qemu-img compare -q -F raw "$out/j1.qcow2" /dev/mapper/r0
ok $? "j1 image is consistent and equals r0"
expect_eq 0 "$(bm_count r0 b0)" "b0 synced to the successor"

# --- SIGTERM mid-job: cancelled, bitmap reclaimed (B0 | successor)
qemu-io -f raw -t none -c "write -P4 1M 64k" -c "write -P5 20M 64k" -c "write -P6 50M 64k" /dev/mapper/r0 >/dev/null
qmp-exec "$BSYNCD_SOCK" "$(backup j3 r0 "$out/j3.qcow2" incremental '"bitmap": "b0", "speed": 1, "backing-file": "j1.qcow2"')" \
	--events 2 10 >/dev/null
qemu-io -f raw -t none -c "write -P7 30M 64k" /dev/mapper/r0 >/dev/null
expect_eq "3 1" "$(bm_count r0 b0) $(bm_count r0 "")" "during j3: b0 frozen at 3, successor 1"
qmp-exec "$BSYNCD_SOCK" --until BLOCK_JOB_CANCELLED 60 >"$out/ev" &
lis=$!
sleep 0.5
bsyncd_stop
ok $? "SIGTERM: bsyncd exits 0"
wait $lis
ok $? "clients got BLOCK_JOB_CANCELLED before the daemon exited"
expect_eq "0 4" "$(bitmap_field r0 b0 busy) $(($(bitmap_field r0 b0 count) / 65536))" \
	"b0 reclaimed: not frozen, 3 + 1 clusters"
expect_eq "" "$(dmsetup ls --target bsync-snap 2>/dev/null | grep -v 'No devices' | awk '{print $1}')" "no snapshot view left"
qemu-img check -q "$out/j3.qcow2"
ok $? "cancelled job's image is kept, a consistent qcow2 (as QEMU leaves it)"
expect_eq "false true cancelled" "$(qemu-img info --output=json "$out/j3.qcow2" | jq '."format-specific".data.corrupt') $(bsyncctl image info --json "$out/j3.qcow2" | jq -r '.partial, ."partial-record".result' | xargs)" \
	"cancelled job's image: not corrupt, marked partial (cancelled)"

# --- kill -9 mid-job, restart: the frozen bitmap is reclaimed
bsyncd_start
qmp-exec "$BSYNCD_SOCK" "$(backup j4 r0 "$out/j4.qcow2" incremental '"bitmap": "b0", "speed": 1')" --events 2 10 >/dev/null
qemu-io -f raw -t none -c "write -P8 60M 64k" /dev/mapper/r0 >/dev/null
expect_eq "true 4 1" "$(bm_field r0 b0 busy) $(bm_count r0 b0) $(bm_count r0 "")" "during j4: frozen at 4, successor 1"
bsyncd_kill9
expect_eq "1" "$(bitmap_field r0 b0 busy)" "after kill -9 the kernel still has b0 frozen"
! qemu-io -f qcow2 -c 'write 0 4k' "$out/j4.qcow2" >/dev/null 2>&1
ok $? "the dead daemon's image keeps the crash mark: QEMU refuses to open it read/write"
bsyncd_start
grep -q "recovery: job j4 was writing $out/j4.qcow2 when the daemon died: the image is incomplete" "$BSYNCD_LOG"
ok $? "the next start reports the incomplete image"
expect_eq "false 5" "$(bm_field r0 b0 busy) $(bm_count r0 b0)" "restart reclaims b0: 4 + 1 clusters, nothing lost"
expect_eq "" "$(dmsetup ls --target bsync-snap 2>/dev/null | grep -v 'No devices' | awk '{print $1}')" "stale view removed"
expect_eq "0" "$(losetup -l -n -O BACK-FILE 2>/dev/null | grep -c bsyncd-store)" "stale store loop device released"
qmp-exec "$BSYNCD_SOCK" "$(backup j5 r0 "$out/j5.qcow2" incremental '"bitmap": "b0", "backing-file": "j1.qcow2"')" \
	--until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq "none $((5 * 65536))" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error) $(event_field "$out/ev" BLOCK_JOB_COMPLETED len)" \
	"next incremental copies the 5 reclaimed clusters"
qemu-img check -q "$out/j5.qcow2" && qemu-img compare -q -F raw "$out/j5.qcow2" /dev/mapper/r0
ok $? "chain j1 <- j5 equals the device"

# --- the origin fails reads for real (dm-flakey under bsync)
qemu-io -f raw -t none -c "write -P9 3M 64k" -c "write -P10 33M 64k" /dev/mapper/r0 >/dev/null
qmp-exec "$BSYNCD_SOCK" "$(backup j6 r0 "$out/j6.qcow2" full '"bitmap": "b0", "bitmap-mode": "on-success", "speed": 1048576')" \
	--events 2 10 >/dev/null
sleep 0.5
dm suspend rb-mid0 && echo "0 $sectors flakey /dev/mapper/rb-lin0 0 0 3600" | dm load rb-mid0 && dm resume rb-mid0
ok $? "origin switched to dm-flakey, always down"
qmp-exec "$BSYNCD_SOCK" '{"execute": "block-job-set-speed", "arguments": {"device": "j6", "speed": 0}}' \
	--until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq "Input/output error" "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" "job fails with EIO"
expect_eq "read report" "$(event_field "$out/ev" BLOCK_JOB_ERROR operation) $(event_field "$out/ev" BLOCK_JOB_ERROR action)" \
	"BLOCK_JOB_ERROR read/report"
expect_eq "false 2" "$(bm_field r0 b0 busy) $(bm_count r0 b0)" "on-success failure: bitmap keeps B0 (2 clusters)"
dm suspend rb-mid0 && echo "0 $sectors linear /dev/mapper/rb-lin0 0" | dm load rb-mid0 && dm resume rb-mid0

# --- injected ENOSPC with bitmap-mode always: successor | not copied
qemu-io -f raw -t none -c "write -P11 5M 64k" /dev/mapper/r0 >/dev/null
q_ok x-debug-inject-error '{"device": "r0", "operation": "read", "skip": 1, "errno": 28}'
qmp-exec "$BSYNCD_SOCK" "$(backup j7 r0 "$out/j7.qcow2" bitmap '"bitmap": "b0", "bitmap-mode": "always"')" \
	--until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq "No space left on device $((3 * 65536)) 65536" \
	"$(event_field "$out/ev" BLOCK_JOB_COMPLETED error) $(event_field "$out/ev" BLOCK_JOB_COMPLETED len) $(event_field "$out/ev" BLOCK_JOB_COMPLETED offset)" \
	"injected ENOSPC on the second read: 1 of 3 clusters copied"
expect_eq 2 "$(bm_count r0 b0)" "always + failure: bitmap = the 2 clusters not copied"

# --- stores
expect_eq 1 "$(q_err drive-backup "$(backup j8 r0 "$out/j8.qcow2" full '"x-store": "/dev/mapper/r0"' | jq -c .arguments)" |
	grep -c 'stacked on the protected device')" "x-store on the bsync device itself refused"
echo "0 $sectors linear /dev/mapper/rb-mid0 0" | dm create rb-stk && dm mknodes rb-stk
expect_eq 1 "$(q_err drive-backup "$(backup j8 r0 "$out/j8.qcow2" full '"x-store": "/dev/mapper/rb-stk"' | jq -c .arguments)" |
	grep -c 'stacked on the protected device')" "x-store on a dm device stacked on the origin refused"
[ ! -e "$out/j8.qcow2" ]
ok $? "refused job left no image behind"
truncate -s 64M "$out/store.img"
qmp-exec "$BSYNCD_SOCK" "$(backup j8 r0 "$out/j8.qcow2" full "\"x-store\": \"$out/store.img\"")" \
	--until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq none "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" "x-store naming a file works"
truncate -s 64M "$out/blk.img"
lo=$(losetup -f --show "$out/blk.img")
qmp-exec "$BSYNCD_SOCK" "$(backup j10 r0 "$out/j10.qcow2" full "\"x-store\": \"$lo\"")" \
	--until BLOCK_JOB_COMPLETED 120 >"$out/ev"
expect_eq none "$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)" "x-store naming a block device ($lo) works"
losetup -d "$lo"
ok $? "the block store is released after the job"
if grep -q "^[^ ]* /out 9p " /proc/mounts; then
	truncate -s 64M /out/robust-store.img
	expect_eq 1 "$(q_err drive-backup "$(backup j11 r0 "$out/j11.qcow2" full '"x-store": "/out/robust-store.img"' | jq -c .arguments)" |
		grep -c 'on storage whose backing bsyncd cannot trace (9p ')" "x-store on a 9p file system refused (backing untraceable)"
	rm -f /out/robust-store.img
else
	skip "no 9p share at /out"
fi
expect_eq 1 "$(q_err drive-backup "$(backup j9 r0 "$out/j8.qcow2" full | jq -c .arguments)" | grep -c "^Could not create '$out/j8.qcow2'")" \
	"existing target with mode absolute-paths refused"
expect_eq "0" "$(q query-jobs | jq '.return | length')" "no job left"
q_ok bsync-device-remove '{"node-name": "r0"}' && q_ok bsync-device-remove '{"node-name": "r1"}'
ok $? "devices removed"
bsyncd_stop
ok $? "bsyncd exits cleanly"
tap_done
