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

# The values the tests read out of replies and events, as one jq program:
# a request {"p": NAME, "a": [ARGS], "in": JSON} is answered by the number
# of lines, then the lines (what jq -r would print). A reply the question
# does not fit (an error reply asked for bitmaps) answers nothing, as jq
# did. One jq for the whole test answers them all, as dmq does dm's
# commands (lib.sh): a jq process is a tenth of a second in a TCG guest,
# and these are asked hundreds of times a test.
_jq_prog='
def bitmaps($a): .return[] | select(."node-name" == $a[0]) | ."dirty-bitmaps"[] |
	select((.name // "") == $a[1]);
def answer(f): [(try f) | if type == "string" then . else tojson end | split("\n")[]] |
	(length | tostring), .[];
.a as $a | .in as $in |
if .p == "err" then answer($in | .error.desc // "")
elif .p == "bm_count" then answer($in | bitmaps($a) | .count / .granularity)
elif .p == "bm_field" then answer($in | bitmaps($a) | .[$a[2]])
elif .p == "job_field" then answer($in | .return[] | select(.device == $a[0]) | .[$a[1]])
elif .p == "event_fields" then answer(first($in[] | select(.event == $a[0])) as $e |
	[$a[1:][] | $e.data[.] // "none" | tostring] | join(" "))
else answer("bsyncd-lib: no question \(.p)") end'
_jqs_w='' _jqs_r=''
_jqs_start() {
	local dir
	dir=$(mktemp -d /tmp/jqs.XXXXXX) && mkfifo "$dir/in" "$dir/out" || return 1
	# shellcheck disable=SC2086 # empty or one flag
	jq -rc $_jq_unbuffered "$_jq_prog" <"$dir/in" >"$dir/out" &
	disown
	exec {_jqs_w}>"$dir/in" {_jqs_r}<"$dir/out"
	rm -rf "$dir"
}
_jqs_start
# _jq QUESTION JSON ARG...: the answer's lines. Subshells share the one jq,
# one question at a time; without it, a jq for the question.
_jq() {
	local p=$1 in=${2:-null} x n line args=()
	shift 2
	for x in "$@"; do
		x=${x//\\/\\\\}
		args+=("\"${x//\"/\\\"}\"")
	done
	local IFS=,
	local req="{\"p\": \"$p\", \"a\": [${args[*]}], \"in\": $in}"
	IFS=$' \t\n'
	if [ -n "$_jqs_w" ] && printf '%s\n' "$req" >&"$_jqs_w" && read -r n <&"$_jqs_r"; then
		while [ "$n" -gt 0 ] && IFS= read -r line <&"$_jqs_r"; do
			printf '%s\n' "$line"
			n=$((n - 1))
		done
		return 0
	fi
	_jqs_w=
	printf '%s\n' "$req" | jq -rc "$_jq_prog" | tail -n +2
}

# _events FILE: the file's event lines as one JSON array.
_events() {
	local lines=() l
	while IFS= read -r l; do [ -z "$l" ] || lines+=("$l"); done <"$1"
	local IFS=,
	echo "[${lines[*]}]"
}

# q_err COMMAND [ARGS]: print the error desc ("" if it succeeded).
q_err() { _jq err "$(q "$@")"; }

# bm_count NODE NAME: bitmap's dirty clusters (count / granularity); "-" for the
# anonymous successor (NAME = "").
bm_count() { _jq bm_count "$(q query-named-block-nodes)" "$1" "$2"; }

# bm_field NODE NAME FIELD
bm_field() { _jq bm_field "$(q query-named-block-nodes)" "$1" "$2" "$3"; }

# job_field ID FIELD (from query-block-jobs)
job_field() { _jq job_field "$(q query-block-jobs)" "$1" "$2"; }

# events_summary: event lines (stdin) -> "NAME" or "JOB_STATUS_CHANGE:status", one per line
events_summary() {
	jq -r 'if .event == "JOB_STATUS_CHANGE" then "status:" + .data.status else .event end'
}

# event_field EVENTS-FILE NAME FIELD: data.FIELD of the first NAME event
event_field() { _jq event_fields "$(_events "$1")" "$2" "$3"; }

# event_fields EVENTS-FILE NAME FIELD...: event_field of each FIELD, on one
# line separated by spaces, read in one pass.
event_fields() { _jq event_fields "$(_events "$1")" "$2" "${@:3}"; }

# run_job ID TIMEOUT JSON-COMMAND: run drive-backup and wait for its end
# (COMPLETED/CANCELLED, or PENDING when auto-finalize is false); events to $EV.
run_job_until() {
	local until=$1 tmo=$2 cmd=$3
	qmp-exec "$BSYNCD_SOCK" "$cmd" --until "$until" "$tmo"
}
