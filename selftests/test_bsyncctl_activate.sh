#!/bin/bash
# bsyncctl activate and /etc/bsynctab: what bsync-activate.service does at
# boot.  Two devices (one with a metadata device and a persistent bitmap)
# come up with the declared tables; after both are removed (what a reboot
# does to dm devices) they come up again with the persistent bitmap's dirty
# bits; a second run is a no-op; a missing origin, a name held by another
# device, a parse error and a duplicate name each fail only their entry, with
# the exact message and exit status; --wait picks up an origin that appears
# late; --json's shape; bsyncd down; bsyncd's READY=1 to $NOTIFY_SOCKET.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk0=${BSYNC_DISK0:?no scratch disk}
disk1=${BSYNC_DISK1:?needs a second scratch disk}
dir=$(mktemp -d /tmp/bsyncctl-act.XXXXXX)
export BSYNCD_SOCKET=$BSYNCD_SOCK
late_pid=
holder=

cleanup() {
	[ -n "$late_pid" ] && kill "$late_pid" 2>/dev/null
	[ -n "$holder" ] && kill "$holder" 2>/dev/null
	bsyncd_stop
	for d in act0 act1 act2 act3 act4 act5 act9 act-lin-a act-lin-b act-lin-c act-md-a \
		act-late act-held; do
		dm remove $d 2>/dev/null
	done
	rm -rf "$dir"
}
trap cleanup EXIT

# linear NAME DISK OFFSET-MiB SIZE-MiB
linear() {
	echo "0 $(($4 * 2048)) linear $2 $(($3 * 2048))" | dm create "$1" && dm mknodes "$1"
}
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
majmin() { read -r ma mi <<<"$(stat -L -c '%t %T' "$1")" && echo "$((0x$ma)):$((0x$mi))"; }

# act ARGS...: run bsyncctl activate; $out, $err (files' text) and $st.
act() {
	bsyncctl activate "$@" >"$dir/out" 2>"$dir/err"
	st=$?
	out=$(cat "$dir/out")
	err=$(cat "$dir/err")
}

linear act-lin-a "$disk0" 0 64
linear act-lin-b "$disk1" 0 64
linear act-lin-c "$disk1" 64 64
linear act-md-a "$disk1" 192 4
dd if=/dev/zero of=/dev/mapper/act-md-a bs=1M count=4 oflag=direct status=none
bsyncd_start
ok $? "bsyncd starts"

lin_a=$(majmin /dev/mapper/act-lin-a)
lin_b=$(majmin /dev/mapper/act-lin-b)
md_a=$(majmin /dev/mapper/act-md-a)
tab=$dir/bsynctab
cat >"$tab" <<EOF
# test devices
act0  /dev/mapper/act-lin-a  metadata=/dev/mapper/act-md-a

act1	/dev/mapper/act-lin-b	zeroed   # no metadata device
EOF

# --- first activation: both come up with the declared tables
act --config "$tab"
expect_eq "0" "$st" "activate: exit 0 ($err)"
expect_eq "act0: activated over /dev/mapper/act-lin-a (persistent bitmaps: none)
act1: activated over /dev/mapper/act-lin-b (persistent bitmaps: none)" "$out" "activate reports both"
expect_eq "" "$err" "nothing on stderr"
expect_eq "0 131072 bsync $lin_a 2 metadata $md_a" "$(dm table act0)" "act0's table: origin and metadata"
expect_eq "0 131072 bsync $lin_b 1 zeroed" "$(dm table act1)" "act1's table: origin, zeroed"

# --- a persistent bitmap with dirty bits survives remove + activate
bsyncctl bitmap add act0 pb --persistent && bsyncctl bitmap add act0 vol
ok $? "a persistent and a plain bitmap on act0"
for i in 0 1 2 3; do
	dd if=/dev/urandom of=/dev/mapper/act0 bs=4k count=1 seek=$((i * 256)) oflag=direct status=none
