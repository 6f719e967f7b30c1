#!/bin/bash
# Persistent bitmaps on a metadata device, within one boot: they survive
# removal, rmmod and reload exactly; a frozen bitmap comes back whole;
# corrupt, foreign, truncated or newer metadata is refused or loads
# inconsistent; a metadata device that drops or fails writes turns the
# bitmaps inconsistent (status, event) without holding guest writes, and
# the flag reaches the disk once it takes writes again. Crashes: see
# scripts/crash-test.
. "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
origin=${BSYNC_DISK0:?no scratch disk}
mdisk=${BSYNC_DISK1:?no second scratch disk}
dev=bt-persist
size=$((128 * 1024 * 1024))
sectors=$((size / 512))
mdsect=$((16 * 1024 * 1024 / 512))
edit() { python3 "$here/md-edit.py" "$@"; }

# The metadata lives on a dm-linear slice, so tests can shrink it or put
# dm-flakey in its place.
md_linear() { # SECTORS
	dm remove bt-md 2>/dev/null
	echo "0 $1 linear $mdisk 0" | dm create bt-md && dm mknodes bt-md
}
md_flakey() { # "up down [features]"
	echo "0 $mdsect flakey $mdisk 0 $1" | dm load bt-md && dm resume bt-md
}
md_wipe() { blkdiscard -z /dev/mapper/bt-md; }
create() { bsync_create $dev "$origin" $sectors 2 metadata /dev/mapper/bt-md; }
lst() { dm message $dev 0 list; }
all_extents() { dm message $dev 0 extents "$1" 0 65536; }
snapshot() { # every bitmap's list line and extents
	lst
	for b in $(lst | awk '$1 == "bitmap" { sub("name=", "", $2); print $2 }'); do
		echo "$b: $(all_extents "$b")"
	done
}
reload_module() {
	rmmod dm_bsync && insmod "${BSYNC_MODULE:-$top/build/kmod/$(uname -r)/dm-bsync.ko}"
}
events() { dm info -c --noheadings -o events $dev; }

md_linear $mdsect && md_wipe
ok $? "metadata on a 16 MiB dm-linear slice"
echo "0 $((64 * 2048)) linear $mdisk $((64 * 2048))" | dm create bt-store && dm mknodes bt-store
store=/dev/mapper/bt-store

# --- limits and errors
bsync_create $dev "$origin" $sectors 1 zeroed
dm message $dev 0 add p persistent 2>/dev/null
ok $((! $?)) "persistent without a metadata device is refused"
dm remove $dev
bsync_create $dev "$origin" $sectors 2 metadata "$origin" 2>/dev/null
ok $((! $?)) "the origin as its own metadata device is refused"
create
ok $? "create with a fresh metadata device (formats it)"
expect_eq ok "$(dm status $dev | awk '{ print $9 }')" "status says metadata ok"
for i in $(seq 1 16); do dm message $dev 0 add "p$i" 1m persistent || break; done
expect_eq 16 "$(lst | grep -c 'persistent=1')" "16 persistent bitmaps"
dm message $dev 0 add p17 1m persistent 2>/dev/null
ok $((! $?)) "a 17th persistent bitmap is refused"
dm message $dev 0 add np 1m
ok $? "non-persistent bitmaps are still allowed"
dm remove $dev
md_linear 128 && md_wipe
create
dm message $dev 0 add tiny 512 persistent 2>/dev/null
ok $((! $?)) "a bitmap too big for a 64 KiB metadata device is refused"
dm message $dev 0 add fits 64k persistent
ok $? "one that fits is accepted"
dm remove $dev

# --- a crash image: the metadata and origin copied while the device is
# live, after its writes completed and before any commit, load with the
# log replayed: every write is in every bitmap.
slice() { # name offset-MiB size-MiB
	echo "0 $(($3 * 2048)) linear $mdisk $(($2 * 2048))" | dm create "$1" && dm mknodes "$1"
}
md_linear $mdsect && md_wipe
create && dm message $dev 0 add c4k 4k persistent && dm message $dev 0 add c64k persistent &&
	dm message $dev 0 add cdis persistent disabled
# One 4 KiB write at a time, each first-touching c4k: one log block each,
# 150 in all, below the 256 a commit would start again from.
rand_writes $dev 150 4 $size
live=$(snapshot)
slice bt-md2 16 16 && slice bt-ocopy 128 128
dd if=/dev/mapper/bt-md of=/dev/mapper/bt-md2 bs=1M iflag=direct oflag=direct status=none &&
	dd if=/dev/mapper/$dev of=/dev/mapper/bt-ocopy bs=1M iflag=direct oflag=direct status=none
