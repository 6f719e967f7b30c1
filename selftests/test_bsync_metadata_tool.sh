#!/bin/bash
# bsync-metadata against the kernel: persistent bitmaps of several
# granularities, random writes, device removed; then check (0), dump --json
# (the same counts and extents as the kernel's list and extents said),
# and copies of the metadata with a flipped byte in the current superblock
# (the older one is used), in both superblocks (check 1, the kernel
# refuses) and in one bitmap's bits (that bitmap inconsistent), each with
# the tool's verdict compared with what the kernel loads from the copy.
# repair, then the kernel loads what repair wrote.
. "$(dirname "$0")/lib.sh"

origin=${BSYNC_DISK0:?no scratch disk}
mdisk=${BSYNC_DISK1:?no second scratch disk}
dev=bmt-dev
size=$((64 * 1024 * 1024))
sectors=$((size / 512))
mdsect=$((4 * 1024 * 1024 / 512))		# 1024 blocks
dir=$(mktemp -d /tmp/bmt.XXXXXX)
md=/dev/mapper/bmt-md
copy=/dev/mapper/bmt-copy

cleanup() {
	dm remove $dev 2>/dev/null
	dm remove bmt-md 2>/dev/null
	dm remove bmt-copy 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# The metadata and the device a corrupted copy of it is written to: two
# slices of the second disk.
echo "0 $mdsect linear $mdisk 0" | dm create bmt-md && dm mknodes bmt-md
echo "0 $mdsect linear $mdisk $mdsect" | dm create bmt-copy && dm mknodes bmt-copy
blkdiscard -z $md 2>/dev/null || dd if=/dev/zero of=$md bs=1M count=4 oflag=direct status=none

create() { bsync_create $dev "$origin" $sectors 2 metadata "$1"; }
# Every bitmap as "name count recording inconsistent persistent" and its extents.
kernel_view() {
	dm message $dev 0 list | awk '$1 == "bitmap" {
		delete f
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		print f["name"], f["count"], f["recording"], f["inconsistent"], f["persistent"] }' |
	while read -r b rest; do
		echo "$b $rest"
		echo "$b: $(extents $dev "$b" | xargs)"
	done
}
# The same from a dump --json of $1.
tool_view() {
	bsync-metadata dump "$1" --json | jq -r '.bitmaps[] |
		"\(.name) \(.count) \(if .recording then 1 else 0 end) \(if .inconsistent then 1 else 0 end) 1",
		"\(.name): \([.extents[] | "\(.offset):\(.length)"] | join(" "))"'
}
# flip BLOCK BYTE: xor one byte of the copy device
flip() {
	local off=$(($1 * 4096 + $2)) v
	v=$(dd if=$copy bs=1 skip=$off count=1 status=none | od -An -tu1 | tr -d ' ')
	printf "$(printf '\\%03o' $((v ^ 0x5a)))" | dd of=$copy bs=1 seek=$off count=1 conv=notrunc status=none
}
fresh_copy() { dd if=$md of=$copy bs=1M iflag=direct oflag=direct status=none; }

# --- a device with persistent bitmaps, random writes, removed
create $md
ok $? "bsync device with a metadata device"
dm message $dev 0 add g64k 65536 persistent &&
	dm message $dev 0 add g4k 4096 persistent &&
	dm message $dev 0 add g1m 1048576 persistent &&
	dm message $dev 0 add off 65536 persistent disabled &&
	dm message $dev 0 add mem 65536
ok $? "four persistent bitmaps (64 KiB, 4 KiB, 1 MiB, one disabled) and one in memory"
rand_writes $dev 40 192 $((size - 256 * 1024))
dm message $dev 0 disable g1m
rand_writes $dev 10 192 $((size - 256 * 1024))
kernel_view | grep -v '^mem' >"$dir/kernel"
dm remove $dev
ok $? "device removed"

bsync-metadata check $md >"$dir/out" 2>"$dir/err"
ok $? "check: consistent ($(cat "$dir/err"))"
expect_eq "" "$(cat "$dir/out")" "check lists no problem"
tool_view $md >"$dir/tool"
if diff -u "$dir/kernel" "$dir/tool" >"$dir/diff"; then
	ok 0 "dump --json: every bitmap's count, state and extents as the kernel had them"
else
	ok 1 "dump --json differs from the kernel:"
	sed 's/^/# /' "$dir/diff" | head -40
fi
expect_eq "true 4" "$(bsync-metadata dump $md --json | jq -r '"\(.clean) \(.bitmaps | length)"')" \
	"clean, four persistent bitmaps (the in-memory one is not kept)"
bsync-metadata dump $md | grep -q "^  bitmap g4k: granularity 4096"
ok $? "text dump"

# The tool refuses a metadata device the kernel holds.
create $md
bsync-metadata check $md >/dev/null 2>"$dir/err"
expect_eq 2 $? "check while the kernel holds it: exit 2"
grep -q "cannot open $md exclusively" "$dir/err"
ok $? "... saying it is in use"
kernel_view | grep -v '^mem' >"$dir/kernel2"
dm remove $dev
expect_eq "" "$(diff "$dir/kernel" "$dir/kernel2")" "the kernel reloads the same bitmaps"

cur=$(bsync-metadata dump $md --json | jq '.superblocks | map(.current) | index(true)')
gen=$(bsync-metadata dump $md --json | jq .generation)

