#!/bin/bash
# The VM host's first boot (scripts/check-vmhost runs it, then boot2.sh in a
# second boot over the same disks). A VM with an ext4 file system runs on a
# bsync device over QEMU's virtio-scsi while the host takes a full backup and
# an incremental with bsyncctl; its QEMU is killed and it starts again, and
# the next incremental follows. Every point of the chain is restored with
# qemu-img and checked: the file system is clean and holds exactly the files
# the VM had synced before the backup's instant. The disk is set up and
# attached as Documentation/vm-host-guide.rst says (its marked blocks run).
# Disks: see vmh_host in vmhost-lib.sh.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/selftests/lib.sh"
. "$top/selftests/vmhost/vmhost-lib.sh"

vmh_host

mkfs.ext4 -q -F "$store" && mkdir -p "$bk" && mount "$store" "$bk"
ok $? "the backup store is an ext4 file system at $bk"
vmh_bsyncd
ok $? "bsyncd is up"

# --- Never under a running VM: a QEMU that has the origin open (paused
# before it boots, as a VM started on the raw disk would hold it).
qemu-system-x86_64 -accel tcg -M pc -nodefaults -display none -S -m 64 \
	-drive "file=$origin,format=raw,if=none,id=d0,cache=none,aio=native" \
	-device virtio-scsi-pci -device scsi-hd,drive=d0 &
holder=$!
for ((i = 0; i < 100; i++)); do
	[ -n "$(find "/proc/$holder/fd" -lname "$origin" 2>/dev/null)" ] && break
	sleep 0.1
done
out=$(bsyncctl device add vm1 "$origin" 2>&1)
st=$?
expect_eq "1 bsyncctl: device add vm1: '$origin' is open by qemu-system-x86 (pid $holder): its writes would bypass tracking; stop it, add the device, then give it /dev/mapper/vm1 instead (or pass force to add it anyway)" \
	"$st $out" "device add refuses an origin a running QEMU holds, naming it"
[ ! -e /dev/mapper/vm1 ]
ok $? "and makes no device"
kill -9 "$holder"; wait "$holder" 2>/dev/null; holder=

# The guide's /etc/bsynctab and activation (no systemd here: its systemctl line is skipped).
guide_block bsynctab >/etc/bsynctab
guide_cmds activate | grep -v '^systemctl ' >"$VMH_DIR/activate.sh"
out=$(bash -e "$VMH_DIR/activate.sh" 2>&1)
ok $? "the guide's bsynctab and activation bring vm1 up with the persistent bitmap 'nightly': $out"

# --- device='lun' (scsi-block): SG_IO would bypass tracking; QEMU refuses it.
args=$(inner_qemu_args scsi-hd)
# shellcheck disable=SC2086 # the options, one word each
out=$(timeout 120 qemu-system-x86_64 -accel tcg -M pc -nodefaults -display none -S -m 64 \
	${args//scsi-hd,/scsi-block,} </dev/null 2>&1)
st=$?
expect_eq "1 $(guide_block scsi-block)" "$st $(echo "$out" | head -n 1)" \
	"QEMU refuses scsi-block on /dev/mapper/vm1 with the guide's message"

# --- 1. QEMU virtio-scsi (scsi-hd), cache=none, aio=native, discard=unmap.
inner_start scsi-hd a
ok $? "inner VM a boots on /dev/mapper/vm1 over virtio-scsi"
inner_discards "the VM makes ext4 (mke2fs discards the whole disk)" \
	"the VM's discards reach the bsync device" mkfs
for f in f1 f2 f3 f4; do inner_write $f 2 || break; done
ok $? "the VM writes and fsyncs f1..f4 (2 MiB each)"
inner_rm f2 && inner fstrim
ok $? "the VM deletes f2 and trims its free space: $REPLY"
snapshot_expect >"$VMH_DIR/full.want"

backup_start "the full backup" "$bk/vm1-full.qcow2" --sync full --bitmap nightly \
	--bitmap-mode on-success
# In place: copy-before-write must keep the instant's f1 and f3.
old_f1=${synced[f1]}
inner_write f1 2 && inner_write f3 2 && inner_write f5 2
ok $? "the VM overwrites f1 and f3 in place and writes f5 during the backup"
backup_finish "the full backup"
verify_point "$bk/vm1-full.qcow2" "$VMH_DIR/full.want" "full"
[ "$old_f1" != "${synced[f1]}" ]
ok $? "f1 changed in the VM after the instant (the image must hold the old one)"

# --- Between backups: delete, trim, write; then an incremental while writing.
inner_write f6 2 && inner_rm f3 && inner fstrim
ok $? "the VM writes f6, deletes f3, trims"
snapshot_expect >"$VMH_DIR/inc1.want"
backup_start "incremental 1" "$bk/vm1-inc1.qcow2" --sync incremental --bitmap nightly \
	--backing vm1-full.qcow2
inner_write f4 2
ok $? "the VM overwrites f4 during it"
backup_finish "incremental 1"
verify_point "$bk/vm1-inc1.qcow2" "$VMH_DIR/inc1.want" "inc1"
cp "$VMH_DIR/inc1.want" "$bk/inc1.want"

# --- 3. QEMU's own dirty bitmap beside ours, then a QEMU crash.
# qemu_bitmaps: the names of the bitmaps on the VM's drive, from query-block.
qemu_bitmaps() {
	jq -r '.return[] | select(.device == "disk0") | "disk0:" + ([.inserted."dirty-bitmaps"[]?.name] | join(" "))'
}
out=$(inner_qmp a '{"execute": "block-dirty-bitmap-add", "arguments": {"node": "disk0", "name": "qemu-bm"}}')
echo "$out" | jq -e 'has("return")' >/dev/null
ok $? "QEMU's own (non-persistent) bitmap qemu-bm added on the VM's drive"
inner_write f7 2
n=$(inner_qmp a '{"execute": "query-block"}' | qemu_bitmaps)
expect_eq disk0:qemu-bm "$n" "QEMU's bitmap is there while the VM runs"
killed=$inner_pid
inner_kill
gone=0
kill -0 "$killed" 2>/dev/null || gone=1
ok $((1 - gone)) "the inner QEMU is killed (SIGKILL) with the file system mounted"
inner_start scsi-hd b
ok $? "inner VM b boots on the same device"
inner mount
ok $? "the VM mounts its file system (journal replayed)"
n=$(inner_qmp b '{"execute": "query-block"}' | qemu_bitmaps)
expect_eq "disk0:" "$n" "QEMU's own bitmap is gone after the restart: QEMU would need a full backup"
inner_write f8 2
ok $? "the VM writes f8"
snapshot_expect >"$VMH_DIR/inc2.want"
bsyncctl backup vm1 "$bk/vm1-inc2.qcow2" --sync incremental --bitmap nightly --backing vm1-inc1.qcow2 --wait >/dev/null
ok $? "incremental 2 after the crash and restart succeeds (the bitmap survived QEMU)"
verify_point "$bk/vm1-inc2.qcow2" "$VMH_DIR/inc2.want" "inc2"
# Written after the last backup of this boot: the bitmap must carry it
# across the host's reboot.
inner_write f9 2
ok $? "the VM writes f9 after incremental 2"
snapshot_expect >"$bk/boot1.synced"
inner_poweroff
ok $? "inner VM b powers off"

# The host shuts down: its dm devices are removed (systemd-shutdown's DM detach).
kill "$bsyncd_pid" && wait "$bsyncd_pid"
bsyncd_pid=
dmsetup remove vm1
ok $? "shutdown: vm1 removed"
tap_done
