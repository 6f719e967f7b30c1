#!/bin/bash
# bsyncctl's failures: every subcommand's bad input (unknown command or
# option, missing or extra argument, bad size, bad mode), the daemon's
# refusals (unknown device, bitmap or job, bad granularity, ...) and the
# daemon being down, each with its documented message and exit status
# (0 ok, 1 failed, 2 usage, 3 no daemon, 4 cancelled).  Nothing goes to
# stdout on a failure.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
size=$((64 * 1024 * 1024))
lin=bctl-lin
node=ctl0
dir=$(mktemp -d /tmp/bsyncctl-err.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK

cleanup() {
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $lin 2>/dev/null
	dm remove bctl-held 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# expect STATUS 'FIRST STDERR LINE' bsyncctl-args...: the status, the first
# line of stderr exactly (a trailing * matches any rest), and empty stdout.
expect() {
	local want_st=$1 want_err=$2 st err out
	shift 2
	out=$(bsyncctl "$@" 2>"$dir/err")
	st=$?
	err=$(head -1 "$dir/err")
	# shellcheck disable=SC2053
	if [ "$st" = "$want_st" ] && [[ $err == $want_err ]] && [ -z "$out" ]; then
		ok 0 "bsyncctl $*: exit $st, '$err'"
	else
		ok 1 "bsyncctl $* (want exit $want_st '$want_err', have exit $st '$err', stdout '${out:0:80}')"
	fi
}

# --- the daemon is down
down="bsyncd is not running: start it with 'systemctl start bsyncd', or run 'bsyncd --socket PATH' and pass bsyncctl the same --socket PATH"
rm -f "$BSYNCD_SOCK"
expect 3 "bsyncctl: cannot connect to bsyncd at $BSYNCD_SOCK: No such file or directory ($down)" device list
expect 3 "bsyncctl: cannot connect to bsyncd at /nonexistent/s: No such file or directory ($down)" \
	--socket /nonexistent/s job list
expect 3 "bsyncctl: cannot connect to bsyncd at /nonexistent/s: No such file or directory ($down)" \
	job list --socket=/nonexistent/s
bsyncd_start
ok $? "bsyncd starts"
bsyncd_kill9
expect 3 "bsyncctl: cannot connect to bsyncd at $BSYNCD_SOCK: Connection refused ($down)" bitmap list
bsyncd_start
ok $? "bsyncd starts again over its stale socket"

echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=64 oflag=direct status=none
bsyncctl device add $node /dev/mapper/$lin --zeroed
ok $? "device add"
bsyncctl bitmap add $node b
ok $? "bitmap add"

# --- usage errors: exit 2, nothing asked of the daemon
expect 2 "bsyncctl: missing command"
expect 2 "bsyncctl: unknown command 'frobnicate'" frobnicate
expect 2 "bsyncctl: unknown option '--frob'" --frob device list
expect 2 "bsyncctl: device: missing subcommand (add, remove, list)" device
expect 2 "bsyncctl: bitmap: unknown subcommand 'frob' (add, remove, clear, enable, disable, merge, list)" bitmap frob
expect 2 "bsyncctl: job: unknown subcommand 'kill' (list, finalize, cancel, dismiss, pause, resume, wait)" job kill
expect 2 "bsyncctl: device add: missing argument NAME" device add
expect 2 "bsyncctl: device add: missing argument ORIGIN" device add x
expect 2 "bsyncctl: device add: too many arguments (3, at most 2)" device add x /dev/null y
expect 2 "bsyncctl: device add: option '--zeroed' takes no value" device add x /dev/null --zeroed=yes
expect 2 "bsyncctl: device remove: missing argument NAME" device remove
expect 2 "bsyncctl: device list: too many arguments (1, at most 0)" device list $node
expect 2 "bsyncctl: bitmap add: missing argument NAME" bitmap add $node
expect 2 "bsyncctl: bitmap add: --granularity: '64Q' is not a size (a number with an optional K, M or G suffix)" \
	bitmap add $node x --granularity 64Q
expect 2 "bsyncctl: bitmap add: --granularity: '' is not a size (a number with an optional K, M or G suffix)" \
	bitmap add $node x --granularity=
expect 2 "bsyncctl: bitmap add: option '--granularity' needs a value" bitmap add $node x -g
expect 2 "bsyncctl: device add: option '--metadata' needs a value" device add y /dev/null --metadata
for v in remove clear enable disable; do
	expect 2 "bsyncctl: bitmap $v: missing argument DEVICE" bitmap $v
	expect 2 "bsyncctl: bitmap $v: missing argument NAME" bitmap $v $node
	expect 2 "bsyncctl: bitmap $v: too many arguments (3, at most 2)" bitmap $v $node b c
done
expect 2 "bsyncctl: bitmap merge: missing argument SOURCE" bitmap merge $node b
expect 2 "bsyncctl: bitmap list: too many arguments (2, at most 1)" bitmap list $node b
expect 2 "bsyncctl: backup: missing argument TARGET" backup $node
expect 2 "bsyncctl: backup: missing option --sync (full, top, bitmap, incremental or none)" \
	backup $node "$dir/x.qcow2"
expect 2 "bsyncctl: backup: --sync: 'sideways' is not full, top, bitmap, incremental or none" \
	backup $node "$dir/x.qcow2" --sync sideways
expect 2 "bsyncctl: backup: --bitmap-mode: 'sometimes' is not on-success, never or always" \
	backup $node "$dir/x.qcow2" --sync bitmap --bitmap b --bitmap-mode sometimes
expect 2 "bsyncctl: backup: --speed: 'fast' is not a rate (bytes per second, with an optional K, M or G suffix)" \
	backup $node "$dir/x.qcow2" --sync full --speed fast
expect 2 "bsyncctl: backup: option '--bitmap' needs a value" backup $node "$dir/x.qcow2" --sync full --bitmap
for v in finalize cancel dismiss pause resume wait; do
	expect 2 "bsyncctl: job $v: missing argument ID" job $v
done
expect 2 "bsyncctl: job list: too many arguments (1, at most 0)" job list x
expect 2 "bsyncctl: events: --count: 'none' is not a positive number" events --count none
expect 2 "bsyncctl: events: too many arguments (1, at most 0)" events now
[ ! -e "$dir/x.qcow2" ]
ok $? "no usage error created the target"

# --- refused by the daemon: exit 1, its desc passed through
expect 1 "bsyncctl: device add $node: node-name '$node' is already in use" device add $node /dev/mapper/$lin
expect 1 "bsyncctl: device add x: '/dev/null' is not a block device" device add x /dev/null
# an origin another program holds open (a running VM's QEMU) is refused, naming it
echo "0 8192 linear $disk $((size / 512))" | dm create bctl-held && dm mknodes bctl-held
sleep 600 </dev/mapper/bctl-held &
holder=$!
expect 1 "bsyncctl: device add held: '/dev/mapper/bctl-held' is open by sleep (pid $holder): its writes would bypass tracking; stop it, add the device, then give it /dev/mapper/held instead (or pass force to add it anyway)" \
	device add held /dev/mapper/bctl-held
bsyncctl device add held /dev/mapper/bctl-held --force && bsyncctl device remove held
ok $? "device add --force over a held origin, then remove"
kill $holder; wait $holder 2>/dev/null
bsyncctl device add held /dev/mapper/bctl-held && bsyncctl device remove held
ok $? "once its holder is gone the origin is accepted"
dm remove bctl-held
expect 1 "bsyncctl: device remove nope: Cannot find device='nope' nor node-name='nope'" device remove nope
expect 1 "bsyncctl: bitmap add nope b: Cannot find device='nope' nor node-name='nope'" bitmap add nope b
expect 1 "bsyncctl: bitmap add $node b: Bitmap already exists: b" bitmap add $node b
expect 1 "bsyncctl: bitmap add $node c: Granularity must be power of 2 and at least 512" bitmap add $node c -g 3000
expect 1 "bsyncctl: bitmap add $node c: Granularity must be at most 1 GiB on a bsync device" bitmap add $node c -g 2G
expect 1 "bsyncctl: bitmap add $node x: Can't store persistent bitmaps to $node: Operation not supported" \
	bitmap add $node x --persistent
expect 1 "bsyncctl: bitmap add $node a/b: Bitmap name 'a/b': character '/' is not allowed on a bsync device (use letters, digits and _-.:+@)" \
	bitmap add $node a/b
for v in remove clear enable disable; do
	expect 1 "bsyncctl: bitmap $v $node zz: Dirty bitmap 'zz' not found" bitmap $v $node zz
	expect 1 "bsyncctl: bitmap $v nope b: Node 'nope' not found" bitmap $v nope b
done
expect 1 "bsyncctl: bitmap merge $node b: Dirty bitmap 'zz' not found" bitmap merge $node b zz
expect 1 "bsyncctl: bitmap merge $node zz: Dirty bitmap 'zz' not found" bitmap merge $node zz b
expect 1 "bsyncctl: bitmap list nope: Cannot find device='nope' nor node-name='nope'" bitmap list nope
expect 1 "bsyncctl: backup nope: Cannot find device='nope' nor node-name='nope'" \
	backup nope "$dir/x.qcow2" --sync full
expect 1 "bsyncctl: backup $node: Bitmap 'zz' could not be found" \
	backup $node "$dir/x.qcow2" --sync incremental --bitmap zz
expect 1 "bsyncctl: backup $node: must provide a valid bitmap name for 'bitmap' sync mode" \
	backup $node "$dir/x.qcow2" --sync bitmap
expect 1 "bsyncctl: backup $node: Cannot specify bitmap sync mode without a bitmap" \
	backup $node "$dir/x.qcow2" --sync full --bitmap-mode always
expect 1 "bsyncctl: backup $node: Invalid job ID '1st'" backup $node "$dir/x.qcow2" --sync full --job-id 1st
expect 1 "bsyncctl: backup $node: 'backing-file' cannot be used with mode 'existing'" \
	backup $node "$dir/x.qcow2" --sync full --existing --backing y.qcow2
expect 1 "bsyncctl: backup $node: Could not open '$dir/missing.qcow2': *" \
	backup $node "$dir/missing.qcow2" --sync full --existing
for v in finalize cancel dismiss pause resume; do
	expect 1 "bsyncctl: job $v nojob: Job not found" job $v nojob
done
expect 1 "bsyncctl: job wait nojob: Job not found" job wait nojob
[ ! -e "$dir/x.qcow2" ]
ok $? "no refused backup left a target behind"

# --- a job that fails, one that is cancelled, and verbs in the wrong state
# (4 MiB of data: a full backup has something to read, slowly)
qemu-io -f raw -t none -c "write -P0x5a 8M 4M" /dev/mapper/$node >/dev/null
qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"x-debug-inject-error\", \"arguments\": {\"device\": \"$node\", \"operation\": \"read\", \"errno\": 5}}" >/dev/null
expect 1 "bsyncctl: backup $node: job '$node' failed: *" backup $node "$dir/f.qcow2" --sync full --wait
expect_eq b "$(bsyncctl bitmap list $node -q)" "bitmap list -q prints just the name"

bsyncctl backup $node "$dir/c.qcow2" --sync full --speed 512K --wait >"$dir/c.out" 2>"$dir/c.err" &
bg=$!
for ((i = 0; i < 100; i++)); do
	[ "$(bsyncctl job list -q)" = "$node" ] && break
	sleep 0.1
done
expect 1 "bsyncctl: job finalize $node: Job '$node' in state 'running' cannot accept command verb 'finalize'" \
	job finalize $node
expect 1 "bsyncctl: job dismiss $node: Job '$node' in state 'running' cannot accept command verb 'dismiss'" \
	job dismiss $node
bsyncctl job cancel $node
ok $? "job cancel"
wait $bg
expect_eq 4 $? "backup --wait of a cancelled job exits 4"
expect_eq "bsyncctl: backup $node: job '$node' was cancelled" "$(cat "$dir/c.err")" "and says so on stderr"
expect_eq "" "$(cat "$dir/c.out")" "with nothing on stdout"

bsyncctl device remove $node
ok $? "device remove"
tap_done