logged=$(dm message $dev 0 metadata_status | tr ' ' '\n' | sed -n 's/^log=\([0-9]*\).*/\1/p')
[ "${logged:-0}" -gt 100 ]
ok $? "copy metadata and origin of the live device, its log holding many blocks (${logged:-none})"
echo "0 $sectors bsync /dev/mapper/bt-ocopy 2 metadata /dev/mapper/bt-md2" | dm create bt-crashimg
ok $? "load the crash image"
expect_eq "$(echo "$live" | sed 's/busy=[01]//')" \
	"$(dev=bt-crashimg; snapshot | sed 's/busy=[01]//')" "the replayed log holds every write"
# The first log block damaged, the next ones valid: records were lost.
# (Loading consumed the copy's log: copy the live device's again.)
dm remove bt-crashimg
dd if=/dev/mapper/bt-md of=/dev/mapper/bt-md2 bs=1M iflag=direct oflag=direct status=none
edit /dev/mapper/bt-md2 flip 2 40
echo "0 $sectors bsync /dev/mapper/bt-ocopy 2 metadata /dev/mapper/bt-md2" | dm create bt-crashimg
expect_eq "1 1 0" "$(for b in c4k c64k cdis; do bitmap_field bt-crashimg $b inconsistent; done | xargs)" \
	"a gap in the log: recording bitmaps inconsistent, a disabled one not"
dm remove bt-crashimg; dm remove bt-md2; dm remove bt-ocopy
dm remove $dev

# One group commit over several log blocks: 512 first-touch writes at once
# while the metadata device delays writes by 300 ms, so that they wait
# together and are logged in one go (254 records a block).  Its crash image
# must replay every block, in order.
md_linear $mdsect && md_wipe
create && dm message $dev 0 add m4k 4k persistent
echo "0 $mdsect delay $mdisk 0 0 $mdisk 0 300" | dm load bt-md && dm resume bt-md
fio --name=burst --filename=/dev/mapper/$dev --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
	--iodepth=512 --number_ios=512 --size=$size --output=/dev/null
echo "0 $mdsect linear $mdisk 0" | dm load bt-md && dm resume bt-md
live=$(snapshot)
logged=$(dm message $dev 0 metadata_status | tr ' ' '\n' | sed -n 's/^log=\([0-9]*\).*/\1/p')
[ "${logged:-0}" -ge 3 ] && [ "$logged" -le 12 ]
ok $? "512 first touches logged in a few multi-record blocks (${logged:-none})"
slice bt-md2 16 16 && slice bt-ocopy 128 128
dd if=/dev/mapper/bt-md of=/dev/mapper/bt-md2 bs=1M iflag=direct oflag=direct status=none &&
	dd if=/dev/mapper/$dev of=/dev/mapper/bt-ocopy bs=1M iflag=direct oflag=direct status=none
echo "0 $sectors bsync /dev/mapper/bt-ocopy 2 metadata /dev/mapper/bt-md2" | dm create bt-crashimg
expect_eq "$(echo "$live" | sed 's/busy=[01]//')" "$(dev=bt-crashimg; snapshot | sed 's/busy=[01]//')" \
	"the crash image replays a group commit of several log blocks whole and consistent"
dm remove bt-crashimg; dm remove bt-md2; dm remove bt-ocopy
dm remove $dev

# --- clean persistence: remove, rmmod, load again
md_linear $mdsect && md_wipe
create
dm message $dev 0 add g512 512 persistent
dm message $dev 0 add g4k 4k persistent
dm message $dev 0 add g64k persistent
dm message $dev 0 add g1m 1m persistent disabled
dm message $dev 0 add volatile 64k
rand_writes $dev 60 160 $size
dm message $dev 0 enable g1m
rand_writes $dev 30 160 $size
before=$(snapshot | grep -v '^volatile\|name=volatile')
dm remove $dev && reload_module && create
ok $? "recreate after remove and rmmod"
after=$(snapshot)
expect_eq "$before" "$after" "names, granularities, states, counts and extents are identical"
expect_eq "" "$(lst | grep name=volatile)" "the non-persistent bitmap is gone"
[ "$(dm message $dev 0 metadata_status | tr ' ' '\n' | grep -c '^state=ok')" = 1 ]
ok $? "metadata_status reports ok"

