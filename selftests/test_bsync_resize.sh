#!/bin/bash
# Resizing a bsync device online. Grown space may hold data no bitmap saw
# written: it is dirty in every named bitmap (and its successor, while
# frozen), as after growing offline, unless the table says zeroed. A new
# length during a backup session is refused when the table is loaded, so
# the live device is never left suspended.
. "$(dirname "$0")/lib.sh"

disk0=${BSYNC_DISK0:?no scratch disk}
disk1=${BSYNC_DISK1:?no second scratch disk}
dev=bt-resize
MiB=$((1024 * 1024))
half=$((32 * MiB / 512))
full=$((64 * MiB / 512))

cleanup() {
	dm resume $dev 2>/dev/null
	dm remove $dev 2>/dev/null
	dm remove bt-resize-store 2>/dev/null
}
trap cleanup EXIT
state() { dm info -c --noheadings -o attr $dev | cut -c3; }	# s: suspended
xt() { dm message $dev 0 extents "$1" 0 65536; }

# --- growing, origin of unknown content
bsync_create $dev "$disk0" $half
ok $? "bsync of 32 MiB"
dm message $dev 0 add a && dm message $dev 0 add fine 4k disabled &&
	dm message $dev 0 add frozen && dm message $dev 0 freeze frozen
ok $? "bitmaps a, fine (disabled), frozen (frozen)"
dd if=/dev/zero of=/dev/mapper/$dev bs=64k count=1 oflag=direct status=none
echo "0 $full bsync $disk0" | dm load $dev && dm resume $dev
ok $? "grown online to 64 MiB"
expect_eq "0:65536 33554432:33554432 end" "$(xt a)" "grown space dirty in a"
expect_eq "33554432:33554432 end" "$(xt fine)" "grown space dirty in the disabled bitmap"
# The successor: the write at 0 after the freeze, and the grown space.
expect_eq "$((65536 + 32 * MiB))" "$(successor_field $dev frozen count)" \
	"frozen's successor holds the grown space"
expect_eq "end" "$(xt frozen)" "frozen's frozen bits unchanged"
dm message $dev 0 unfreeze frozen abdicate
expect_eq "0:65536 33554432:33554432 end" "$(xt frozen)" \
	"after abdicate, the next backup copies the grown space"
dm remove $dev

# --- growing, zeroed origin: nothing new to back up
bsync_create $dev "$disk0" $half 1 zeroed && dm message $dev 0 add a
ok $? "zeroed bsync of 32 MiB"
echo "0 $full bsync $disk0 1 zeroed" | dm load $dev && dm resume $dev
ok $? "grown online"
expect_eq "end" "$(xt a)" "zeroed: grown space clean"
dm remove $dev

# --- a new length during a session: refused at load, device stays live
echo "0 $full linear $disk1 0" | dm create bt-resize-store && dm mknodes bt-resize-store
bsync_create $dev "$disk0" $half && dm message $dev 0 add a &&
	dm message $dev 0 session_start /dev/mapper/bt-resize-store 64k full -
ok $? "session started"
echo "0 $full bsync $disk0" | dm load $dev 2>/dev/null
ok $((! $?)) "growing during the session is refused at load"
echo "0 $((half / 2)) bsync $disk0" | dm load $dev 2>/dev/null
ok $((! $?)) "shrinking during the session is refused at load"
dm resume $dev
expect_eq "-" "$(state)" "the device is not suspended"
timeout 20 dd if=/dev/urandom of=/dev/mapper/$dev bs=64k count=4 oflag=direct status=none
ok $? "writes go on (and are preserved)"
expect_eq "$half" "$(blockdev --getsz /dev/mapper/$dev)" "length unchanged"
echo "0 $half bsync $disk0" | dm load $dev && dm suspend $dev && dm resume $dev
ok $? "a reload of the same length during the session works"
case $(dm message $dev 0 session_status) in state=active*) ok 0 "session active" ;;
*) ok 1 "session active" ;; esac
dm message $dev 0 session_end
echo "0 $full bsync $disk0" | dm load $dev && dm resume $dev
ok $? "after the session the device grows"
expect_eq "$full" "$(blockdev --getsz /dev/mapper/$dev)" "grown"
tap_done
