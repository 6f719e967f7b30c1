#!/bin/bash
# The VM host's second boot, over the disks boot1.sh left: no bsync device
# exists until activation (what bsync-activate.service does at boot, before
# libvirtd and the VMs) brings vm1 back from /etc/bsynctab with its
# persistent bitmap. Then the VM runs again, now over vhost-scsi (LIO set up
# after activation, as the guide orders target.service), trims, and the next
# backup is an incremental on the first boot's chain, taken while it writes,
# restored and checked. Last, an older point is restored onto the device the
# guide's way, and the incremental after it is that point again.
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/selftests/lib.sh"
. "$top/selftests/vmhost/vmhost-lib.sh"

vmh_host

mkdir -p "$bk" && mount "$store" "$bk" && [ -f "$bk/vm1-inc2.qcow2" ]
ok $? "the first boot's chain is on the backup store"
[ ! -e /dev/mapper/vm1 ]
ok $? "after the reboot there is no vm1 yet"

# A VM configured on the tracked path cannot start before activation: it
# fails instead of running untracked.
inner_start scsi-hd early >/dev/null 2>&1
st=$?
[ $st -ne 0 ] && grep -q "/dev/mapper/vm1" "$VMH_DIR/early.qemu.log"
ok $? "a VM on /dev/mapper/vm1 does not start before activation: $(head -c 200 "$VMH_DIR/early.qemu.log")"
inner_kill 2>/dev/null

vmh_bsyncd
ok $? "bsyncd is up"

# What bsync-activate.service runs at boot, on the guide's /etc/bsynctab.
guide_block bsynctab >/etc/bsynctab
out=$(bsyncctl activate 2>&1)
expect_eq "0 vm1: activated over ${vmh_names[/dev/disk/by-id/wwn-0x5000c500a1b2c3d4]} (persistent bitmaps: nightly)" \
	"$? $out" "bsyncctl activate (what bsync-activate.service runs) brings vm1 back with 'nightly'"
n=$(bsyncctl --json bitmap list vm1 | jq -r '.[0]."dirty-bitmaps"[] | select(.name == "nightly") | .persistent')
expect_eq true "$n" "vm1's persistent bitmap 'nightly' is back"
cnt=$(bsyncctl --json bitmap list vm1 | jq -r '.[0]."dirty-bitmaps"[] | select(.name == "nightly") | .count')
[ "${cnt:-0}" -gt 0 ]
ok $? "and it holds what the VM wrote after the last backup of the first boot ($cnt bytes dirty)"
out=$(bsyncctl activate 2>&1)
expect_eq "0 vm1: already active" "$? $out" "activate again is a no-op"

# --- 2. vhost-scsi: LIO owns the I/O path, QEMU only sets up the rings.
lio_vhost_add
ok $? "the guide's LIO configuration: iblock backstore on /dev/mapper/vm1, emulate_tpu, vhost target $VMH_WWPN"
inner_start vhost-scsi d
ok $? "inner VM d boots with the disk over vhost-scsi"
inner mount
ok $? "the VM mounts its file system"
while read -r f sha; do synced[$f]=$sha; done <"$bk/boot1.synced"
inner ls
echo "# the VM's files: $REPLY"
inner_write f10 2 && inner_rm f5
ok $? "the VM writes f10, deletes f5"
inner_discards "the VM trims over vhost-scsi" "UNMAP through LIO reaches the bsync device" fstrim
snapshot_expect >"$VMH_DIR/inc3.want"
backup_start "incremental 3, on the first boot's chain," "$bk/vm1-inc3.qcow2" \
	--sync incremental --bitmap nightly --backing vm1-inc2.qcow2
inner_write f6 2
ok $? "the VM overwrites f6 during it"
backup_finish "incremental 3"
verify_point "$bk/vm1-inc3.qcow2" "$VMH_DIR/inc3.want" "inc3"
inner_poweroff
ok $? "inner VM d powers off"
lio_vhost_del
ok $? "the LIO target is taken down"

# Sizes, for the record: the incrementals hold what changed only.
full=$(du -k "$bk/vm1-full.qcow2" | cut -f1)
echo "# vm1-full.qcow2: $full KiB on disk"
for i in inc1 inc2 inc3; do
	sz=$(du -k "$bk/vm1-$i.qcow2" | cut -f1)
	echo "# vm1-$i.qcow2: $sz KiB on disk"
	[ "$sz" -lt "$full" ]
	ok $? "vm1-$i.qcow2 is an incremental, smaller than the full backup"
done

# --- Restore an older point through the device, as the guide does it; the
# restored clusters are dirty, so the next incremental on the old chain is
# that point again.
guide_cmds restore >"$VMH_DIR/restore.sh"
out=$(bash -e "$VMH_DIR/restore.sh" 2>&1)
st=$?
expect_eq "0 $(guide_block restore | grep -v '^# ')" "$st $out" "the guide's restore of vm1-inc1 onto /dev/mapper/vm1, compared"
bsyncctl backup vm1 "$bk/vm1-inc4.qcow2" --sync incremental --bitmap nightly --backing vm1-inc3.qcow2 --wait >/dev/null
ok $? "incremental 4 after the restore"
verify_point "$bk/vm1-inc4.qcow2" "$bk/inc1.want" "inc4 (= the restored inc1)"
kill "$bsyncd_pid" && wait "$bsyncd_pid"
bsyncd_pid=
dmsetup remove vm1
tap_done
