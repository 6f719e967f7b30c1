#!/bin/bash
# bsyncctl chain verify and restore on chains bsyncd wrote.  A full and an
# incremental verify, their data clusters against the checksum records
# bsyncd kept beside them; a byte changed in a data cluster is found by
# them where qemu-img check sees nothing.  An incremental that fails (an injected read error)
# leaves a partial image, refused as the chain's tip and, once the next
# incremental is chained onto it, as a link.  Restore onto a second bsync
# device is refused while something holds the device open, then writes the
# chain's image through it: its recording bitmap marks the whole device
# dirty and one that was not recording is named, and the next incremental
# chained on the restored point makes a chain equal to the device.
# A backup of both devices in one command (one grouped transaction): two
# images that qemu-img checks, each its device at the command's instant;
# refused ones (an unknown device, a target that cannot be made, the same
# device twice) leave no target, job, view, session or held gate.
# backup --fallback full, from real situations: a partial base, a missing
# base, a missing bitmap, a grown device and a persistent bitmap damaged on
# its metadata device while the device was down each make a full backup instead,
# with the reason in the exit status (10), on stderr, in --json and in
# bsyncd's BSYNC_BACKUP_FALLBACK event; with nothing wrong it takes the
# incremental, and no such event comes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk0=${BSYNC_DISK0:?no scratch disk}
disk1=${BSYNC_DISK1:?needs a second scratch disk}
size=$((16 * 1024 * 1024))
dir=$(mktemp -d /tmp/bsyncctl-chain.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK

cleanup() {
	exec 9<&-
	bsyncd_stop
	dm remove csrc 2>/dev/null
	dm remove cdst 2>/dev/null
	dm remove cper 2>/dev/null
	dm remove csrc-lin 2>/dev/null
	dm remove cdst-lin 2>/dev/null
	dm remove cper-lin 2>/dev/null
	dm remove cper-md 2>/dev/null
	dm remove cflaky 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

bsyncd_start
ok $? "bsyncd starts"
echo "0 $((size / 512)) linear $disk0 0" | dm create csrc-lin && dm mknodes csrc-lin &&
	echo "0 $((size / 512)) linear $disk1 0" | dm create cdst-lin && dm mknodes cdst-lin &&
	bsyncctl device add csrc /dev/mapper/csrc-lin && bsyncctl device add cdst /dev/mapper/cdst-lin &&
	bsyncctl bitmap add csrc b && bsyncctl bitmap add cdst r && bsyncctl bitmap add cdst off --disabled
ok $? "two bsync devices of 16 MiB and their bitmaps"

# --- a chain of two, valid
qemu-io -f raw -t none -c "write -P 0x11 0 4M" -c "write -P 0x12 8M 1M" /dev/mapper/csrc >/dev/null &&
	bsyncctl backup csrc "$dir/full.qcow2" --sync full --bitmap b --bitmap-mode on-success --wait >/dev/null &&
	qemu-io -f raw -t none -c "write -P 0x21 1M 256k" /dev/mapper/csrc >/dev/null &&
	bsyncctl backup csrc "$dir/inc1.qcow2" --sync incremental --bitmap b --backing full.qcow2 --wait >/dev/null
ok $? "a full and an incremental backup"
bsyncctl --json chain verify "$dir/inc1.qcow2" >"$dir/j"
ok $? "chain verify: the chain is valid (exit 0)"
expect_eq "ok 2 ok ok 262144" \
	"$(jq -r '"\(.status) \(.images | length) \(.images[0].status) \(.images[1].status) \(.images[0]."data-bytes")"' "$dir/j")" \
	"--json: two images, both ok, the incremental holds the 256 KiB written"
expect_eq "4 0 true 0" \
	"$(jq -r '[.images[0].checksums.clusters, .images[0].checksums.bad, .images[1].checksums.clusters >= 80, .images[1].checksums.bad] | join(" ")' "$dir/j")" \
	"each image's data clusters match the record bsyncd kept beside it (IMAGE.sums)"
# a byte of the full backup changes on the backup disk (a copy of the chain's base)
mkdir "$dir/c" && cp "$dir/full.qcow2" "$dir/full.qcow2.sums" "$dir/c/" &&
	set -- $(qemu-img map -f qcow2 --output=json "$dir/c/full.qcow2" |
		jq -r '[.[] | select(.data)][0] | "\(.start) \(.offset)"') && guest=$1 host=$2 &&
	printf '\x5a' | dd of="$dir/c/full.qcow2" bs=1 seek=$((host + 4000)) conv=notrunc status=none &&
	qemu-img check -q "$dir/c/full.qcow2"
ok $? "a byte of the data cluster at guest offset $guest flipped: qemu-img check sees nothing"
bsyncctl --json chain verify "$dir/c/full.qcow2" >"$dir/j" 2>"$dir/err"
expect_eq "6 damaged $guest" "$? $(jq -r '.images[0] | "\(.status) \(.checksums."bad-offsets"[0])"' "$dir/j")" \
	"chain verify: exit 6, the image damaged, the cluster's guest offset in --json"
bsyncctl chain verify -q "$dir/c/full.qcow2" 2>"$dir/err"
grep -q "full.qcow2: 1 data cluster differs from the checksums recorded when it was written, the first at guest offset $guest" "$dir/err"
ok $? "and on stderr without --json: $(head -n 1 "$dir/err" | head -c 200)"
rm -r "$dir/c"

# --- a failed incremental: its partial image is neither a tip nor a link
qemu-io -f raw -t none -c "write -P 0x31 2M 64k" -c "write -P 0x32 6M 64k" -c "write -P 0x33 12M 64k" \
	/dev/mapper/csrc >/dev/null
q_ok x-debug-inject-error '{"device": "csrc", "operation": "read", "skip": 1}'
ok $? "a read error injected into the next backup"
bsyncctl backup csrc "$dir/inc2.qcow2" --sync incremental --bitmap b --backing inc1.qcow2 --wait \
	>/dev/null 2>&1
expect_eq 1 $? "the incremental fails"
bsyncctl chain verify -q "$dir/inc2.qcow2" 2>"$dir/err"
expect_eq 8 $? "chain verify of the partial image: exit 8"
grep -q "not a point in time; delete it" "$dir/err"
ok $? "and it says to delete it: $(head -c 300 "$dir/err")"
bsyncctl backup csrc "$dir/inc3.qcow2" --sync incremental --bitmap b --backing inc2.qcow2 --wait >/dev/null &&
	bsyncctl --json chain verify "$dir/inc3.qcow2" >"$dir/j" 2>/dev/null
expect_eq "8 ok partial" "$?"" $(jq -r '"\(.images[0].status) \(.images[1].status)"' "$dir/j")" \
	"an incremental chained onto it: exit 8, the link is the partial one"

# --- restore onto a bsync device
exec 9</dev/mapper/cdst
bsyncctl restore "$dir/inc1.qcow2" /dev/mapper/cdst 2>"$dir/err"
expect_eq 1 $? "restore onto a device held open is refused"
grep -q "is in use" "$dir/err"
ok $? "because it is in use: $(head -c 200 "$dir/err")"
exec 9<&-
bsyncctl restore "$dir/inc1.qcow2" /dev/mapper/cdst >"$dir/out"
ok $? "restore onto the bsync device"
grep -q "^bitmap r: every restored cluster is dirty" "$dir/out" &&
	grep -q "^bitmap off: not recording: .*bitmap clear cdst off" "$dir/out"
ok $? "it tells what became of each bitmap: $(tr '\n' ' ' <"$dir/out" | head -c 400)"
qemu-img compare -q -f qcow2 -F raw "$dir/inc1.qcow2" /dev/mapper/cdst
ok $? "the device equals the restored point (qemu-img compare)"
bsyncctl --json bitmap list cdst >"$dir/j"
expect_eq "r $size off 0" \
	"$(jq -r '[.[] | ."dirty-bitmaps"[] | "\(.name) \(.count)"] | join(" ")' "$dir/j")" \
	"the recording bitmap marks the whole device, the disabled one nothing"
qemu-io -f raw -t none -c "write -P 0x44 3M 64k" /dev/mapper/cdst >/dev/null &&
	bsyncctl backup cdst "$dir/dst1.qcow2" --sync incremental --bitmap r --backing inc1.qcow2 --wait >/dev/null
ok $? "an incremental of the restored device, chained on the restored point"
qemu-img compare -q -f qcow2 -F raw "$dir/dst1.qcow2" /dev/mapper/cdst &&
	bsyncctl chain verify -q "$dir/dst1.qcow2"
ok $? "that chain equals the device and verifies"

# --- backup of two devices in one command: one transaction, one instant
# group_left: what a refused group backup must not leave (jobs, views,
# sessions, held gates, frozen bitmaps)
group_left() {
	local n
	bsyncctl --json job list | jq -r '.[].id'
	dmsetup ls --target bsync-snap 2>/dev/null | grep -v '^No devices'
	for n in csrc cdst; do
		dm message $n 0 session_status | grep -v '^state=none' | sed "s/^/$n: /"
		dm message $n 0 gate_status | grep -v '^state=open' | sed "s/^/$n: /"
	done
	bsyncctl --json bitmap list | jq -r '.[]."dirty-bitmaps"[] | select(.busy or .frozen) | .name'
}
qemu-io -f raw -t none -c "write -P 0x61 0 2M" /dev/mapper/csrc >/dev/null &&
	qemu-io -f raw -t none -c "write -P 0x62 12M 2M" /dev/mapper/cdst >/dev/null &&
	dd if=/dev/mapper/csrc of="$dir/gs.raw" bs=1M iflag=direct status=none &&
	dd if=/dev/mapper/cdst of="$dir/gd.raw" bs=1M iflag=direct status=none
ok $? "both devices written, their contents kept"
bsyncctl backup csrc "$dir/gs.qcow2" cdst "$dir/gd.qcow2" --sync full --speed 8M \
	--no-auto-dismiss >"$dir/out"
ok $? "one backup command of both devices"
expect_eq "backup jobs 'csrc', 'cdst' started at one instant, as one group; 'bsyncctl job wait ID' follows each" \
	"$(cat "$dir/out")" "it says both started at one instant"
# written after the instant where the jobs copy last (--speed): in neither image
qemu-io -f raw -t none -c "write -P 0x71 14M 2M" /dev/mapper/csrc >/dev/null &&
	qemu-io -f raw -t none -c "write -P 0x72 12M 2M" /dev/mapper/cdst >/dev/null
bsyncctl job wait csrc >/dev/null && bsyncctl job wait cdst >/dev/null &&
	bsyncctl job dismiss csrc && bsyncctl job dismiss cdst
ok $? "both jobs complete"
qemu-img check -q "$dir/gs.qcow2" && qemu-img check -q "$dir/gd.qcow2"
ok $? "both images pass qemu-img check"
qemu-img compare -q -f qcow2 -F raw "$dir/gs.qcow2" "$dir/gs.raw" &&
	qemu-img compare -q -f qcow2 -F raw "$dir/gd.qcow2" "$dir/gd.raw"
ok $? "each image is its device at the command's instant, without the writes after it"
# refused: GROUP-ARGS... EXPECTED-STDERR-LINE (a glob) DESCRIPTION
group_refused() {
	local want=$1 desc=$2 st
	shift 2
	bsyncctl backup "$@" --sync full >"$dir/out" 2>"$dir/err"
	st=$?
	# shellcheck disable=SC2053
	[ $st = 1 ] && [ ! -s "$dir/out" ] && [[ $(head -n 1 "$dir/err") == $want ]]
	ok $? "$desc: exit 1 ($st), $(head -n 1 "$dir/err" | head -c 200)"
	expect_eq "" "$(ls "$dir"/g?-*.qcow2 2>/dev/null; group_left)" "$desc: no target, job, view, session, gate or frozen bitmap left"
}
group_refused "bsyncctl: backup csrc ...: Cannot find device='nope' nor node-name='nope'" \
	"an unknown device after a good one" csrc "$dir/g1-a.qcow2" nope "$dir/g1-b.qcow2"
group_refused "bsyncctl: backup nope ...: Cannot find device='nope' nor node-name='nope'" \
	"an unknown device before a good one" nope "$dir/g2-a.qcow2" csrc "$dir/g2-b.qcow2" cdst "$dir/g2-c.qcow2"
group_refused "bsyncctl: backup csrc ...: *$dir/none/g3-b.qcow2*" \
	"a target that cannot be made, for the second device" csrc "$dir/g3-a.qcow2" cdst "$dir/none/g3-b.qcow2"
group_refused "bsyncctl: backup csrc ...: Node 'csrc' is busy: block device is in use by block job: backup" \
	"the same device twice" csrc "$dir/g4-a.qcow2" csrc "$dir/g4-b.qcow2"

# --- restore onto a disk that silently corrupts what it stores
echo "0 $((size / 512)) flakey $disk1 $((3 * size / 512)) 0 1 5 corrupt_bio_byte 224 w 0 0" |
	dm create cflaky && dm mknodes cflaky
ok $? "a dm-flakey disk that sets byte 224 of every write to 0"
bsyncctl restore "$dir/inc1.qcow2" /dev/mapper/cflaky >/dev/null 2>"$dir/err"
expect_eq 11 $? "restore onto it fails: exit 11"
grep -q "reads back other data than was written at offset [0-9]*" "$dir/err"
ok $? "naming the offset: $(head -n 1 "$dir/err" | head -c 300)"
bsyncctl restore "$dir/inc1.qcow2" /dev/mapper/cflaky --no-verify >/dev/null 2>&1 &&
	blockdev --flushbufs /dev/mapper/cflaky &&
	! qemu-img compare -q -f qcow2 -F raw "$dir/inc1.qcow2" /dev/mapper/cflaky
ok $? "with --no-verify it 'succeeds', and the disk holds other data (qemu-img compare)"
dm remove cflaky

# --- backup --fallback full
# fb DESC REASON ARGS...: a --json backup with --fallback full falls back for
# REASON; a client connected meanwhile (qmp-exec) sees bsyncd's event with it
fb() {
	local desc=$1 reason=$2 st
	shift 2
	qmp-exec "$BSYNCD_SOCKET" --sh "$(printf '%q ' bsyncctl --json backup "$@" --fallback full --wait) \
		>'$dir/j' 2>'$dir/err'" --until BSYNC_BACKUP_FALLBACK 5 >"$dir/ev"
	st=$(jq -r 'select(.sh != null) | .sh' "$dir/ev")
	expect_eq "10 $reason $reason" \
		"$st $(jq -r 'select(.fallback) | .fallback.reason' "$dir/j") $(grep -o "no incremental ($reason)" "$dir/err" | grep -o "$reason")" \
		"$desc: a full instead, exit 10, the reason in --json and on stderr"
	expect_eq "$reason $1 $(jq -r 'select(.fallback) | .fallback.target' "$dir/j")" \
		"$(jq -r 'select(.event == "BSYNC_BACKUP_FALLBACK") | .data | "\(.reason) \(.device) \(.target)"' "$dir/ev")" \
		"$desc: and in the event BSYNC_BACKUP_FALLBACK"
}
fb "a partial base" base-partial csrc "$dir/fb1.qcow2" --sync incremental --bitmap b --backing inc2.qcow2
expect_eq "1 0" "$(bsyncctl --json chain verify "$dir/fb1.qcow2" | jq -r '.images | length') $?" \
	"the full stands alone and verifies"
qemu-img compare -q -f qcow2 -F raw "$dir/fb1.qcow2" /dev/mapper/csrc
ok $? "and equals the device"
fb "a missing base" base-missing csrc "$dir/fb2.qcow2" --sync incremental --bitmap b --backing gone.qcow2
fb "a missing bitmap" bitmap-missing csrc "$dir/fb3.qcow2" --sync incremental --bitmap nosuch --backing fb2.qcow2
expect_eq "b nosuch" "$(bsyncctl bitmap list csrc -q | xargs)" "the missing bitmap was added"
# grow the device to 32 MiB: origin first, then the bsync table
echo "0 $((2 * size / 512)) linear $disk0 0" | dm reload csrc-lin && dm resume csrc-lin &&
	dm table csrc | awk -v n=$((2 * size / 512)) '{$2 = n; print}' | dm reload csrc && dm resume csrc
ok $? "the device grown to 32 MiB"
fb "a grown device" device-resized csrc "$dir/fb4.qcow2" --sync incremental --bitmap b --backing fb3.qcow2
grep -q "is 32 MiB, its base image .*fb3.qcow2 was 16 MiB" "$dir/err"
ok $? "the sizes are told: $(head -c 300 "$dir/err")"
qemu-io -f raw -t none -c "write -P 0x55 20M 64k" /dev/mapper/csrc >/dev/null &&
	qmp-exec "$BSYNCD_SOCKET" --sh "bsyncctl backup csrc '$dir/fb5.qcow2' --sync incremental --bitmap b \
		--backing fb4.qcow2 --fallback full --wait >/dev/null" --until BLOCK_JOB_COMPLETED 5 >"$dir/ev"
expect_eq "0 0" "$(jq -r 'select(.sh != null) | .sh' "$dir/ev") $(grep -c BSYNC_BACKUP_FALLBACK "$dir/ev")" \
	"nothing wrong: the incremental is taken (exit 0), no fall-back event"
expect_eq "65536 2" "$(bsyncctl --json chain verify "$dir/fb5.qcow2" | jq -r '"\(.images[0]."data-bytes") \(.images | length)"')" \
	"it holds the 64 KiB written, over the full"
qemu-img compare -q -f qcow2 -F raw "$dir/fb5.qcow2" /dev/mapper/csrc
ok $? "and that chain equals the device"

# an inconsistent bitmap: a persistent one whose bits are damaged on the
# metadata device while the device is down (the daemon stopped meanwhile)
echo "0 $((size / 512)) linear $disk0 $((4 * size / 512))" | dm create cper-lin && dm mknodes cper-lin &&
	echo "0 8192 linear $disk1 $((2 * size / 512))" | dm create cper-md && dm mknodes cper-md &&
	dd if=/dev/zero of=/dev/mapper/cper-md bs=1M count=4 oflag=direct status=none &&
	bsyncctl device add cper /dev/mapper/cper-lin --metadata /dev/mapper/cper-md &&
	bsyncctl bitmap add cper p --persistent &&
	bsyncctl backup cper "$dir/p0.qcow2" --sync full --bitmap p --bitmap-mode on-success --wait >/dev/null
ok $? "a device with a metadata device, a persistent bitmap, a full backup"
table=$(dm table cper)
bsyncd_stop
dm remove cper
blk=$(bsync-metadata dump /dev/mapper/cper-md --json |
	jq -r '."area-start"[.area] + (.bitmaps[] | select(.name == "p") | .offset)')
dd if=/dev/urandom of=/dev/mapper/cper-md bs=4k seek="$blk" count=1 oflag=direct status=none
echo "$table" | dm create cper && dm mknodes cper && bsyncd_start --checksums off
ok $? "its bits damaged while it was down, the device and bsyncd back (without checksum records)"
fb "an inconsistent bitmap" bitmap-inconsistent cper "$dir/p1.qcow2" --sync incremental --bitmap p --backing p0.qcow2
expect_eq "p 0 no" "$(bsyncctl bitmap list cper --bytes | awk 'NR == 2 {print $2, $4, $8}')" \
	"the bitmap was cleared: consistent, and empty after the full"
qemu-img compare -q -f qcow2 -F raw "$dir/p1.qcow2" /dev/mapper/cper
ok $? "the full equals the device"
bsyncctl chain verify "$dir/p1.qcow2" >"$dir/out"
st=$?
expect_eq "no 0 1" "$([ -e "$dir/p1.qcow2.sums" ] && echo yes || echo no) $st $(grep -c 'no checksums' "$dir/out")" \
	"bsyncd --checksums off: no record; chain verify passes and says 'no checksums'"
tap_done
