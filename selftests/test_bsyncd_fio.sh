#!/bin/bash
# Incremental backups in a row under concurrent fio writes (four in make
# check, FIO_STEPS=N for more: `make soak` runs twenty), each chained on
# the last: at each step the writer is stopped (no I/O in flight), the
# device is copied as that step's point-in-time reference, the backup
# starts (its instant), the writer resumes and keeps writing while the job
# copies (copy-before-write at work), and the chain read back equals the
# reference exactly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
size=$((64 * 1024 * 1024))
steps=${FIO_STEPS:-4}
out=$(mktemp -d /tmp/bsyncd-fio.XXXXXX)
node=fio0
fio_pid=

cleanup() {
	[ -n "$fio_pid" ] && { kill -CONT $fio_pid; pkill -P $fio_pid; kill $fio_pid; wait $fio_pid; } 2>/dev/null
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove fio-lin 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

echo "0 $((size / 512)) linear $disk 0" | dm create fio-lin && dm mknodes fio-lin
dd if=/dev/urandom of=/dev/mapper/fio-lin bs=1M count=32 oflag=direct status=none
bsyncd_start || { ok 1 "bsyncd starts"; tap_done; exit 1; }
q_ok bsync-device-add "{\"node-name\": \"$node\", \"origin\": \"/dev/mapper/fio-lin\"}"
ok $? "device"
q_ok block-dirty-bitmap-add "{\"node\": \"$node\", \"name\": \"inc\"}"

# The writer: small random writes of random data, slowed so that each
# backup overlaps a few hundred of them.
fio --name=writer --filename=/dev/mapper/$node --rw=randwrite --bsrange=4k-128k --direct=1 \
	--ioengine=psync --iodepth=1 --numjobs=1 --time_based --runtime=3600 --rate_iops=200 \
	--refill_buffers --randrepeat=0 --output=/dev/null &
fio_pid=$!
sleep 2

# Stop every fio process and wait until none is inside a write.
writer_stop() {
	local p i
	for p in $fio_pid $(pgrep -P $fio_pid); do kill -STOP "$p"; done
	for p in $fio_pid $(pgrep -P $fio_pid); do
		for ((i = 0; i < 200; i++)); do
			[ "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" = T ] && break
			sleep 0.01
		done
	done
}
writer_cont() { local p; for p in $fio_pid $(pgrep -P $fio_pid); do kill -CONT "$p"; done; }

prev=
for ((k = 0; k <= steps; k++)); do
	img=$out/b$k.qcow2
	writer_stop
	dd if=/dev/mapper/$node of="$out/pit.raw" bs=1M iflag=direct status=none
	if [ $k -eq 0 ]; then
		cmd="{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\", \"job-id\": \"b$k\",
			\"target\": \"$img\", \"sync\": \"full\", \"bitmap\": \"inc\", \"bitmap-mode\": \"on-success\",
			\"speed\": 33554432}}"
	else
		cmd="{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"$node\", \"job-id\": \"b$k\",
			\"target\": \"$img\", \"sync\": \"incremental\", \"bitmap\": \"inc\",
			\"backing-file\": \"$(basename "$prev")\", \"backing-fmt\": \"qcow2\"}}"
	fi
	# the reply means the session started: resume the writer during the copy
	rm -f "$out/ev"
	qmp-exec "$BSYNCD_SOCK" "$cmd" --until BLOCK_JOB_COMPLETED 300 >"$out/ev" &
	qp=$!
	for ((i = 0; i < 3000; i++)); do [ -s "$out/ev" ] && break; sleep 0.01; done
	writer_cont
	wait $qp
	err=$(event_field "$out/ev" BLOCK_JOB_COMPLETED error)
	len=$(event_field "$out/ev" BLOCK_JOB_COMPLETED len)
	during=$(bm_count $node inc)
	[ "$err" = none ] && [ "${during:-0}" -gt 0 ]
	ok $? "step $k: backup completes while fio writes (len $len, error $err, $during clusters written during the job)"
	qemu-img check -q "$img" && qemu-img compare -q -F raw "$img" "$out/pit.raw"
	ok $? "step $k: chain b0..b$k equals the device at the step's instant"
	prev=$img
	sleep 0.3	# the writer dirties some clusters before the next instant
done
tap_done
