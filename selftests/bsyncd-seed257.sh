#!/bin/bash
# QEMU iotest 257 ported to bsyncd, run by test_bsyncd_seed257_{bitmap,full,top}.sh:
# the 21 bitmap-sync runs (bitmap x
# never/on-success/always, full and top x on-success/always, each with a
# simulated failure, an intermediate failure and none) and the backup API
# matrix, driven over QMP against a bsync device on a 64 MiB dm-linear of a
# virtio-scsi disk.  Same writes, same targets (an empty qcow2 made before
# each job, no backing file), same reference full backups, same bitmap
# counts (named and anonymous) from an emulated bitmap, same job lengths and
# offsets, and the seed's verification verbatim: qemu-img rebase -u of every
# test image, failed ones included, then qemu-img compare; then qemu-img
# check of every image.
#
# Simulated failure = job-cancel while PENDING; intermediate failure =
# x-debug-inject-error making the job's second data read fail (EIO).
# SEED_RUNS="bitmap:never:simulated ..." limits the runs (development).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
SIZE=$((64 * 1024 * 1024))
GRAN=65536
NBITS=$((SIZE / GRAN))
lin=s257-lin
drive=drive0
work=$(mktemp -d /tmp/bsyncd-257.XXXXXX)

cleanup() {
	bsyncd_stop
	dm remove $drive 2>/dev/null
	dm remove $lin 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# The write groups: "byte offset size" (from the seed's GROUPS).
group[0]="0x49 0x0000000 0x10000;0x6c 0x0100000 0x10000;0x6f 0x2000000 0x10000;0x76 0x3ff0000 0x10000"
group[1]="0x65 0x0000000 0x10000;0x77 0x00f8000 0x10000;0x72 0x2008000 0x10000;0x69 0x3fe0000 0x10000"
group[2]="0x74 0x0010000 0x10000;0x69 0x00e8000 0x10000;0x6e 0x2018000 0x10000;0x67 0x3fe0000 0x20000"
group[3]="0xaa 0x0010000 0x30000;0xbb 0x00d8000 0x10000;0xcc 0x2028000 0x10000;0xdd 0x3fc0000 0x10000"

# Emulated bitmap: a set of bit numbers.
declare -A eb
# Bash only, no subprocess: in a TCG guest each fork+exec costs ~0.1 s.
group_bits() { # N -> the group's bit numbers, one per line, each once
	local p byte off len b
	local -A seen=()
	IFS=';' read -ra pats <<<"${group[$1]}"
	for p in "${pats[@]}"; do
		read -r byte off len <<<"$p"
		for ((b = off / GRAN; b <= (off + len - 1) / GRAN; b++)); do seen[$b]=1; done
	done
	printf '%s\n' "${!seen[@]}"
}
eb_clear() { eb=(); }
eb_group() { local b; for b in $(group_bits "$1"); do eb[$b]=1; done; }
eb_count() { echo ${#eb[@]}; }
eb_first() { local b m=; for b in "${!eb[@]}"; do [ -z "$m" ] || [ "$b" -lt "$m" ] && m=$b; done; echo "$m"; }

perform_writes() { # N: the group's writes, in order, in one qemu-io run
	local p byte off len cmds=()
	IFS=';' read -ra pats <<<"${group[$1]}"
	for p in "${pats[@]}"; do
		read -r byte off len <<<"$p"
		cmds+=(-c "write -P$byte $off $len")
	done
	qemu-io -f raw -t none "${cmds[@]}" /dev/mapper/$drive >/dev/null || ok 1 "$run: qemu-io writes of group $1"
}

check_bitmap() { # what
	expect_eq "$(eb_count)" "$(bm_count $drive bitmap0)" "$run: $1: bitmap0 has the emulated count"
}

# backup_cmd JOB TARGET SYNC [extra JSON members]: the seed's blockdev-backup
# onto a target made beforehand (mktarget), as drive-backup mode=existing.
backup_cmd() {
	echo "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$drive\", \"job-id\": \"$1\",
		\"target\": \"$2\", \"format\": \"qcow2\", \"mode\": \"existing\", \"sync\": \"$3\",
		\"filter-node-name\": \"backup-top\", \"x-perf\": {\"max-workers\": 1}${4:+, $4}}}"
}

# The seed's Drive.create_target: an empty qcow2 of the drive's size, no
# backing file. It is the same every time: qemu-img makes it once, and each
# target is a copy.
mktarget() {
	if [ ! -f "$work/empty.qcow2" ]; then
		qemu-img create -q -f qcow2 "$work/empty.qcow2" $SIZE || ok 1 "$run: create an empty qcow2"
	fi
	cp "$work/empty.qcow2" "$1" || ok 1 "$run: create target ${1##*/}"
}

reference_backup() { # N FILE
	local ev=$work/ref$1.ev
	mktarget "$2"
	run_job_until BLOCK_JOB_COMPLETED 120 "$(backup_cmd ref_backup_$1 "$2" full)" >"$ev"
	expect_eq "none" "$(event_field "$ev" BLOCK_JOB_COMPLETED error)" "$run: reference backup $1 completes"
}

fresh_device() {
	dm remove $drive 2>/dev/null
	blkdiscard -f /dev/mapper/$lin 2>/dev/null ||
		dd if=/dev/zero of=/dev/mapper/$lin bs=1M count=64 oflag=direct status=none
	q_ok bsync-device-add "{\"node-name\": \"$drive\", \"origin\": \"/dev/mapper/$lin\", \"zeroed\": true}" ||
		ok 1 "$run: bsync-device-add"
}

# The seed's compare_images, step for step: qemu-img rebase -u onto the
# base (qemu_img() raises if it fails), then qemu-img compare.
# compare_images IMAGE REFERENCE BASE EXPECT(0 identical / 1 mismatch)
compare_images() {
	local img=$1 ref=$2 base=$3 want=$4
	if [ -n "$base" ]; then
		qemu-img rebase -u -b "$base" -F qcow2 "$img"
		ok $? "$run: qemu-img rebase -u -b ${base##*/} -F qcow2 ${img##*/}"
	fi
	qemu-img compare -q "$img" "$ref" 2>/dev/null
	expect_eq "$want" "$?" "$run: compare ${img##*/} ${ref##*/} ($([ "$want" = 0 ] && echo Identical || echo Mismatch))"
}

# check_image FILE PARTIAL(true|false): consistent, and marked partial
# (bsyncctl image info) exactly when its job failed.
check_image() {
	local img=$1 partial=$2
	qemu-img check -q "$img"
	ok $? "$run: qemu-img check ${img##*/}"
	local info have=unknown
	info=$(bsyncctl image info "$img")
	case $info in
	*$'\npartial:  yes'*) have=true ;;
	*$'\npartial:  no'*) have=false ;;
	esac
	expect_eq "$partial" "$have" "$run: ${img##*/} partial: $partial"
}

test_bitmap_sync() { # bsync_mode msync_mode failure(none|simulated|intermediate)
	local bsync=$1 msync=$2 failure=$3 ev job d len off want_len want_off
	local img=/dev/mapper/$drive bsync1=$work/bsync1 bsync2=$work/bsync2
	local fb0=$work/fbackup0 fb1=$work/fbackup1 fb2=$work/fbackup2
	run="$msync/$bsync/$failure"
	echo "# === Mode $msync; Bitmap Sync $bsync; failure: $failure"
	rm -f "$work"/bsync* "$work"/fbackup*
	fresh_device

	# 0 - writes and reference backup
	perform_writes 0
	reference_backup 0 "$fb0"
	q_ok block-dirty-bitmap-add "{\"node\": \"$drive\", \"name\": \"bitmap0\", \"granularity\": $GRAN}" ||
		ok 1 "$run: add bitmap0"
	eb_clear

	# 1 - writes and reference backup
	perform_writes 1
	eb_group 1
	check_bitmap "after write group 1"
	reference_backup 1 "$fb1"

	# 1 - test backup, maybe with an injected read failure
	if [ "$failure" = intermediate ]; then
		q_ok x-debug-inject-error "{\"device\": \"$drive\", \"operation\": \"read\", \"skip\": 1}" ||
			ok 1 "$run: x-debug-inject-error"
	fi
	case $msync in
	bitmap) want_len=$(($(eb_count) * GRAN)) ;;
	full) want_len=$SIZE ;;
	top) want_len=$((7 * GRAN)) ;;	# allocated: groups 0 and 1
	esac
	ev=$work/b1.ev
	job=backup_1
	d="\"bitmap\": \"bitmap0\", \"bitmap-mode\": \"$bsync\", \"auto-finalize\": false"
	mktarget "$bsync1"
	if [ "$failure" = intermediate ]; then
		run_job_until BLOCK_JOB_COMPLETED 120 "$(backup_cmd $job "$bsync1" "$msync" "$d")" >"$ev"
		expect_eq "status:created status:running BLOCK_JOB_ERROR status:aborting BLOCK_JOB_COMPLETED" \
			"$(tail -n +2 "$ev" | events_summary | xargs)" "$run: failing job's events"
		expect_eq "Input/output error" "$(event_field "$ev" BLOCK_JOB_COMPLETED error)" "$run: error is EIO"
		expect_eq "read report" "$(event_fields "$ev" BLOCK_JOB_ERROR operation action)" \
			"$run: BLOCK_JOB_ERROR read/report"
		case $msync in
		full) want_off=$((15 * GRAN)) ;;	# cluster 0, and 1..14 unallocated
		*) want_off=$GRAN ;;
		esac
	else
		run_job_until BLOCK_JOB_PENDING 120 "$(backup_cmd $job "$bsync1" "$msync" "$d")" >"$ev"
		expect_eq "status:created status:running status:waiting status:pending BLOCK_JOB_PENDING" \
			"$(tail -n +2 "$ev" | events_summary | xargs)" "$run: job waits in pending"
		# writes while pending land in the successor
		perform_writes 2
		check_bitmap "named bitmap frozen while pending"
		local g2; g2=($(group_bits 2))
		expect_eq "${#g2[@]}" "$(bm_count $drive "")" "$run: anonymous successor holds group 2"
		expect_eq "true true" "$(bm_field $drive bitmap0 busy) $(bm_field $drive bitmap0 recording)" \
			"$run: bitmap0 busy and recording while frozen"
		if { [ "$bsync" = on-success ] && [ "$failure" = none ]; } || [ "$bsync" = always ]; then
			eb_clear
		fi
		eb_group 2
		if [ "$failure" = simulated ]; then
			qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"job-cancel\", \"arguments\": {\"id\": \"$job\"}}" \
				--until BLOCK_JOB_CANCELLED 60 >"$ev"
			expect_eq "status:aborting BLOCK_JOB_CANCELLED" "$(tail -n +2 "$ev" | events_summary | xargs)" \
				"$run: cancel in pending aborts"
			d=BLOCK_JOB_CANCELLED
		else
			qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"job-finalize\", \"arguments\": {\"id\": \"$job\"}}" \
				--until BLOCK_JOB_COMPLETED 60 >"$ev"
			expect_eq "none" "$(event_field "$ev" BLOCK_JOB_COMPLETED error)" "$run: finalized without error"
			d=BLOCK_JOB_COMPLETED
		fi
		want_off=$want_len
	fi
	[ "$failure" = intermediate ] && d=BLOCK_JOB_COMPLETED
	expect_eq "$want_len $want_off" "$(event_fields "$ev" $d len offset)" \
		"$run: job 1 len and offset"

	if [ "$bsync" = always ] && [ "$failure" = intermediate ]; then
		[ "$msync" = top ] && eb_group 0	# top treats anything allocated as dirty
		unset "eb[$(eb_first)]"			# one cluster was copied before the error
		if [ "$msync" = full ]; then		# everything not copied
			local fail_bit b
			fail_bit=$(eb_first)
			eb_clear
			for ((b = fail_bit; b < NBITS; b++)); do eb[$b]=1; done
		fi
	fi
	check_bitmap "after backup 1"
	expect_eq "" "$(bm_field $drive "" count)" "$run: no successor left"

	# 2 - writes and reference backup
	perform_writes 3
	eb_group 3
	check_bitmap "after write group 3"
	reference_backup 2 "$fb2"

	# 2 - bitmap backup (the recovery after a failure)
	want_len=$(($(eb_count) * GRAN))
	ev=$work/b2.ev
	job=backup_2
	d="\"bitmap\": \"bitmap0\", \"bitmap-mode\": \"$bsync\", \"auto-finalize\": false"
	mktarget "$bsync2"
	run_job_until BLOCK_JOB_PENDING 120 "$(backup_cmd $job "$bsync2" bitmap "$d")" >"$ev"
	qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"job-finalize\", \"arguments\": {\"id\": \"$job\"}}" \
		--until BLOCK_JOB_COMPLETED 60 >"$ev"
	expect_eq "$want_len $want_len none" \
		"$(event_fields "$ev" BLOCK_JOB_COMPLETED len offset error)" \
		"$run: job 2 len and offset"
	[ "$bsync" != never ] && eb_clear
	check_bitmap "after backup 2"

	# cleanup
	q_ok block-dirty-bitmap-remove "{\"node\": \"$drive\", \"name\": \"bitmap0\"}"
	expect_eq "0" "$(q query-named-block-nodes | jq --arg n $drive '.return[] | select(."node-name" == $n) | ."dirty-bitmaps" | length')" \
		"$run: no bitmaps after remove"

	# verification, as the seed: a failed job's image is rebased and compared
	# like any other ('always' keeps it as the next one's base)
	compare_images "$bsync1" "$fb1" "$fb0" "$([ "$failure" = intermediate ] && echo 1 || echo 0)"
	if [ "$failure" = none ] || [ "$bsync" = always ]; then
		compare_images "$bsync2" "$fb2" "$bsync1" 0
	else
		compare_images "$bsync2" "$fb2" "$fb0" 0
	fi
	compare_images "$img" "$fb2" "" 0
	for f in "$fb0" "$fb1" "$fb2" "$bsync2"; do check_image "$f" false; done
	check_image "$bsync1" "$([ "$failure" = intermediate ] && echo true || echo false)"
	q_ok bsync-device-remove "{\"node-name\": \"$drive\"}" || ok 1 "$run: remove device"
}

