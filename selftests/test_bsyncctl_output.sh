#!/bin/bash
# bsyncctl's output: --json parses with json-c and holds the same facts as
# the table (devices, bitmaps with a frozen one's successor, jobs); events
# stream one JSON object a line; "backup --wait" draws a progress bar under
# a pseudo-terminal (script) and, piped, prints nothing until the job ends
# and then one line free of control characters.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

top=$(cd "$(dirname "$0")/.." && pwd)
jsonc="$top/userspace/build/san/tests/test-cli-output --parse"
disk=${BSYNC_DISK0:?no scratch disk}
size=$((64 * 1024 * 1024))
lin=bout-lin
node=out0
dir=$(mktemp -d /tmp/bsyncctl-out.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK

cleanup() {
	[ -n "${evpid:-}" ] && kill "$evpid" 2>/dev/null
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $lin 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

bsyncd_start
ok $? "bsyncd starts"
echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=64 oflag=direct status=none
# 32 MiB of data before the bitmaps, 4 MiB after: backups take a while at --speed.
bsyncctl device add $node /dev/mapper/$lin --zeroed &&
	qemu-io -f raw -t none -c "write -P0x11 0 32M" /dev/mapper/$node >/dev/null &&
	bsyncctl bitmap add $node a &&
	bsyncctl bitmap add $node fine -g 4K --disabled
ok $? "device and two bitmaps"
qemu-io -f raw -t none -c "write -P0x22 40M 4M" /dev/mapper/$node >/dev/null

# json_ok CMD...: run with --json, check json-c parses it, keep it in $dir/j
json_ok() {
	bsyncctl --json "$@" >"$dir/j" && $jsonc <"$dir/j" >/dev/null
}

# --- device list
json_ok device list
ok $? "device list --json parses with json-c"
expect_eq "$node $size 2 /dev/mapper/$node" \
	"$(jq -r --arg n $node '.[] | select(."node-name" == $n) | "\(."node-name") \(.size) \(."dirty-bitmaps" | length) \(.file)"' "$dir/j")" \
	"device list --json: name, size, bitmaps, path"
expect_eq "$node $size 2 /dev/mapper/$node" "$(bsyncctl device list --bytes | awk -v n=$node '$1 == n {print $1, $2, $3, $4}')" \
	"device list --bytes: the same facts"
expect_eq "NAME    SIZE  BITMAPS  PATH" "$(bsyncctl device list | head -1)" "device list header"
expect_eq "$node  64 MiB        2  /dev/mapper/$node" "$(bsyncctl device list | sed -n 2p)" \
	"device list row, size in MiB, aligned"

# --- bitmap list, with a frozen bitmap's successor during a slow backup
table_bitmaps() { bsyncctl bitmap list $node --bytes | tail -n +2 | awk '{print $2, $3, $4, $5, $6}'; }
json_bitmaps() {
	jq -r '.[] | ."dirty-bitmaps"[] | "\(.name // "-") \(.granularity) \(.count) \(if .recording then "yes" else "no" end) \(if .busy then "yes" else "no" end)"' "$dir/j"
}
json_ok bitmap list $node
ok $? "bitmap list --json parses with json-c"
expect_eq "a 65536 4194304 yes no
fine 4096 0 no no" "$(json_bitmaps)" "bitmap list --json: names, granularity, count, recording, busy"
expect_eq "$(json_bitmaps)" "$(table_bitmaps)" "bitmap list --bytes holds the same facts"
expect_eq "out0    a          64 KiB  4 MiB  yes        no    no          no" "$(bsyncctl bitmap list $node | sed -n 2p)" \
	"bitmap list row in human units"

# Paused at once, so that it cannot end between two looks on a busy host.
bsyncctl backup $node "$dir/slow.qcow2" --sync incremental --bitmap a --speed 512k --no-auto-dismiss >/dev/null &&
	bsyncctl job pause $node
ok $? "slow incremental started and paused"
qemu-io -f raw -t none -c "write 20M 64k" /dev/mapper/$node >/dev/null
json_ok bitmap list $node
expect_eq "a 65536 4194304 yes yes
- 65536 65536 yes no
fine 4096 0 no no" "$(json_bitmaps)" "frozen bitmap is busy and followed by its successor"
expect_eq "$(json_bitmaps)" "$(table_bitmaps)" "the table shows the successor as '-' with the same facts"

# --- job list while it runs and once concluded
json_ok job list
ok $? "job list --json parses with json-c"
expect_eq "$node backup" "$(jq -r '.[] | "\(.id) \(.type)"' "$dir/j")" "job list --json: id and type"
expect_eq "$node backup" "$(bsyncctl job list | awk 'NR == 2 {print $1, $2}')" "job list table: id and type"
bsyncctl job resume $node && bsyncctl job wait $node >/dev/null
ok $? "job resume, job wait"
json_ok job list
expect_eq "$node backup concluded 4194304 4194304 100% -" \
	"$(jq -r '.[] | "\(.id) \(.type) \(.status) \(."current-progress") \(."total-progress") 100% \(.error // "-")"' "$dir/j")" \
	"concluded job in --json"
expect_eq "$(jq -r '.[] | "\(.id) \(.type) \(.status) \(."current-progress") \(."total-progress") 100% \(.error // "-")"' "$dir/j")" \
	"$(bsyncctl job list --bytes | awk 'NR == 2 {print $1, $2, $3, $4, $5, $6, $7}')" "and the same facts in the table"
bsyncctl job dismiss $node
expect_eq "" "$(bsyncctl job list -q)" "dismissed"

# --- events, and backup --json --wait
bsyncctl --json events --count 7 >"$dir/ev" &
evpid=$!
bsyncctl events -n 7 >"$dir/evh" &
evhpid=$!
sleep 0.5
bsyncctl --json backup $node "$dir/ev.qcow2" --sync full --wait >"$dir/done"
ok $? "backup --json --wait"
$jsonc <"$dir/done" >/dev/null && expect_eq "BLOCK_JOB_COMPLETED $node $size" \
	"$(jq -r '"\(.event) \(.data.device) \(.data.offset)"' "$dir/done")" \
	"backup --json --wait prints the completion event"
wait $evpid
ok $? "events --count 7 ends after 7 events"
evpid=
wait $evhpid
expect_eq 7 "$($jsonc <"$dir/ev" | wc -l)" "events --json: 7 lines, each parsed by json-c"
expect_eq "JOB_STATUS_CHANGE:created JOB_STATUS_CHANGE:running JOB_STATUS_CHANGE:waiting JOB_STATUS_CHANGE:pending BLOCK_JOB_COMPLETED JOB_STATUS_CHANGE:concluded JOB_STATUS_CHANGE:null" \
	"$(jq -r 'if .event == "JOB_STATUS_CHANGE" then .event + ":" + .data.status else .event end' "$dir/ev" | xargs)" \
	"events: a backup's life"
expect_eq "$(jq -r .event "$dir/ev" | xargs)" "$(awk '{print $3}' "$dir/evh" | xargs)" \
	"human events show the same names, after the date and time"

# --- progress bar under a pty, nothing but one line when piped
script -qfec "bsyncctl backup $node $dir/tty.qcow2 --sync full --speed 12M --wait" /dev/null >"$dir/tty"
ok $? "backup --wait under a pty exits 0"
grep -q $'\r\[#*\.*\]  *[0-9]*%  .* MiB / 64 MiB  .*/s  ETA  *[-0-9:]*' "$dir/tty"
ok $? "under a pty: a progress bar with percent, amounts, rate and ETA, redrawn with CR" ||
	head -c 400 "$dir/tty" | cat -A | sed 's/^/#   /'
expect_eq "job '$node' completed: 64 MiB of 64 MiB" "$(tr '\r' '\n' <"$dir/tty" | sed 's/\x1b\[K//g' | grep -a . | tail -1)" \
	"under a pty: the bar is erased and the outcome printed"
[ "$(tr '\r' '\n' <"$dir/tty" | grep -ac '%')" -ge 3 ]
ok $? "the bar was redrawn as the job went on"

bsyncctl backup $node "$dir/pipe.qcow2" --sync full --speed 8M --wait | cat >"$dir/pipe" &
pp=$!
sleep 1.5
expect_eq 0 "$(stat -c %s "$dir/pipe")" "piped: nothing printed while the job runs"
wait $pp
ok $? "piped backup --wait exits 0"
expect_eq "job '$node' completed: 64 MiB of 64 MiB" "$(cat "$dir/pipe")" "piped: only the outcome line"
expect_eq 0 "$(tr -d '\n' <"$dir/pipe" | LC_ALL=C tr -d '[:print:]' | wc -c)" "piped: no control characters"

# --- the other bitmap verbs, checked through --json
bm() { bsyncctl --json bitmap list $node | jq -r --arg b "$1" --arg f "$2" '.[] | ."dirty-bitmaps"[] | select(.name == $b) | .[$f]'; }
bsyncctl bitmap merge $node fine a && expect_eq "65536 false" "$(bm fine count) $(bm fine recording)" \
	"bitmap merge: the disabled 4K bitmap gets a's 64K cluster, as sixteen 4K ones"
bsyncctl bitmap enable $node fine && expect_eq true "$(bm fine recording)" "bitmap enable"
bsyncctl bitmap disable $node fine && expect_eq false "$(bm fine recording)" "bitmap disable"
bsyncctl bitmap clear $node fine && expect_eq 0 "$(bm fine count)" "bitmap clear"
bsyncctl bitmap remove $node fine && expect_eq "a" "$(bsyncctl bitmap list $node -q)" "bitmap remove"

# --- a job id of our own, pending until finalized
out=$(bsyncctl backup $node "$dir/p.qcow2" --sync incremental --bitmap a --job-id nightly-1 \
	--no-auto-finalize --no-auto-dismiss --wait)
expect_eq "0 job 'nightly-1' is pending: 'bsyncctl job finalize nightly-1' ends it" "$? $out" \
	"--no-auto-finalize --wait returns when the job is pending"
expect_eq "nightly-1 pending true" "$(bsyncctl --json job list | jq -r '.[] | "\(.id) \(.status) \(has("error") | not)"')" \
	"the job waits, pending, without error"
expect_eq 0 "$(bm a busy | grep -c false)" "its bitmap is still in use until finalize"
bsyncctl job finalize nightly-1
ok $? "job finalize"
out=$(bsyncctl job wait nightly-1)
expect_eq "0 job 'nightly-1' completed: 64 KiB of 64 KiB" "$? $out" "job wait then reports the completion"
bsyncctl job dismiss nightly-1
expect_eq "0 false" "$(bm a count) $(bm a busy)" "on-success applied at finalize: a is clean and free"

# --- interrupting --wait leaves the job running
qemu-io -f raw -t none -c "write -P0x33 0 8M" /dev/mapper/$node >/dev/null
bsyncctl backup $node "$dir/i.qcow2" --sync incremental --bitmap a --speed 1M --wait >/dev/null 2>"$dir/i.err" &
ip=$!
for ((i = 0; i < 100; i++)); do
	[ "$(bsyncctl job list -q)" = "$node" ] && break
	sleep 0.1
done
sleep 0.5
kill -INT $ip
wait $ip
expect_eq 130 $? "SIGINT during --wait: exit 130"
expect_eq "bsyncctl: backup $node: interrupted; job '$node' goes on ('bsyncctl job list' shows it)" \
	"$(cat "$dir/i.err")" "and says the job goes on"
expect_eq running "$(bsyncctl --json job list | jq -r '.[0].status')" "the job is still running"
bsyncctl job cancel $node
bsyncctl job wait $node >/dev/null 2>&1
st=$?
[ $st -eq 4 ] || [ $st -eq 1 ]	# cancelled, or already gone (auto-dismissed): "Job not found"
ok $? "job cancel; job wait: cancelled or already dismissed (exit $st)"

bsyncctl device remove $node
ok $? "device remove"
tap_done
