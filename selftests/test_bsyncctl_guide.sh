#!/bin/bash
# Documentation/backup-guide.rst, run: every command between each of its
# ".. guide-test: begin" and ".. guide-test: end" comments, in order, through
# bsyncctl, dd, qemu-img and the NBD tools, with the output the guide shows
# compared exactly.  A command goes on over the next lines while it ends in
# "|" or "\" or has a single quote open; a lone NAME=VALUE it runs is kept
# for the commands after it, as the user's shell keeps it.  The guide's
# /dev/vdb, /dev/vdc, /srv/backup and NBD socket become the scratch disks and
# paths in a temporary directory; bsyncd is started here (the guide's set-up
# section starts it with systemd).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

top=$(cd "$(dirname "$0")/.." && pwd)
guide=$top/Documentation/backup-guide.rst
disk0=${BSYNC_DISK0:?no scratch disk}
disk1=${BSYNC_DISK1:?needs a second scratch disk}
dir=$(mktemp -d /tmp/bsyncctl-guide.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK

cleanup() {
	bsyncd_stop
	dm remove vm1 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# The disks must be as large as the guide's (256 MiB).
for d in "$disk0" "$disk1"; do
	expect_eq 268435456 "$(blockdev --getsize64 "$d")" "scratch disk $d is 256 MiB"
done
bsyncd_start
ok $? "bsyncd starts"

# Turn the guide's literal blocks into "cmd<TAB>line", "cont<TAB>line" (the
# command's next line) and "out<TAB>line" records.
records=$dir/records
awk '
	function unfinished(c) { return gsub(/\047/, "", c) % 2 || c ~ /(\||\\)$/ }
	/^\.\. guide-test: begin/ { on = 1; next }
	/^\.\. guide-test: end/ { on = 0; next }
	!on { next }
	more { print "cont\t" substr($0, 5); cmd = cmd "\n" substr($0, 5); more = unfinished(cmd); next }
	/^    # / { cmd = substr($0, 7); print "cmd\t" cmd; inblock = 1; more = unfinished(cmd); next }
	inblock && /^    / { print "out\t" substr($0, 5); next }
	{ inblock = 0 }
' "$guide" >"$records"
ncmd=$(grep -c '^cmd' "$records")
[ "$ncmd" -ge 20 ]
ok $? "the guide has $ncmd commands to run"

subst() {
	sed -e "s|/dev/vdb|$disk0|g" -e "s|/dev/vdc|$disk1|g" -e "s|/srv/backup|$dir/backup|g" \
		-e "s|/run/bsyncd-nbd.sock|$dir/nbd.sock|g"
}

# Run one command; compare its stdout with the expected lines, if any.
vars=	# the variables the guide has set so far, as assignments
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
}

cmd="" want=""
while IFS=$'\t' read -r kind line; do
	case $kind in
	cmd)
		[ -n "$cmd" ] && run_one "$cmd" "$want"
		cmd=$line want=
		;;
	cont) cmd+=$'\n'$line ;;
	*) want+=${want:+$'\n'}$line ;;
	esac
done <"$records"
[ -n "$cmd" ] && run_one "$cmd" "$want"

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
tap_done