# A bitmap frozen for a backup comes back as bitmap | successor: its twin,
# cleared at the same point and never frozen, says what that is.
dm message $dev 0 clear g64k && dm message $dev 0 add twin 64k persistent
rand_writes $dev 10 160 $size
dm message $dev 0 freeze g64k
rand_writes $dev 20 160 $size
[ "$(successor_field $dev g64k count)" -gt 0 ]
ok $? "writes during the freeze went to the successor"
dm remove $dev && create
ok $? "recreate with a bitmap that was frozen"
expect_eq "$(all_extents twin)" "$(all_extents g64k)" "it comes back as bitmap | successor"
expect_eq 0 "$(bitmap_field $dev g64k busy)" "and no longer frozen"
dm message $dev 0 remove twin

# Reload keeps the state; the metadata device cannot change.
before=$(snapshot)
dm table $dev | dm load $dev && dm resume $dev
expect_eq "$before" "$(snapshot)" "reload with the same table keeps everything"
echo "0 $sectors bsync $origin 1 zeroed" | dm load $dev 2>/dev/null
ok $((! $?)) "reload without the metadata device is refused"
dm clear $dev 2>/dev/null

# Growing the device keeps the bitmaps, at the new size.
echo "0 $((sectors + 2048)) bsync $origin 2 metadata /dev/mapper/bt-md" | dm load $dev &&
	dm resume $dev
ok $? "grow by 1 MiB"
dd if=/dev/urandom of=/dev/mapper/$dev bs=4k seek=$((size / 4096 + 10)) count=1 oflag=direct status=none
grown=$(snapshot)
dm remove $dev
echo "0 $((sectors + 2048)) bsync $origin 2 metadata /dev/mapper/bt-md" | dm create $dev && dm mknodes $dev
expect_eq "$grown" "$(snapshot)" "grown bitmaps persist"
dm remove $dev

# A big device: 1 TiB (dm-zero) at 4 KiB is 32 MiB of bits, written and
# read back whole by every commit.
tib=$((1 << 31))
echo "0 $tib zero" | dm create bt-zero
md_linear $((96 * 2048)) && md_wipe
bsync_create $dev /dev/mapper/bt-zero $tib 2 metadata /dev/mapper/bt-md &&
	dm message $dev 0 add huge 4k persistent
ok $? "a 4 KiB persistent bitmap of a 1 TiB device (32 MiB of bits)"
for off in 0 12345678 987654321 $((tib - 8)); do
	dd if=/dev/zero of=/dev/mapper/$dev bs=4k seek=$((off / 8)) count=1 oflag=direct status=none
done
big=$(all_extents huge)
expect_eq 4 "$(echo "$big" | tr ' ' '\n' | grep -c :)" "four 4 KiB writes, four extents"
dm remove $dev
bsync_create $dev /dev/mapper/bt-zero $tib 2 metadata /dev/mapper/bt-md
expect_eq "$big" "$(all_extents huge)" "its four extents come back, the last at the end of the device"
dm remove $dev
dm remove bt-zero
md_linear $mdsect && md_wipe
create && dm message $dev 0 add g4k 4k persistent && dm message $dev 0 add g64k persistent
rand_writes $dev 20 160 $size
dm remove $dev

# --- corruption
# The current superblock damaged: the other (one commit older, same bits).
create
clean=$(snapshot)
dm remove $dev
read -r slot gen area <<<"$(edit /dev/mapper/bt-md current)"
edit /dev/mapper/bt-md flip "$slot" 200
create
ok $? "loads with the current superblock damaged"
expect_eq "$clean" "$(snapshot)" "from the other slot, with the same bits"
dm remove $dev
# Both damaged: refused, and left alone.
read -r slot gen area <<<"$(edit /dev/mapper/bt-md current)"
edit /dev/mapper/bt-md flip "$slot" 300
edit /dev/mapper/bt-md flip $((1 - slot)) 300
create 2>/dev/null
ok $((! $?)) "both superblocks damaged: refused"
edit /dev/mapper/bt-md current >/dev/null 2>&1
ok $((! $?)) "and not overwritten"
edit /dev/mapper/bt-md flip "$slot" 300
edit /dev/mapper/bt-md flip $((1 - slot)) 300
create
ok $? "repaired by hand, it loads again"
dm remove $dev
# A bitmap's bits damaged: that one inconsistent, the others fine.
blk=$(edit /dev/mapper/bt-md area-block g4k)
edit /dev/mapper/bt-md flip "$blk" 5
create
expect_eq 1 "$(bitmap_field $dev g4k inconsistent)" "damaged bits load inconsistent"
expect_eq 0 "$(bitmap_field $dev g64k inconsistent)" "the others are consistent"
for m in "freeze g4k" "enable g4k" "disable g4k" "merge g64k g4k" "merge g4k g64k" \
	"session_start $store 64k bitmap g4k"; do
	dm message $dev 0 $m 2>/dev/null
	ok $((! $?)) "inconsistent: '$m' is refused"
