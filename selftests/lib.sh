# shellcheck shell=bash
# Helpers for the shell selftests: TAP output and bsync device handling.
# Tests print "ok N - ..." / "not ok N - ..." and exit non-zero on failure;
# with BSYNC_FAIL_FAST=1 at the first failure (the mutation check needs no
# more than one).

_tap_n=0
_tap_failed=0

# jq 1.6 compiles its library of builtins at every start, which makes each
# call several times slower than gojq's in a TCG guest; the tests only read
# values out of JSON, which both do alike. BSYNC_JQ=jq keeps jq.
# _jq_unbuffered: the flag a jq that answers questions on a pipe needs
# (gojq writes each answer at once; it has no such flag).
_jq_unbuffered=--unbuffered
if [ "${BSYNC_JQ:-gojq}" = gojq ] && command -v gojq >/dev/null; then
	jq() { gojq "$@"; }
	_jq_unbuffered=
fi

ok() { # cond-status description...
	local st=$1
	shift
	_tap_n=$((_tap_n + 1))
	if [ "$st" -eq 0 ]; then
		echo "ok $_tap_n - $*"
	else
		echo "not ok $_tap_n - $*"
		_tap_failed=$((_tap_failed + 1))
		[ "${BSYNC_FAIL_FAST:-0}" = 0 ] || exit 1
	fi
}

# expect_eq WANT HAVE description...
expect_eq() {
	local want=$1 have=$2
	shift 2
	if [ "$want" = "$have" ]; then
		ok 0 "$*"
	else
		ok 1 "$* (want '$want', have '$have')"
	fi
}

skip() {
	_tap_n=$((_tap_n + 1))
	echo "ok $_tap_n - $* # SKIP"
}

tap_done() {
	echo "1..$_tap_n"
	[ "$_tap_failed" -eq 0 ]
}

# dm: dmsetup --noudevsync, except that its common forms go through one
# long-lived helper (dmq.c), started here by the test's shell (disowned: a
# bare "wait" does not wait for it): "message NAME 0 MESSAGE...", "create
# [--readonly] NAME" and "load|reload NAME" (the table on standard input),
# "remove|suspend|resume|mknodes NAME". The same ioctls, reply, output and
# status, without a fork and exec of dmsetup for each. Subshells share it,
# one command at a time: a background job that runs dm sets _dmq_w= first.
# Without the helper, dmsetup.
_dmq_w= _dmq_r= _dmq_dir=
_dmq_start() {
	local prog=${BSYNC_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}/build/selftests/dmq
	[ -x "$prog" ] || return 1
	_dmq_dir=$(mktemp -d /tmp/dmq.XXXXXX) && mkfifo "$_dmq_dir/in" "$_dmq_dir/out" || return 1
	"$prog" "$_dmq_dir/reply" <"$_dmq_dir/in" >"$_dmq_dir/out" &
	disown
	exec {_dmq_w}>"$_dmq_dir/in" {_dmq_r}<"$_dmq_dir/out"
}
_dmq_start
# _dmq VERB NAME [FIELD...]: one request; its status, or 255 if the helper
# is gone (then dm() falls back to dmsetup).
_dmq() {
	local IFS=$'\t' st err reply=()
	if ! printf '%s\n' "$*" >&"$_dmq_w" 2>/dev/null || ! read -r st err <&"$_dmq_r"; then
		_dmq_w=
		return 255
	fi
	if [ "$1" = message ]; then
		mapfile -t reply <"$_dmq_dir/reply"
		[ ${#reply[@]} -eq 0 ] || printf '%s\n' "${reply[@]}"
	fi
	[ -z "$err" ] || echo "$err" >&2
	return "$st"
}
dm() {
	local st table=() verb=$1
	if [ -n "$_dmq_w" ]; then
		case $#:$1:${2:-} in
		[4-9]:message:* | [1-9][0-9]:message:*)
			if [ "$3" = 0 ]; then
				local IFS=" "
				_dmq message "$2" "${*:4}"
				st=$?
				[ $st -eq 255 ] || return $st
			fi
			;;
		2:create:* | 2:load:* | 2:reload:* | 3:create:--readonly)
			local line
			while read -r line; do # as dmsetup: blank lines skipped, tabs are spaces
				[ -z "$line" ] || table+=("${line//$'\t'/ }")
			done
			[ "$1" = reload ] && verb=load
			[ "$2" = --readonly ] && verb=create-ro
			if [ ${#table[@]} -gt 0 ]; then
				_dmq "$verb" "${@: -1}" "${table[@]}"
				st=$?
				[ $st -eq 255 ] || return $st
			fi
			printf '%s\n' "${table[@]}" | dmsetup --noudevsync "$@"
			return
			;;
		2:remove:* | 2:suspend:* | 2:resume:* | 2:mknodes:*)
			_dmq "$1" "$2"
			st=$?
			[ $st -eq 255 ] || return $st
			;;
		esac
	fi
	dmsetup --noudevsync "$@"
}

# rand_writes DEV N MAX-KiB SIZE: N random direct writes of 4 KiB to MAX-KiB
# KiB within the first SIZE bytes of /dev/mapper/DEV, one at a time, no block
# written twice; one fio, not N dd (a fork+exec costs ~0.1 s in a TCG guest).
rand_writes() {
	fio --name=rand --filename="/dev/mapper/$1" --rw=randwrite --bsrange="4k-$3k" --direct=1 \
		--ioengine=psync --number_ios="$2" --size="$4" --randrepeat=0 --output=/dev/null
}

# bsync_create NAME ORIGIN SECTORS [FEATURE ARGS...]
bsync_create() {
	local name=$1 origin=$2 len=$3
	shift 3
	echo "0 $len bsync $origin $*" | dm create "$name" && dm mknodes "$name"
}

# bitmap_field DEV BITMAP FIELD: a field of the bitmap's "list" line
bitmap_field() {
	dm message "$1" 0 list | awk -v n="name=$2" -v f="$3" \
		'$1 == "bitmap" && $2 == n { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }'
}

# successor_field DEV BITMAP FIELD
successor_field() {
	dm message "$1" 0 list | awk -v n="parent=$2" -v f="$3" \
		'$1 == "successor" && $2 == n { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }'
}

# extents DEV BITMAP: every dirty run as "offset:length", one per line,
# following the continuation token through small chunks.
extents() {
	local dev=$1 bm=$2 from=0 tok reply
	while :; do
		if [ "$bm" = - ]; then
			reply=$(dm message "$dev" 0 alloc_extents "$from" 5) || return 1
		else
			reply=$(dm message "$dev" 0 extents "$bm" "$from" 5) || return 1
		fi
		for tok in $reply; do
			case $tok in
			*:*) echo "$tok" ;;
			end) return 0 ;;
			*) from=$tok ;;
			esac
		done
	done
}
