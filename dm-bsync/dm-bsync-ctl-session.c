// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: the messages of a backup session
 * (session_start, session_done, session_end). A session starts and ends
 * with writes quiesced, so copy-before-write is armed and disarmed at one
 * instant; the session itself is dm-bsync-cbw.c's.
 */
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/string.h>

#include "dm-bsync-ctl.h"

/* A power of two from 4 KiB to 64 MiB, as log2 of sectors. */
static int parse_cluster(struct bsync_target *bt, const char *arg, unsigned int *shift)
{
	u64 bytes;

	if (bsync_parse_size(arg, &bytes) || !is_power_of_2(bytes) ||
	    bytes < (SECTOR_SIZE << BSYNC_CLUSTER_MIN_SHIFT) ||
	    bytes > ((u64)SECTOR_SIZE << BSYNC_CLUSTER_MAX_SHIFT)) {
		msg_err(bt, "session_start: cluster size %s must be a power of two from 4 KiB to 64 MiB",
			arg);
		return -EINVAL;
	}
	*shift = ilog2(bytes) - SECTOR_SHIFT;
	return 0;
}

/* [on_error=break-snapshot|break-guest-write] [timeout_ms=<n>] */
static int parse_session_options(struct bsync_target *bt, unsigned int argc, char **argv,
				 struct bsync_session_params *p)
{
	unsigned int i;

