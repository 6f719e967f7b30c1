#!/bin/bash
# The four write groups of QEMU iotest 257, written with qemu-io on a 64 MiB
# bsync device, dirty exactly the clusters the test's emulated bitmap
# predicts, at 64 KiB and at 4 KiB, 512 B and 1 MiB granularity.
. "$(dirname "$0")/lib.sh"

dev=bt-seed
size=$((64 * 1024 * 1024))
disk=${BSYNC_DISK0:?no scratch disk}

# group -> "byte offset size" patterns (from the seed's GROUPS)
group[0]="0x49 0x0000000 65536;0x6c 0x0100000 65536;0x6f 0x2000000 65536;0x76 0x3ff0000 65536"
group[1]="0x65 0x0000000 65536;0x77 0x00f8000 65536;0x72 0x2008000 65536;0x69 0x3fe0000 65536"
group[2]="0x74 0x0010000 65536;0x69 0x00e8000 65536;0x6e 0x2018000 65536;0x67 0x3fe0000 131072"
group[3]="0xaa 0x0010000 196608;0xbb 0x00d8000 65536;0xcc 0x2028000 65536;0xdd 0x3fc0000 65536"

grans="65536 4096 512 1048576"
# The model: for each granularity, the set of its dirty cluster numbers.
# shellcheck disable=SC2034 # read and written through namerefs
declare -A m65536 m4096 m512 m1048576

model_group() {
	local g=$1 gran p byte off len c
	IFS=';' read -ra pats <<<"${group[$g]}"
	for gran in $grans; do
		local -n m=m$gran
		for p in "${pats[@]}"; do
			read -r byte off len <<<"$p"
			for ((c = off / gran; c <= (off + len - 1) / gran; c++)); do
				m[$c]=1
			done
		done
		unset -n m
	done
}

model_count() { # gran
	local -n m=m$1
	echo "${#m[@]}"
}

# The model's clusters of one granularity as maximal "offset:length" runs.
model_extents() {
	local -n m=m$1
	printf '%s\n' "${!m[@]}" | sort -n | awk -v g="$1" -v size="$size" '
		function emit() { e = (last + 1) * g; if (e > size) e = size; print start * g ":" e - start * g }
		NR == 1 { start = $1; last = $1; next }
		$1 == last + 1 { last = $1; next }
		{ emit(); start = $1; last = $1 }
		END { if (NR) emit() }'
}

bsync_create $dev "$disk" $((size / 512)) 1 zeroed || { ok 1 "create device"; tap_done; exit 1; }
for gran in $grans; do
	dm message $dev 0 add "b$gran" "$gran"
	ok $? "add bitmap b$gran at granularity $gran"
done

for g in 0 1 2 3; do
	# The group's writes in order, in one qemu-io run, as the seed's
	# perform_writes issues them one after another.
	IFS=';' read -ra pats <<<"${group[$g]}"
	cmds=()
	for p in "${pats[@]}"; do
		read -r byte off len <<<"$p"
		cmds+=(-c "write -P$byte $off $len")
	done
	qemu-io -f raw -t none "${cmds[@]}" /dev/mapper/$dev >/dev/null || ok 1 "qemu-io writes of group $g"
	model_group "$g"
	for gran in $grans; do
		want=$(model_count "$gran")
		have=$(bitmap_field $dev "b$gran" count)
		expect_eq "$((want * gran))" "$have" "group $g: b$gran count is $want clusters"
		expect_eq "$(model_extents "$gran")" "$(extents $dev "b$gran")" \
			"group $g: b$gran extents match the model"
	done
done

# The seed's 64 KiB expectations, stated independently of the model.
expect_eq $((4 + 3 + 3 + 5)) $(($(bitmap_field $dev b65536 count) / 65536)) \
	"64 KiB bitmap holds 4+3+3+5 clusters as iotest 257 expects"
# Reads never dirty.
dm message $dev 0 clear b65536
qemu-io -f raw -t none -c "read 0 4M" /dev/mapper/$dev >/dev/null
expect_eq 0 "$(bitmap_field $dev b65536 count)" "reads do not dirty"
# The data went where it was written.
expect_eq "0xdd" "0x$(dd if=/dev/mapper/$dev bs=64K skip=$((0x3fc0000 / 65536)) count=1 status=none | od -An -tx1 -N1 | tr -d ' ')" \
	"pattern 0xdd reads back at 0x3fc0000"

dm remove $dev
ok $? "remove device"
tap_done
