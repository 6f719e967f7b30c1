#!/bin/bash
# Documentation/backup-guide.rst, run: every command between each of its
# ".. guide-test: begin" and ".. guide-test: end" comments, in order, through
# bsyncctl, dd, qemu-img and the NBD tools, with the output the guide shows
# compared exactly.  A command goes on over the next lines while it ends in
# "|" or "\" or has a single quote open; a lone NAME=VALUE it runs is kept
# for the commands after it, as the user's shell keeps it.  The guide's
# /dev/vdb, /dev/vdc, /srv/backup and NBD socket become the scratch disks and
# paths in a temporary directory; bsyncd is started here (the guide's set-up
# section starts it with systemd).  Then Documentation/vm-host-guide.rst's
# marked commands the same way (backing up all disks of a VM, vm1 and vm1-log,
# whose devices and bitmaps that guide's earlier sections make: here they
# are made over the scratch disks first).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

top=$(cd "$(dirname "$0")/.." && pwd)
disk0=${BSYNC_DISK0:?no scratch disk}
disk1=${BSYNC_DISK1:?needs a second scratch disk}
dir=$(mktemp -d /tmp/bsyncctl-guide.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK

cleanup() {
	bsyncd_stop
	dm remove vm1 2>/dev/null
	dm remove vm1-log 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# The disks must be as large as the guide's (256 MiB).
for d in "$disk0" "$disk1"; do
	expect_eq 268435456 "$(blockdev --getsize64 "$d")" "scratch disk $d is 256 MiB"
done
bsyncd_start
ok $? "bsyncd starts"

# records GUIDE: its marked literal blocks as "cmd<TAB>line", "cont<TAB>line"
# (the command's next line) and "out<TAB>line" records.
records() {
	awk '
		function unfinished(c) { return gsub(/\047/, "", c) % 2 || c ~ /(\||\\)$/ }
		/^\.\. guide-test: begin/ { on = 1; next }
		/^\.\. guide-test: end/ { on = 0; next }
		!on { next }
		more { print "cont\t" substr($0, 5); cmd = cmd "\n" substr($0, 5); more = unfinished(cmd); next }
		/^    # / { cmd = substr($0, 7); print "cmd\t" cmd; inblock = 1; more = unfinished(cmd); next }
		inblock && /^    / { print "out\t" substr($0, 5); next }
		{ inblock = 0 }
	' "$1"
}

subst() {
	sed -e "s|/dev/vdb|$disk0|g" -e "s|/dev/vdc|$disk1|g" -e "s|/srv/backup|$dir/backup|g" \
		-e "s|/run/bsyncd-nbd.sock|$dir/nbd.sock|g"
}

# Run one command; compare its stdout with the expected lines, if any.
vars=	# the variables the guide has set so far, as assignments
after=	# a command run after each of the guide's, given it
run_one() {
	local cmd=$1 want=$2 have st name=${1%%$'\n'*}
	[ "$name" = "$cmd" ] || name+=" ..."
	have=$(cd "$dir" && bash -c "$vars$(printf '%s' "$cmd" | subst)" 2>"$dir/stderr")
	st=$?
	if [ $st -ne 0 ]; then
		ok 1 "guide: $name (exit $st: $(head -c 300 "$dir/stderr" | tr '\n' ' '))"
		return
	fi
	if [ -n "$want" ] && [ "$have" != "$want" ]; then
		ok 1 "guide: $name (output differs)"
		diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") | sed 's/^/#   /'
		return
	fi
	[[ $cmd =~ ^[A-Za-z_][A-Za-z0-9_]*=(\'[^\']*\'|[^[:space:]]*)$ ]] && vars+="$(printf '%s' "$cmd" | subst)"$'\n'
	ok 0 "guide: $name${want:+ (output as shown)}"
	[ -z "$after" ] || $after "$cmd"
}

# run_guide GUIDE MIN: run its marked commands, at least MIN of them.
run_guide() {
	local guide=$top/Documentation/$1 min=$2 ncmd kind line cmd="" want=""
	records "$guide" >"$dir/records"
	ncmd=$(grep -c '^cmd' "$dir/records")
	[ "$ncmd" -ge "$min" ]
	ok $? "$1 has $ncmd commands to run"
	while IFS=$'\t' read -r kind line; do
		case $kind in
		cmd)
			[ -n "$cmd" ] && run_one "$cmd" "$want"
			cmd=$line want=
			;;
		cont) cmd+=$'\n'$line ;;
		*) want+=${want:+$'\n'}$line ;;
		esac
	done <"$dir/records"
	[ -n "$cmd" ] && run_one "$cmd" "$want"
}

run_guide backup-guide.rst 20

# Beyond what the guide shows: the chain is four deep and sound.
for i in full inc1 inc2 inc3; do
	qemu-img check -q "$dir/backup/$i.qcow2"
	ok $? "qemu-img check $i.qcow2"
done
expect_eq 4 "$(qemu-img info --backing-chain --output=json "$dir/backup/inc3.qcow2" | jq length)" \
	"inc3 <- inc2 <- inc1 <- full: a chain of four images"
# inc1 holds the 1 MiB written at 10 MiB and nothing else.
expect_eq 1048576 "$(qemu-img map --output=json "$dir/backup/inc1.qcow2" |
	jq '[.[] | select(.depth == 0 and .data)] | map(.length) | add')" \
	"inc1 holds exactly the 1 MiB the guide writes before it"

# vm-host-guide.rst: all disks of a VM in one command.  Its devices, as
# its earlier sections make them, over the scratch disks, a MiB written to
# each; a MiB more to each between the full and the incremental.
vars=
bsyncctl device add vm1 "$disk0" && bsyncctl device add vm1-log "$disk1" &&
	bsyncctl bitmap add vm1 nightly && bsyncctl bitmap add vm1-log nightly &&
	dd if=/dev/urandom of=/dev/mapper/vm1 bs=1M count=1 oflag=direct status=none &&
	dd if=/dev/urandom of=/dev/mapper/vm1-log bs=1M count=1 oflag=direct status=none
ok $? "vm1 and vm1-log, each with bitmap nightly"
vms_write() { # after the guide's full backup, before its incremental
	[[ $1 == *"--sync full"* ]] || return 0
	dd if=/dev/urandom of=/dev/mapper/vm1 bs=1M count=1 seek=5 oflag=direct status=none &&
		dd if=/dev/urandom of=/dev/mapper/vm1-log bs=1M count=1 seek=7 oflag=direct status=none
	ok $? "a MiB written to each disk after the full backup"
}
after=vms_write
run_guide vm-host-guide.rst 2
for i in vm1-full vm1-log-full vm1-inc1 vm1-log-inc1; do
	qemu-img check -q "$dir/backup/$i.qcow2"
	ok $? "qemu-img check $i.qcow2"
done
for d in vm1 vm1-log; do
	expect_eq "2 1048576" "$(qemu-img info --backing-chain --output=json "$dir/backup/$d-inc1.qcow2" | jq length) $(
		qemu-img map --output=json "$dir/backup/$d-inc1.qcow2" |
		jq '[.[] | select(.depth == 0 and .data)] | map(.length) | add')" \
		"$d-inc1 is chained on $d-full and holds the MiB written after it"
	qemu-img compare -q -F raw "$dir/backup/$d-inc1.qcow2" /dev/mapper/$d
	ok $? "$d-inc1 and its base are the disk (qemu-img compare)"
done
tap_done