done
expect_eq "4" "$(bm_count act0 pb)" "four clusters dirty in pb"
bsyncctl device remove act0 && bsyncctl device remove act1
ok $? "both devices removed, as by a reboot"
[ ! -e /dev/mapper/act0 ] && [ ! -e /dev/mapper/act1 ]
ok $? "/dev/mapper/act0 and act1 are gone"
act --config "$tab"
expect_eq "0" "$st" "activate after the 'reboot': exit 0 ($err)"
expect_eq "act0: activated over /dev/mapper/act-lin-a (persistent bitmaps: pb)
act1: activated over /dev/mapper/act-lin-b (persistent bitmaps: none)" "$out" \
	"activate names the persistent bitmap that came back"
expect_eq "4" "$(bm_count act0 pb)" "pb is back with its four dirty clusters"
expect_eq "pb" "$(bsyncctl bitmap list act0 -q | xargs)" "the plain bitmap did not survive"

# --- idempotent
t0=$(dm table act0)
t1=$(dm table act1)
act --config "$tab"
expect_eq "0" "$st" "a second activate: exit 0"
expect_eq "act0: already active
act1: already active" "$out" "a second activate: already active"
expect_eq "" "$err" "a second activate: nothing on stderr"
expect_eq "$t0 / $t1 / 4" "$(dm table act0) / $(dm table act1) / $(bm_count act0 pb)" \
	"a second activate changes nothing"

# --- a missing origin fails its entry only
bsyncctl device remove act1
tab2=$dir/bsynctab2
cat >"$tab2" <<EOF
act0 /dev/mapper/act-lin-a metadata=/dev/mapper/act-md-a
act2 /dev/mapper/act-nope
act1 /dev/mapper/act-lin-b zeroed
EOF
miss="origin /dev/mapper/act-nope does not exist: attach the disk, or correct the path in $tab2:2"
act --config "$tab2"
expect_eq "1" "$st" "a missing origin: exit 1"
expect_eq "act0: already active
act1: activated over /dev/mapper/act-lin-b (persistent bitmaps: none)" "$out" \
	"the other entries still come up"
expect_eq "bsyncctl: activate act2: $miss
bsyncctl: activate: 1 of 3 devices declared in $tab2 could not be brought up:
  act2: $miss" "$(head -3 "$dir/err")" "the error and the summary name the device and the path"
grep -q "^Where /dev/mapper/NAME is absent, a VM configured on it fails to start rather than run untracked" "$dir/err"
ok $? "the summary says what an absent device means"
[ ! -e /dev/mapper/act2 ] && ! dm info act2 >/dev/null 2>&1
ok $? "no device act2"

# --- --json: one object per entry
bsyncctl device remove act1
act --config "$tab2" --json
expect_eq "1" "$st" "--json with a failure: exit 1"
expect_eq '[["act0","/dev/mapper/act-lin-a","active",null],["act2","/dev/mapper/act-nope","failed","'"$miss"'"],["act1","/dev/mapper/act-lin-b","activated",null]]' \
	"$(jq -c '[.[] | [.name, .origin, .state, .error]]' <<<"$out")" "--json: name, origin, state, error"
expect_eq '["name","origin","state"] ["error","name","origin","state"] ["name","origin","state"]' \
	"$(jq -c '.[] | keys' <<<"$out" | xargs -d '\n' echo)" \
	"--json: error only on the failed entry, nothing else"
act --config "$tab" --json
expect_eq "0 active active" "$st $(jq -r '.[].state' <<<"$out" | xargs)" "--json when all are up"