done
dm message $dev 0 session_start $store 64k bitmap g64k && dm message $dev 0 session_end &&
	dm message $dev 0 unfreeze g64k reclaim
ok $? "a consistent bitmap of the same device starts a backup session"
dm message $dev 0 clear g4k
ok $? "clear is allowed"
expect_eq 0 "$(bitmap_field $dev g4k inconsistent)" "and makes it consistent"
dm remove $dev
create
expect_eq 0 "$(bitmap_field $dev g4k inconsistent)" "consistent after reload too"
dm remove $dev
# A newer version, hostile geometry, a foreign device, a truncated one.
edit /dev/mapper/bt-md set version 2
edit /dev/mapper/bt-md set version 2 $((1 - $(edit /dev/mapper/bt-md current | cut -d' ' -f1)))
create 2>/dev/null
ok $((! $?)) "an unknown metadata version is refused"
md_wipe && create && dm message $dev 0 add a persistent && dm remove $dev
read -r slot gen area <<<"$(edit /dev/mapper/bt-md current)"
edit /dev/mapper/bt-md set area_blocks 999999999 "$slot"
edit /dev/mapper/bt-md set nr_bitmaps 1000 $((1 - slot))
create 2>/dev/null
ok $((! $?)) "absurd geometry in both superblocks is refused"
dd if=/dev/urandom of=/dev/mapper/bt-md bs=8k count=1 oflag=direct status=none
create 2>/dev/null
ok $((! $?)) "a device that is not bsync metadata is refused"
md_wipe && create && dm message $dev 0 add a persistent && dm remove $dev
md_linear $((mdsect / 2))
create 2>/dev/null
ok $((! $?)) "a truncated metadata device is refused"
md_linear $mdsect

# --- a metadata device that drops writes, then fails them
md_wipe
create && dm message $dev 0 add a persistent && dm message $dev 0 add b 4k persistent
md_flakey "3600 0"
dd if=/dev/urandom of=/dev/mapper/$dev bs=64k count=4 oflag=direct status=none
ev=$(events)
md_flakey "0 3600 1 drop_writes"
start=$SECONDS
dd if=/dev/urandom of=/dev/mapper/$dev bs=64k seek=100 count=4 oflag=direct status=none
ok $? "a guest write completes while the metadata device drops writes"
[ $((SECONDS - start)) -lt 20 ]
ok $? "without waiting for a timeout"
expect_eq 1 "$(bitmap_field $dev a inconsistent)" "bitmap a is inconsistent"
expect_eq 1 "$(bitmap_field $dev b inconsistent)" "bitmap b is inconsistent"
expect_eq failed "$(dm status $dev | awk '{ print $9 }')" "status says metadata failed"
[ "$(events)" -gt "$ev" ]
ok $? "a dm event was raised"
dm message $dev 0 session_start $store 64k bitmap a 2>/dev/null
ok $((! $?)) "a backup of it is refused"
md_flakey "3600 0"
dm message $dev 0 list >/dev/null
dm remove $dev && create
expect_eq 1 "$(bitmap_field $dev a inconsistent)" "the flag reached the disk once it took writes again"
dm message $dev 0 clear a
expect_eq "0 ok" "$(bitmap_field $dev a inconsistent) $(dm status $dev | awk '{ print $9 }')" \
	"clear makes it consistent and the metadata ok again"
md_flakey "0 3600 1 error_writes"
dd if=/dev/urandom of=/dev/mapper/$dev bs=64k seek=300 count=1 oflag=direct status=none
ok $? "a guest write completes while metadata writes fail"
expect_eq 1 "$(bitmap_field $dev a inconsistent)" "failing writes make it inconsistent"
md_flakey "3600 0"
dm remove $dev
create
expect_eq 1 "$(bitmap_field $dev a inconsistent)" "and it stays so"
dm remove $dev
dm remove bt-md
dm remove bt-store
tap_done
