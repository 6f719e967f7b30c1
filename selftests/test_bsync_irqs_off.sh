#!/bin/bash
# session_extents and preserved_extents walk the session's clusters under
# a lock that keeps interrupts off. Over a 1 TiB device with 4 KiB
# clusters (268 million), the walk must not keep them off for long: a
# 1 ms sleeper on the same CPU must be woken on time while the walk runs.
# (It once walked cluster by cluster in one lock hold: about a second per
# TiB with 64 KiB clusters, sixteen with 4 KiB, interrupts off throughout.)
. "$(dirname "$0")/lib.sh"

org=bt-irq-org
store=bt-irq-store
dev=bt-irq
big=$((2 * 1024 * 1024 * 1024))		# sectors: 1 TiB
max_ms=${BSYNC_IRQS_OFF_MAX_MS:-250}

cleanup() {
	[ -n "${sleeper:-}" ] && kill "$sleeper" 2>/dev/null
	dm remove $dev 2>/dev/null
	dm remove $store 2>/dev/null
	dm remove $org 2>/dev/null
}
trap cleanup EXIT

echo "0 $big zero" | dm create $org && dm mknodes $org &&
	echo "0 8192 zero" | dm create $store && dm mknodes $store
ok $? "a 1 TiB zero origin and a store"
bsync_create $dev /dev/mapper/$org $big && dm message $dev 0 session_start /dev/mapper/$store 4k full -
ok $? "a session over 1 TiB with 4 KiB clusters"

# The sleeper and the walks share CPU 0; it reports its worst lateness.
taskset -c 0 python3 -c '
import sys, time
end = time.monotonic() + float(sys.argv[1]); worst = 0.0
while time.monotonic() < end:
    t = time.monotonic(); time.sleep(0.001)
    worst = max(worst, time.monotonic() - t - 0.001)
print(int(worst * 1000))' 12 >/tmp/irqs-off.lat &
sleeper=$!
sleep 1
t0=$(date +%s%N)
for _ in 1 2 3; do
	reply=$(taskset -c 0 dmsetup message $dev 0 session_extents 0 4) || break
done
t1=$(date +%s%N)
expect_eq "0:1099511627776 end" "$reply" "session_extents lists the whole device as one run"
reply=$(taskset -c 0 dmsetup message $dev 0 preserved_extents 0)
expect_eq "end" "$reply" "preserved_extents lists nothing"
wait "$sleeper"
sleeper=
lat=$(cat /tmp/irqs-off.lat)
echo "# three walks took $(((t1 - t0) / 1000000)) ms; the sleeper was late by $lat ms at worst"
# A walk that kept interrupts off throughout makes the sleeper late by a
# whole walk; a TCG vCPU the busy host did not run for a while, by much
# less. So the bound is half a walk, and at least max_ms.
half_walk=$(((t1 - t0) / 6000000))
[ "$half_walk" -gt "$max_ms" ] && max_ms=$half_walk
[ "$lat" -lt "$max_ms" ]
ok $? "a sleeper on the walking CPU was never late by $max_ms ms or more ($lat ms)"
dm message $dev 0 session_end
ok $? "session ended"
tap_done