# --- a name held by another device: the error names both
tab3=$dir/bsynctab3
cat >"$tab3" <<EOF
act1 /dev/mapper/act-lin-c
act0 /dev/mapper/act-lin-a
act-lin-c /dev/mapper/act-lin-b
EOF
fix1="once nothing uses it, remove it with 'bsyncctl device remove act1' (or correct $tab3:1), then run 'bsyncctl activate' again"
fix0="once nothing uses it, remove it with 'bsyncctl device remove act0' (or correct $tab3:2), then run 'bsyncctl activate' again"
d1=$(majmin "$disk1")
d1name=/dev/$(sed -n 's/^DEVNAME=//p' "/sys/dev/block/$d1/uevent")
act --config "$tab3"
expect_eq "1" "$st" "names held by other devices: exit 1"
expect_eq "" "$out" "nothing activated"
expect_eq "bsyncctl: activate act1: /dev/mapper/act1 is a bsync device over /dev/mapper/act-lin-b ($lin_b), not over /dev/mapper/act-lin-c: $fix1" \
	"$(sed -n 1p "$dir/err")" "another origin: both named"
expect_eq "bsyncctl: activate act0: /dev/mapper/act0 is a bsync device over /dev/mapper/act-lin-a with metadata device /dev/mapper/act-md-a ($md_a), but $tab3:2 declares none: $fix0" \
	"$(sed -n 2p "$dir/err")" "another metadata device: both named"
expect_eq "bsyncctl: activate act-lin-c: /dev/mapper/act-lin-c already exists as a 'linear' device over $d1name ($d1), not a bsync device over /dev/mapper/act-lin-b: rename or remove that device (dmsetup), or give this one another name in $tab3:3, then run 'bsyncctl activate' again" \
	"$(sed -n 3p "$dir/err")" "a non-bsync device of that name: both named"
expect_eq "bsyncctl: activate: 3 of 3 devices declared in $tab3 could not be brought up:" \
	"$(sed -n 4p "$dir/err")" "the summary counts them"
expect_eq "$t0 / $(majmin /dev/mapper/act-lin-b)" "$(dm table act0) / $(dm table act1 | cut -d' ' -f4)" \
	"the existing devices are untouched"

# --- --wait: an origin that appears within the wait is activated
tab4=$dir/bsynctab4
echo "act3 /dev/mapper/act-late zeroed" >"$tab4"
(_dmq_w= && sleep 1 && linear act-late "$disk1" 128 32) & # dm alone: see lib.sh
late_pid=$!
t=$(date +%s.%N)
act --config "$tab4" --wait 20
took=$(since "$t")
wait $late_pid
late_pid=
expect_eq "0 act3: activated over /dev/mapper/act-late (persistent bitmaps: none)" "$st $out" \
	"--wait 20: the origin made after 1 s is activated ($err)"
awk -v t="$took" 'BEGIN { exit !(t >= 1 && t < 15) }' 
ok $? "it waited for it, not for the whole 20 s (${took} s)"
expect_eq "0 65536 bsync $(majmin /dev/mapper/act-late) 1 zeroed" "$(dm table act3)" "act3's table"
echo "act4 /dev/mapper/act-never" >"$tab4"
t=$(date +%s.%N)
act --config "$tab4" --wait 2
took=$(since "$t")
expect_eq "1 bsyncctl: activate act4: origin /dev/mapper/act-never did not appear within 2 s: attach the disk, or correct the path in $tab4:1" \
	"$st $(head -1 "$dir/err")" "--wait 2: a path that never comes"
awk -v t="$took" 'BEGIN { exit !(t >= 2 && t < 10) }' 
ok $? "it waited 2 s (${took} s)"

# --- never forced: an origin a program holds open is refused, naming it
linear act-held "$disk1" 160 16
# shellcheck disable=SC2217 # the open stdin is the point
sleep 600 </dev/mapper/act-held &
holder=$!
echo "act4 /dev/mapper/act-held" >"$tab4"
act --config "$tab4"
expect_eq "1 bsyncctl: activate act4: '/dev/mapper/act-held' is open by sleep (pid $holder): its writes would bypass tracking; stop it, add the device, then give it /dev/mapper/act4 instead ('bsyncctl activate' adds it)" \
	"$st $(head -1 "$dir/err")" "a held origin: refused, the holder named, no force"
! dm info act4 >/dev/null 2>&1
ok $? "no device act4 over the held origin"
kill $holder
wait $holder 2>/dev/null
holder=

