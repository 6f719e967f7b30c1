// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: one instant across several
 * devices. Userspace sends gate_close to every device of a group, its
 * actions, then gate_open to every device; the write gate (dm-bsync-gate.c)
 * stays closed in between, for at most the timeout gate_close names.
 */
#include <linux/kernel.h>

#include "dm-bsync-ctl.h"

/* The longest a hold may keep guest writes waiting. */
#define GATE_TIMEOUT_MAX_MS	60000

static int parse_token(struct bsync_target *bt, const char *verb, const char *arg, u64 *token)
{
	if (kstrtou64(arg, 10, token) || !*token) {
		msg_err(bt, "%s: token %s is not a decimal number 1..%llu", verb, arg, U64_MAX);
		return -EINVAL;
	}
	return 0;
}

/* gate_close <token> <timeout_ms> */
static int msg_gate_close(struct bsync_target *bt, const char *verb, unsigned int argc,
			  char **argv, char *result, unsigned int maxlen)
{
	unsigned int ms;
	u64 token;
	int r;

	r = parse_token(bt, verb, argv[0], &token);
	if (r)
		return r;
	if (kstrtouint(argv[1], 10, &ms) || !ms || ms > GATE_TIMEOUT_MAX_MS) {
		msg_err(bt, "%s: timeout %s is not 1..%u ms", verb, argv[1], GATE_TIMEOUT_MAX_MS);
		return -EINVAL;
	}
	r = bsync_gate_hold(bt->st, token, ms);
	if (r == -EBUSY)
		msg_err(bt, "%s: the write gate is held already, by token %llu", verb,
			bt->st->gate_token);
	else if (r == -ETIMEDOUT)
		msg_err(bt, "%s: writes in flight did not complete in %u ms", verb, ms);
	return r;
}

/* gate_open <token> */
static int msg_gate_open(struct bsync_target *bt, const char *verb, unsigned int argc,
			 char **argv, char *result, unsigned int maxlen)
{
	u64 token;
	int r;

	r = parse_token(bt, verb, argv[0], &token);
	if (r)
		return r;
	r = bsync_gate_release(bt->st, token);
	if (r == -ETIMEDOUT)
		msg_err(bt, "%s: the write gate held by token %llu opened by itself before",
			verb, token);
	else if (r == -ENOENT)
		msg_err(bt, "%s: token %llu does not hold the write gate, nor did it last",
			verb, token);
	return r;
}

/* gate_status: state=open|held [token=<token>] expiries=<n> */
static int msg_gate_status(struct bsync_target *bt, const char *verb, unsigned int argc,
			   char **argv, char *result, unsigned int maxlen)
{
	struct bsync_state *st = bt->st;
	unsigned int sz = 0;

	if (st->gate_held)
		DMEMIT("state=held token=%llu", st->gate_token);
	else
		DMEMIT("state=open");
	DMEMIT(" expiries=%llu", st->gate_expiries);
	return 1;
}

static const struct bsync_msg msgs[] = {
	{ "gate_close",		2, 2,		msg_gate_close },
	{ "gate_open",		1, 1,		msg_gate_open },
	{ "gate_status",	0, 0,		msg_gate_status },
};

const struct bsync_msg_table bsync_gate_msgs = { msgs, ARRAY_SIZE(msgs) };