	for (i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "on_error=break-snapshot")) {
			p->policy = BSYNC_BREAK_SNAPSHOT;
		} else if (!strcmp(argv[i], "on_error=break-guest-write")) {
			p->policy = BSYNC_BREAK_GUEST_WRITE;
		} else if (!strncmp(argv[i], "timeout_ms=", 11)) {
			if (kstrtouint(argv[i] + 11, 10, &p->timeout_ms)) {
				msg_err(bt, "session_start: bad %s", argv[i]);
				return -EINVAL;
			}
		} else {
			msg_err(bt, "session_start: unexpected argument \"%s\"", argv[i]);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * session_start <store> <cluster bytes> full|allocated|bitmap|none [<bitmap>|-]
 *               [on_error=break-snapshot|break-guest-write] [timeout_ms=<n>]
 *
 * One instant, with writes quiesced: the needed set is taken, and the
 * bitmap, if named, is frozen with the same copy set.
 */
static int msg_session_start(struct bsync_target *bt, const char *verb, unsigned int argc,
			     char **argv, char *result, unsigned int maxlen)
{
	static const char * const sets[] = {
		[BSYNC_SET_BITMAP] = "bitmap", [BSYNC_SET_ALL] = "full",
		[BSYNC_SET_ALLOCATED] = "allocated", [BSYNC_SET_NONE] = "none",
	};
	struct bsync_state *st = bt->st;
	struct bsync_session_params p = {
		.store_path = argv[0],
		.policy = BSYNC_BREAK_SNAPSHOT,
		.timeout_ms = BSYNC_DEFAULT_CBW_TIMEOUT_MS,
		.origin_dev = bt->origin->bdev->bd_dev,
		.self_dev = disk_devt(dm_disk(st->md)),
		.dev_sectors = st->dev_sectors,
		.dev_name = bsync_dev_name(bt),
	};
	struct bsync_bitmap *bm = NULL;
	struct bsync_session *s;
	const char *error;
	struct bsync_freeze f;
	int set, r;

	if (st->session) {
		msg_err(bt, "session_start: a backup session is already active");
		return -EBUSY;
	}
	r = parse_cluster(bt, argv[1], &p.shift);
	if (r)
		return r;
	set = match_string(sets, ARRAY_SIZE(sets), argv[2]);
	if (set < 0) {
		msg_err(bt, "session_start: set \"%s\" is not full, allocated, bitmap or none",
			argv[2]);
		return -EINVAL;
	}
	if (argc > 3 && strcmp(argv[3], "-")) {
		r = bsync_msg_get_bitmap(bt, "session_start", argv[3], true, &bm);
		if (!r)
			r = bsync_msg_check_consistent(bt, "session_start", bm);
		if (r)
			return r;
		if (p.shift < bm->shift) {
			msg_err(bt, "session_start: cluster %s is smaller than the granularity of bitmap \"%s\"",
				argv[1], bm->name);
			return -EINVAL;
		}
	} else if (set == BSYNC_SET_BITMAP) {
		msg_err(bt, "session_start: set \"bitmap\" needs a bitmap");
		return -EINVAL;
	}
	r = parse_session_options(bt, argc > 4 ? argc - 4 : 0, argv + 4, &p);
	if (r)
		return r;

	s = bsync_session_create(&p, &error);
	if (IS_ERR(s)) {
		msg_err(bt, "session_start: %s %s: %ld", error, argv[0], PTR_ERR(s));
		return PTR_ERR(s);
	}
	if (bm) {
		r = bsync_freeze_prepare(st, bm, set, &f);
		if (r)
			goto bad;
		strscpy(s->bitmap, bm->name, sizeof(s->bitmap));
	}
	r = bsync_quiesce_writes(st);
	if (r)
		goto bad_freeze;
	bsync_session_arm(s, set, set == BSYNC_SET_ALLOCATED ? st->alloc : bm);
	if (bm)
		bsync_freeze_commit(st, &f);
	st->session = s;
	bsync_resume_writes(st);
	return 0;

bad_freeze:
	if (bm)
		bsync_freeze_abort(&f);
bad:
	bsync_session_end(s);
	return r;
}

/* session_done <offset> <length> [<offset> <length>...] (bytes) */
static int msg_session_done(struct bsync_target *bt, const char *verb, unsigned int argc,
			    char **argv, char *result, unsigned int maxlen)
{
	struct bsync_session *s = bt->st->session;
	struct bsync_bitmap *bm;
	sector_t sector, nr;
	unsigned int i;
	int r;

	r = bsync_msg_get_session(bt, "session_done");
	if (r)
		return r;
	if (argc % 2) {
		msg_err(bt, "session_done: needs offset and length pairs");
		return -EINVAL;
	}
	for (i = 0; i < argc; i += 2) {
		r = bsync_msg_parse_range(bt, "session_done", argv[i], argv[i + 1], &sector, &nr);
		if (r)
			return r;
	}
	bm = s->bitmap[0] ? bsync_find_bitmap(bt->st, s->bitmap) : NULL;
	for (i = 0; i < argc; i += 2) {
		bsync_msg_parse_range(bt, "session_done", argv[i], argv[i + 1], &sector, &nr);
		bsync_session_done(s, sector, nr);
		if (bm && bm->remaining)
			bsync_bitmap_unmark_covered(bm->remaining, sector, nr);
	}
	return 0;
}

/*
 * session_end: disarm copy-before-write at one instant; reads of open views
 * fail from now on, and the store is released when the last view closes.
 */
static int msg_session_end(struct bsync_target *bt, const char *verb, unsigned int argc,
			   char **argv, char *result, unsigned int maxlen)
{
	struct bsync_state *st = bt->st;
	struct bsync_session *s;
	int r;

	r = bsync_msg_get_session(bt, "session_end");
	if (r)
		return r;
	r = bsync_quiesce_writes(st);
	if (r)
		return r;
	s = st->session;
	st->session = NULL;
	bsync_session_end(s);
	bsync_resume_writes(st);
	return 0;
}

static const struct bsync_msg msgs[] = {
	{ "session_start",	3, 6,		msg_session_start },
	{ "session_done",	2, UINT_MAX,	msg_session_done },
	{ "session_end",	0, 0,		msg_session_end },
};

const struct bsync_msg_table bsync_session_msgs = { msgs, ARRAY_SIZE(msgs) };