# --- a flipped byte in the current superblock: the other one is used
fresh_copy
flip "$cur" 200
bsync-metadata check $copy >"$dir/out" 2>/dev/null
expect_eq 1 $? "current superblock damaged: check exits 1"
grep -q "^superblock $cur: bad checksum" "$dir/out"
ok $? "... naming superblock $cur"
expect_eq $((gen - 1)) "$(bsync-metadata dump $copy --json | jq .generation)" \
	"dump uses the other superblock (generation $((gen - 1)))"
tool_view $copy >"$dir/tool"
if create $copy; then
	ok 0 "the kernel loads the copy"
	kernel_view >"$dir/kernel3"
	dm remove $dev
	expect_eq "" "$(diff "$dir/kernel3" "$dir/tool")" "the kernel loads what dump showed"
else
	ok 1 "the kernel loads the copy"
fi

# --- both superblocks damaged
fresh_copy
flip 0 200
flip 1 200
bsync-metadata check $copy >"$dir/out" 2>/dev/null
expect_eq 1 $? "both superblocks damaged: check exits 1"
grep -q "no valid superblock" "$dir/out"
ok $? "... no valid superblock"
bsync-metadata repair $copy >/dev/null 2>&1
expect_eq 1 $? "repair refuses"
create $copy 2>/dev/null && dm remove $dev
expect_eq 1 $? "the kernel refuses it too"

# --- one bitmap's bits damaged
fresh_copy
# (no process substitution: the guest has no /dev/fd)
read -r astart off <<<"$(bsync-metadata dump $md --json |
	jq -r '"\(."area-start"[.area]) \(.bitmaps[] | select(.name == "g4k") | .offset)"')"
[ -n "$astart" ] && [ -n "$off" ]
ok $? "g4k's bits are at block $astart + $off"
flip $((astart + off)) 10
bsync-metadata check $copy >"$dir/out" 2>/dev/null
expect_eq 1 $? "bits damaged: check exits 1"
grep -q "bitmap 'g4k': bad checksum" "$dir/out"
ok $? "... naming g4k"
expect_eq "g1m=0 g4k=1 g64k=0 off=0" \
	"$(bsync-metadata dump $copy --json | jq -r '[.bitmaps[] | "\(.name)=\(if .inconsistent then 1 else 0 end)"] | sort | join(" ")')" \
	"dump: only g4k inconsistent"
if create $copy; then
	expect_eq "1 0" "$(bitmap_field $dev g4k inconsistent) $(bitmap_field $dev g64k inconsistent)" \
		"the kernel loads g4k inconsistent, g64k not"
	dm remove $dev
else
	ok 1 "the kernel loads the copy with damaged bits"
fi

# --- repair of the damaged bits: a clean commit, the flag kept
fresh_copy
flip $((astart + off)) 10
bsync-metadata repair $copy >"$dir/out" 2>&1
ok $? "repair: $(tail -1 "$dir/out")"
bsync-metadata check $copy >/dev/null 2>&1
ok $? "check after repair: consistent"
expect_eq $((gen + 1)) "$(bsync-metadata dump $copy --json | jq .generation)" "repair wrote generation $((gen + 1))"
tool_view $copy >"$dir/tool"
if create $copy; then
	kernel_view >"$dir/kernel4"
	expect_eq "" "$(diff "$dir/kernel4" "$dir/tool")" "the kernel loads what repair wrote"
	expect_eq 1 "$(bitmap_field $dev g4k inconsistent)" "g4k still inconsistent"
	dm message $dev 0 clear g4k
	expect_eq 0 "$(bitmap_field $dev g4k inconsistent)" "clear makes it consistent"
	dm remove $dev
	bsync-metadata check $copy >/dev/null 2>&1
	ok $? "check after the kernel's commit"
else
	ok 1 "the kernel loads the repaired copy"
fi

# --- a device that crashed: the log is replayed (a live device's copy)
fresh_copy
create $copy
dm message $dev 0 clear g64k
rand_writes $dev 8 192 $((size - 256 * 1024))
kernel_view | grep -v '^mem' >"$dir/kernel5"
dd if=$copy of="$dir/live.img" bs=1M iflag=direct status=none	# as if the host died now
dm remove $dev
bsync-metadata check "$dir/live.img" >"$dir/out" 2>&1
ok $? "the metadata of a live device is consistent: $(tail -1 "$dir/out")"
expect_eq false "$(bsync-metadata dump "$dir/live.img" --json | jq .clean)" "... and not clean"
tool_view "$dir/live.img" >"$dir/tool"
# Replay may dirty more than the kernel had (never less): every kernel extent
# must be covered by the dump's.
bsync-metadata dump "$dir/live.img" --json >"$dir/live.json"
# One jq for all of them (a jq per extent took half the test).
grep ':' "$dir/kernel5" | awk '{ name = substr($1, 1, length($1) - 1)
	for (i = 2; i <= NF; i++) { split($i, e, ":"); print name, e[1], e[2] } }' >"$dir/kernel5.list"
n=$(wc -l <"$dir/kernel5.list")
missed=$(jq -R -r --slurpfile d "$dir/live.json" '
	split(" ") as [$n, $o, $l] | ($o | tonumber) as $o | ($l | tonumber) as $l |
	select(any($d[0].bitmaps[] | select(.name == $n) | .extents[];
		.offset <= $o and .offset + .length >= $o + $l) | not) | "\($n) \($o):\($l)"' \
	"$dir/kernel5.list" | xargs)
[ "$n" -gt 0 ] && [ -z "$missed" ]
ok $? "log replay covers every one of the $n extents the kernel had${missed:+ (not covered: $missed)}"

tap_done