test_backup_api() {
	local target=$work/api.qcow2 sync bm pol args want have n=0 bad=0
	run=api
	echo "# === API failure tests"
	fresh_device
	mktarget "$target"
	q_ok block-dirty-bitmap-add "{\"node\": \"$drive\", \"name\": \"bitmap0\", \"granularity\": $GRAN}"
	# sync bitmap policy -> QEMU's error text (257.out). The commands go
	# over one QMP connection, one after another, as the seed's go to its VM.
	local cases=() cmds=() descs=() i
	while IFS='|' read -r sync bm pol want; do
		[ -n "$sync" ] || continue
		args=""
		[ "$bm" != - ] && args="\"bitmap\": \"$bm\""
		[ "$pol" != - ] && args="${args:+$args, }\"bitmap-mode\": \"$pol\""
		cases+=("$sync|$bm|$pol|$want")
		cmds+=("$(backup_cmd api_job "$target" "$sync" "$args")")
	done <<'EOF'
incremental|-|on-success|must provide a valid bitmap name for 'incremental' sync mode
incremental|-|always|must provide a valid bitmap name for 'incremental' sync mode
incremental|-|never|must provide a valid bitmap name for 'incremental' sync mode
incremental|-|-|must provide a valid bitmap name for 'incremental' sync mode
incremental|bitmap404|on-success|Bitmap 'bitmap404' could not be found
incremental|bitmap404|always|Bitmap sync mode must be 'on-success' when using sync mode 'incremental'
incremental|bitmap404|never|Bitmap sync mode must be 'on-success' when using sync mode 'incremental'
incremental|bitmap404|-|Bitmap 'bitmap404' could not be found
incremental|bitmap0|always|Bitmap sync mode must be 'on-success' when using sync mode 'incremental'
incremental|bitmap0|never|Bitmap sync mode must be 'on-success' when using sync mode 'incremental'
bitmap|-|on-success|must provide a valid bitmap name for 'bitmap' sync mode
bitmap|-|always|must provide a valid bitmap name for 'bitmap' sync mode
bitmap|-|never|must provide a valid bitmap name for 'bitmap' sync mode
bitmap|-|-|must provide a valid bitmap name for 'bitmap' sync mode
bitmap|bitmap404|on-success|Bitmap 'bitmap404' could not be found
bitmap|bitmap404|always|Bitmap 'bitmap404' could not be found
bitmap|bitmap404|never|Bitmap 'bitmap404' could not be found
bitmap|bitmap404|-|Bitmap 'bitmap404' could not be found
bitmap|bitmap0|-|Bitmap sync mode must be given when providing a bitmap
full|-|on-success|Cannot specify bitmap sync mode without a bitmap
full|-|always|Cannot specify bitmap sync mode without a bitmap
full|-|never|Cannot specify bitmap sync mode without a bitmap
full|bitmap404|on-success|Bitmap 'bitmap404' could not be found
full|bitmap404|always|Bitmap 'bitmap404' could not be found
full|bitmap404|never|Bitmap 'bitmap404' could not be found
full|bitmap404|-|Bitmap 'bitmap404' could not be found
full|bitmap0|never|Bitmap sync mode 'never' has no meaningful effect when combined with sync mode 'full'
full|bitmap0|-|Bitmap sync mode must be given when providing a bitmap
top|-|on-success|Cannot specify bitmap sync mode without a bitmap
top|-|always|Cannot specify bitmap sync mode without a bitmap
top|-|never|Cannot specify bitmap sync mode without a bitmap
top|bitmap404|on-success|Bitmap 'bitmap404' could not be found
top|bitmap404|always|Bitmap 'bitmap404' could not be found
top|bitmap404|never|Bitmap 'bitmap404' could not be found
top|bitmap404|-|Bitmap 'bitmap404' could not be found
top|bitmap0|never|Bitmap sync mode 'never' has no meaningful effect when combined with sync mode 'top'
top|bitmap0|-|Bitmap sync mode must be given when providing a bitmap
none|-|on-success|Cannot specify bitmap sync mode without a bitmap
none|-|always|Cannot specify bitmap sync mode without a bitmap
none|-|never|Cannot specify bitmap sync mode without a bitmap
none|bitmap404|on-success|Bitmap 'bitmap404' could not be found
none|bitmap404|always|Bitmap 'bitmap404' could not be found
none|bitmap404|never|Bitmap 'bitmap404' could not be found
none|bitmap404|-|Bitmap 'bitmap404' could not be found
none|bitmap0|on-success|sync mode 'none' does not produce meaningful bitmap outputs
none|bitmap0|always|sync mode 'none' does not produce meaningful bitmap outputs
none|bitmap0|never|sync mode 'none' does not produce meaningful bitmap outputs
none|bitmap0|-|Bitmap sync mode must be given when providing a bitmap
EOF
	mapfile -t descs <<<"$(qmp-exec "$BSYNCD_SOCK" "${cmds[@]}" | jq -r '.error.desc // "accepted"')"
	expect_eq "${#cases[@]}" "${#descs[@]}" "api: a reply to each of the ${#cases[@]} commands"
	for i in "${!cases[@]}"; do
		IFS='|' read -r sync bm pol want <<<"${cases[$i]}"
		expect_eq "$want" "${descs[$i]:-}" "api: sync=$sync bitmap=$bm bitmap-mode=$pol"
	done
	expect_eq "0" "$(q query-jobs | jq '.return | length')" "api: no job was created"
	expect_eq "false 0" "$(bm_field $drive bitmap0 busy) $(bm_count $drive bitmap0)" "api: bitmap0 untouched"
	qemu-img check -q "$target" && [ "$(qemu-img map --output=json "$target" | jq '[.[] | select(.data)] | length')" = 0 ]
	ok $? "api: target image untouched (consistent, no data)"
	q_ok block-dirty-bitmap-remove "{\"node\": \"$drive\", \"name\": \"bitmap0\"}"
	q_ok bsync-device-remove "{\"node-name\": \"$drive\"}"
}

echo "0 $((SIZE / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
bsyncd_start || { ok 1 "bsyncd starts"; tap_done; exit 1; }

runs=${SEED_RUNS:-}
if [ -z "$runs" ]; then
	for b in never on-success always; do
		for f in simulated intermediate none; do runs="$runs bitmap:$b:$f"; done
	done
	for s in full top; do
		for b in on-success always; do
			for f in simulated intermediate none; do runs="$runs $s:$b:$f"; done
		done
	done
	runs="$runs api"
fi
for r in $runs; do
	if [ "$r" = api ]; then
		test_backup_api
	else
		IFS=: read -r m b f <<<"$r"
		test_bitmap_sync "$b" "$m" "$f"
	fi
done
bsyncd_stop
ok $? "bsyncd exits cleanly"
tap_done
