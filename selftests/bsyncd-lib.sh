# shellcheck shell=bash
# Helpers for the bsyncd guest tests (test_bsyncd_*.sh): start and stop the
# daemon, run QMP commands with qmp-exec, read bitmaps and jobs with jq.
# Source after lib.sh.

BSYNCD_SOCK=${BSYNCD_SOCK:-/tmp/bsyncd-test.sock}
BSYNCD_STORE=${BSYNCD_STORE:-/tmp/bsyncd-store}
BSYNCD_LOG=${BSYNCD_LOG:-/tmp/bsyncd-test.log}
bsyncd_pid=

modprobe loop 2>/dev/null

# Start bsyncd and wait for its socket.
bsyncd_start() {
	local i
	mkdir -p "$BSYNCD_STORE"
	bsyncd --verbose --socket "$BSYNCD_SOCK" --store-dir "$BSYNCD_STORE" "$@" 2>>"$BSYNCD_LOG" &
	bsyncd_pid=$!
	for ((i = 0; i < 100; i++)); do
		qmp-exec "$BSYNCD_SOCK" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "# bsyncd did not come up; log:" && sed 's/^/#   /' "$BSYNCD_LOG"
	return 1
}

# Stop it with SIGTERM; its exit status is returned.
bsyncd_stop() {
	[ -n "$bsyncd_pid" ] || return 0
	kill -TERM "$bsyncd_pid" 2>/dev/null
	wait "$bsyncd_pid"
	local st=$?
	bsyncd_pid=
	return $st
}

bsyncd_kill9() {
	kill -9 "$bsyncd_pid" 2>/dev/null
	wait "$bsyncd_pid" 2>/dev/null
	bsyncd_pid=
}

# q COMMAND [ARGS-JSON]: run one command, print its reply line.
q() {
	local cmd=$1 args=${2:-}
	if [ -n "$args" ]; then
		qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"$cmd\", \"arguments\": $args}"
	else
		qmp-exec "$BSYNCD_SOCK" "{\"execute\": \"$cmd\"}"
	fi
}

# q_ok COMMAND [ARGS]: 0 if the reply is a return. qmp-exec prints the
# reply as json-c's plain text, so a return starts with {"return": (no jq:
# a process is a tenth of a second in a TCG guest, and tests call this often).
q_ok() { [[ $(q "$@") == '{"return":'* ]]; }

# q_err COMMAND [ARGS]: print the error desc ("" if it succeeded).
q_err() { q "$@" | jq -r '.error.desc // ""'; }

# bm_count NODE NAME: bitmap's dirty clusters (count / granularity); "-" for the
# anonymous successor (NAME = "").
bm_count() {
	q query-named-block-nodes | jq -r --arg n "$1" --arg b "$2" '
		.return[] | select(."node-name" == $n) | ."dirty-bitmaps"[] |
		select((.name // "") == $b) | (.count / .granularity)'
}

# bm_field NODE NAME FIELD
bm_field() {
	q query-named-block-nodes | jq -r --arg n "$1" --arg b "$2" --arg f "$3" '
		.return[] | select(."node-name" == $n) | ."dirty-bitmaps"[] |
		select((.name // "") == $b) | .[$f]'
}

# job_field ID FIELD (from query-block-jobs)
job_field() {
	q query-block-jobs | jq -r --arg id "$1" --arg f "$2" '.return[] | select(.device == $id) | .[$f]'
}

# events_summary: event lines (stdin) -> "NAME" or "JOB_STATUS_CHANGE:status", one per line
events_summary() {
	jq -r 'if .event == "JOB_STATUS_CHANGE" then "status:" + .data.status else .event end'
}

# event_field EVENTS-FILE NAME FIELD: data.FIELD of the first NAME event
event_field() {
	jq -rn --arg n "$2" --arg f "$3" 'first(inputs | select(.event == $n)) | .data[$f] // "none"' "$1"
}

# event_fields EVENTS-FILE NAME FIELD...: event_field of each FIELD, on one
# line separated by spaces, read in one pass.
event_fields() {
	local file=$1 name=$2
	shift 2
	jq -rn --arg n "$name" '$ARGS.positional as $f |
		first(inputs | select(.event == $n)) as $e | [$f[] | $e.data[.] // "none" | tostring] | join(" ")' \
		"$file" --args "$@"
}

# run_job ID TIMEOUT JSON-COMMAND: run drive-backup and wait for its end
# (COMPLETED/CANCELLED, or PENDING when auto-finalize is false); events to $EV.
run_job_until() {
	local until=$1 tmo=$2 cmd=$3
	qmp-exec "$BSYNCD_SOCK" "$cmd" --until "$until" "$tmo"
}