# --- parse errors: FILE:LINE, the good lines still come up
tab5=$dir/bsynctab5
cat >"$tab5" <<EOF
# line 1
act9 /dev/mapper/act-lin-c foo
act5 /dev/mapper/act-lin-c
act0 /dev/mapper/act-lin-a metadata=/dev/mapper/act-md-a
act4 /dev/sdzz zeroed,metadata
act4 /dev/sdzy
EOF
act --config "$tab5"
expect_eq "1" "$st" "parse errors: exit 1"
expect_eq "bsyncctl: $tab5:2: unknown option 'foo' (known: metadata=PATH, zeroed)
bsyncctl: $tab5:5: option 'metadata' needs a path: metadata=PATH (the metadata device)
bsyncctl: $tab5:6: duplicate name 'act4' (also on line 5): neither line is activated; give each device its own name
bsyncctl: activate: 3 of 5 devices declared in $tab5 could not be brought up:
  act9: $tab5:2: unknown option 'foo' (known: metadata=PATH, zeroed)
  act4: $tab5:5: option 'metadata' needs a path: metadata=PATH (the metadata device)
  act4: $tab5:6: duplicate name 'act4' (also on line 5): neither line is activated; give each device its own name" \
	"$(head -7 "$dir/err")" "each bad line named by FILE:LINE, in the summary too"
expect_eq "act5: activated over /dev/mapper/act-lin-c (persistent bitmaps: none)
act0: already active" "$out" "the good lines are applied"
! dm info act9 >/dev/null 2>&1 && ! dm info act4 >/dev/null 2>&1
ok $? "no device for the bad lines"
act --config "$dir/none"
expect_eq "1 bsyncctl: activate: cannot read $dir/none: No such file or directory (it declares the devices to bring up: see bsynctab(5), Documentation/bsynctab.rst)" \
	"$st $err" "a missing file"
act --config "$tab" --wait 1x
expect_eq "2 bsyncctl: activate: --wait: '1x' is not a number of seconds from 0 to 3600" \
	"$st $(head -1 "$dir/err")" "a bad --wait: usage error"

# --- bsyncd down: the active devices are reported, the others fail with exit 3
bsyncctl device remove act1
bsyncd_stop
down="cannot connect to bsyncd at $BSYNCD_SOCK: No such file or directory (bsyncd is not running: start it with 'systemctl start bsyncd', or run 'bsyncd --socket PATH' and pass bsyncctl the same --socket PATH)"
rm -f "$BSYNCD_SOCK"
act --config "$tab"
expect_eq "3 act0: already active" "$st $out" "bsyncd down: exit 3, act0 still reported active"
expect_eq "bsyncctl: activate act1: $down" "$(head -1 "$dir/err")" "bsyncd down: the entry says so"

# --- READY=1 to $NOTIFY_SOCKET, a path and an abstract name, once the socket listens
n=0
for ns in "$dir/notify.sock" "@bsyncd-test-notify-$$"; do
	n=$((n + 1))
	python3 - "$ns" "$BSYNCD_SOCK" "$dir/bound$n" >"$dir/notify" 2>&1 <<'EOF' &
import socket, sys
ns, qmp, bound = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + ns[1:] if ns[0] == "@" else ns)
open(bound, "w").close()
s.settimeout(30)
msg = s.recv(256).decode()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(qmp)              # the QMP socket must accept by now
greeting = c.recv(4096).decode()
print(msg, "QMP" in greeting)
EOF
	py=$!
	for ((i = 0; i < 200; i++)); do
		[ -e "$dir/bound$n" ] && break
		sleep 0.05
	done
	export NOTIFY_SOCKET=$ns
	bsyncd_start
	unset NOTIFY_SOCKET
	wait $py
	expect_eq "READY=1 True" "$(cat "$dir/notify")" "bsyncd notifies $ns once QMP accepts"
	bsyncd_stop
done

tap_done
