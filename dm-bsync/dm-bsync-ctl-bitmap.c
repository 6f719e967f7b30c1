// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: the messages that manage dirty
 * bitmaps (add, remove, clear, enable, disable, merge, freeze, copied,
 * unfreeze). Those that rewrite bits the bio path may be setting run with
 * writes quiesced, so they happen at one instant with respect to I/O.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/string.h>

#include "dm-bsync-ctl.h"

static int check_name(struct bsync_target *bt, const char *name)
{
	const char *p;

	if (strlen(name) > BSYNC_NAME_MAX) {
		msg_err(bt, "bitmap name longer than %d bytes", BSYNC_NAME_MAX);
		return -ENAMETOOLONG;
	}
	for (p = name; *p; p++) {
		if (!isalnum(*p) && !strchr("_-.:+@", *p)) {
			msg_err(bt, "bitmap name \"%s\": character '%c' not allowed", name, *p);
			return -EINVAL;
		}
	}
	return 0;
}

static int check_persistent_room(struct bsync_target *bt, const char *name, unsigned int shift)
{
	struct bsync_state *st = bt->st;
	u64 nr = DIV_ROUND_UP_ULL((u64)st->dev_sectors, 1ULL << shift);
	int r;

	if (!st->persist) {
		msg_err(bt, "add: bitmap \"%s\": persistent bitmaps need a metadata device in the table",
			name);
		return -EINVAL;
	}
	r = bsync_persist_check_room(st, nr);
	if (r == -EMLINK)
		msg_err(bt, "add: a device has at most %d persistent bitmaps",
			BSYNC_MD_MAX_BITMAPS);
	else if (r)
		msg_err(bt, "add: bitmap \"%s\" does not fit on the metadata device (it needs %llu KiB more)",
			name, DIV_ROUND_UP(DIV_ROUND_UP(nr, 8), 1024) * 2);
	return r;
}

/* add <name> [<granularity>] [disabled] [persistent] */
static int msg_add(struct bsync_target *bt, const char *verb, unsigned int argc,
		   char **argv, char *result, unsigned int maxlen)
{
	struct bsync_state *st = bt->st;
	unsigned int shift = BSYNC_DEFAULT_GRAN_SHIFT;
	bool disabled = false, have_gran = false, persistent = false;
	struct bsync_bitmap *bm;
	unsigned int i;
	int r;

	r = check_name(bt, argv[0]);
	if (r)
		return r;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "disabled") && !disabled) {
			disabled = true;
		} else if (!strcmp(argv[i], "persistent") && !persistent) {
			persistent = true;
		} else if (isdigit(argv[i][0]) && !have_gran) {
			r = bsync_parse_granularity(argv[i], &shift);
			if (r) {
				msg_err(bt, "add: granularity %s must be a power of two from 512 bytes to 1 GiB",
					argv[i]);
				return r;
			}
			have_gran = true;
		} else {
			msg_err(bt, "add: unexpected argument \"%s\"", argv[i]);
			return -EINVAL;
		}
	}
	if (bsync_find_bitmap(st, argv[0])) {
		msg_err(bt, "add: bitmap \"%s\" already exists", argv[0]);
		return -EEXIST;
	}
	if (st->nr_bitmaps >= BSYNC_MAX_BITMAPS) {
		msg_err(bt, "add: a device has at most %d bitmaps", BSYNC_MAX_BITMAPS);
		return -ENOSPC;
	}
	if (persistent) {
		r = check_persistent_room(bt, argv[0], shift);
		if (r)
			return r;
	}
	bm = bsync_bitmap_create(argv[0], shift, st->dev_sectors, !disabled);
	if (!IS_ERR(bm) && persistent) {
		bm->persistent = true;
		bm->durable = bsync_bitmap_create(NULL, shift, st->dev_sectors, false);
		if (IS_ERR(bm->durable)) {
			r = PTR_ERR(bm->durable);
			bm->durable = NULL;
			bsync_bitmap_destroy(bm);
			bm = ERR_PTR(r);
		}
	}
	if (IS_ERR(bm)) {
		msg_err(bt, "add: cannot allocate bitmap \"%s\": %ld", argv[0], PTR_ERR(bm));
		return PTR_ERR(bm);
	}
	r = bsync_quiesce_writes(st);
	if (r) {
		bsync_bitmap_destroy(bm);
		return r;
	}
	list_add_tail(&bm->list, &st->bitmaps);
	st->nr_bitmaps++;
	st->nr_persistent += persistent;
	r = bsync_msg_commit(bt, bm);
	bsync_resume_writes(st);
	return r;
}

/* remove <name> */
static int msg_remove(struct bsync_target *bt, const char *verb, unsigned int argc,
		      char **argv, char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	int r;

	r = bsync_msg_get_bitmap(bt, "remove", argv[0], true, &bm);
	if (r)
		return r;
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	list_del(&bm->list);
	bt->st->nr_bitmaps--;
	bt->st->nr_persistent -= bm->persistent;
	r = bsync_msg_commit(bt, bm);
	bsync_resume_writes(bt->st);
	bsync_bitmap_destroy(bm);
	return r;
}

/* clear|enable|disable <name> */
static int msg_set_state(struct bsync_target *bt, const char *verb, unsigned int argc,
			 char **argv, char *result, unsigned int maxlen)
{
	bool clear = !strcmp(verb, "clear");
	struct bsync_bitmap *bm;
	int r;

	r = bsync_msg_get_bitmap(bt, verb, argv[0], true, &bm);
	if (!r && !clear)
		r = bsync_msg_check_consistent(bt, verb, bm);
	if (r)
		return r;
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	if (clear) {
		/* Cleared, it starts afresh: nothing it lacks matters any more. */
		bsync_bitmap_clear(bm);
		WRITE_ONCE(bm->inconsistent, false);
	} else {
		bm->recording = !strcmp(verb, "enable");
	}
	r = bsync_msg_commit(bt, bm);
	bsync_resume_writes(bt->st);
	return r;
}

/* merge <target> <source> [<source>...]: target |= sources */
static int msg_merge(struct bsync_target *bt, const char *verb, unsigned int argc,
		     char **argv, char *result, unsigned int maxlen)
{
	struct bsync_bitmap *dst, *src;
	unsigned int i;
	int r;

	r = bsync_msg_get_bitmap(bt, "merge", argv[0], true, &dst);
	if (!r)
		r = bsync_msg_check_consistent(bt, "merge", dst);
	if (r)
		return r;
	for (i = 1; i < argc; i++) {
		r = bsync_msg_get_bitmap(bt, "merge", argv[i], true, &src);
		if (!r)
			r = bsync_msg_check_consistent(bt, "merge", src);
		if (r)
			return r;
	}
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	for (i = 1; i < argc; i++)
		bsync_bitmap_merge(dst, bsync_find_bitmap(bt->st, argv[i]));
	r = bsync_msg_commit(bt, dst);
	bsync_resume_writes(bt->st);
	return r;
}

void bsync_freeze_abort(struct bsync_freeze *f)
{
	bsync_bitmap_destroy(f->succ);
	bsync_bitmap_destroy(f->rem);
}

/* Allocate what freezing @bm needs, before writes are quiesced. */
int bsync_freeze_prepare(struct bsync_state *st, struct bsync_bitmap *bm,
			 enum bsync_set set, struct bsync_freeze *f)
{
	f->bm = bm;
	f->set = set;
	f->rem = NULL;
	f->succ = bsync_bitmap_create(NULL, bm->shift, st->dev_sectors, bm->recording);
	if (IS_ERR(f->succ))
		return PTR_ERR(f->succ);
	if (set != BSYNC_SET_NONE) {
		f->rem = bsync_bitmap_create(NULL, bm->shift, st->dev_sectors, false);
		if (IS_ERR(f->rem)) {
			bsync_bitmap_destroy(f->succ);
			return PTR_ERR(f->rem);
		}
	}
	return 0;
}

/* The freeze instant: writes quiesced. */
void bsync_freeze_commit(struct bsync_state *st, struct bsync_freeze *f)
{
	if (f->set == BSYNC_SET_BITMAP)
		bsync_bitmap_merge(f->rem, f->bm);
	else if (f->set == BSYNC_SET_ALL)
		bsync_bitmap_mark_all(f->rem);
	else if (f->set == BSYNC_SET_ALLOCATED)
		bsync_bitmap_merge(f->rem, st->alloc);
	f->bm->successor = f->succ;
	f->bm->remaining = f->rem;
}

/*
 * freeze <name> [bitmap|all|allocated|none]
 *
 * From this instant writes are recorded in an anonymous successor and the
 * bitmap keeps its bits. The optional argument says what the backup will
 * copy (default: the bitmap's bits); that "remaining" set, less what is
 * reported copied, is merged back by "unfreeze <name> always".
 */
static int msg_freeze(struct bsync_target *bt, const char *verb, unsigned int argc,
		      char **argv, char *result, unsigned int maxlen)
{
	static const char * const sets[] = {
		[BSYNC_SET_BITMAP] = "bitmap", [BSYNC_SET_ALL] = "all",
		[BSYNC_SET_ALLOCATED] = "allocated", [BSYNC_SET_NONE] = "none",
	};
	struct bsync_state *st = bt->st;
	struct bsync_bitmap *bm;
	struct bsync_freeze f;
	int set = BSYNC_SET_BITMAP, r;

	r = bsync_msg_get_bitmap(bt, "freeze", argv[0], true, &bm);
	if (!r)
		r = bsync_msg_check_consistent(bt, "freeze", bm);
	if (r)
		return r;
	if (argc > 1) {
		set = match_string(sets, ARRAY_SIZE(sets), argv[1]);
		if (set < 0) {
			msg_err(bt, "freeze: copy set \"%s\" is not bitmap, all, allocated or none",
				argv[1]);
			return -EINVAL;
		}
	}
	r = bsync_freeze_prepare(st, bm, set, &f);
	if (r)
		return r;
	r = bsync_quiesce_writes(st);
	if (r) {
		bsync_freeze_abort(&f);
		return r;
	}
	bsync_freeze_commit(st, &f);
	bsync_resume_writes(st);
	return 0;
}

/* copied <name> <offset> <length> [<offset> <length>...] (bytes) */
static int msg_copied(struct bsync_target *bt, const char *verb, unsigned int argc,
		      char **argv, char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	sector_t sector, nr;
	unsigned int i;
	int r;

	r = bsync_msg_get_bitmap(bt, "copied", argv[0], false, &bm);
	if (r)
		return r;
	if (!bsync_bitmap_busy(bm)) {
		msg_err(bt, "copied: bitmap \"%s\" is not frozen", argv[0]);
		return -EINVAL;
	}
	if (argc % 2 != 1) {
		msg_err(bt, "copied: needs offset and length pairs");
		return -EINVAL;
	}
	for (i = 1; i < argc; i += 2) {
		r = bsync_msg_parse_range(bt, "copied", argv[i], argv[i + 1], &sector, &nr);
		if (r)
			return r;
	}
	if (!bm->remaining)
		return 0;
	for (i = 1; i < argc; i += 2) {
		bsync_msg_parse_range(bt, "copied", argv[i], argv[i + 1], &sector, &nr);
		bsync_bitmap_unmark_covered(bm->remaining, sector, nr);
	}
	return 0;
}

/*
 * unfreeze <name> abdicate|reclaim|always
 *   abdicate  bitmap := successor            (backup succeeded)
 *   reclaim   bitmap := bitmap | successor   (failed, or sync rule "never")
 *   always    bitmap := successor | remaining
 */
static int msg_unfreeze(struct bsync_target *bt, const char *verb, unsigned int argc,
			char **argv, char *result, unsigned int maxlen)
{
	static const char * const ends[] = { "abdicate", "reclaim", "always" };
	struct bsync_bitmap *bm, *succ, *rem;
	int end, r;

	r = bsync_msg_get_bitmap(bt, "unfreeze", argv[0], false, &bm);
	if (r)
		return r;
	if (!bsync_bitmap_busy(bm)) {
		msg_err(bt, "unfreeze: bitmap \"%s\" is not frozen", argv[0]);
		return -EINVAL;
	}
	end = match_string(ends, ARRAY_SIZE(ends), argv[1]);
	if (end < 0) {
		msg_err(bt, "unfreeze: \"%s\" is not abdicate, reclaim or always", argv[1]);
		return -EINVAL;
	}
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	succ = bm->successor;
	rem = bm->remaining;
	bm->successor = NULL;
	bm->remaining = NULL;
	if (end == 1) {
		bsync_bitmap_merge(bm, succ);
		bm->recording = succ->recording;
		bsync_bitmap_destroy(succ);
	} else {
		if (end == 2 && rem)
			bsync_bitmap_merge(succ, rem);
		bsync_bitmap_move(bm, succ);
	}
	r = bsync_msg_commit(bt, bm);
	bsync_resume_writes(bt->st);
	bsync_bitmap_destroy(rem);
	return r;
}

static const struct bsync_msg msgs[] = {
	{ "add",		1, 4,		msg_add },
	{ "remove",		1, 1,		msg_remove },
	{ "clear",		1, 1,		msg_set_state },
	{ "enable",		1, 1,		msg_set_state },
	{ "disable",		1, 1,		msg_set_state },
	{ "merge",		2, BSYNC_MAX_BITMAPS, msg_merge },
	{ "freeze",		1, 2,		msg_freeze },
	{ "copied",		3, UINT_MAX,	msg_copied },
	{ "unfreeze",		2, 2,		msg_unfreeze },
};

const struct bsync_msg_table bsync_bitmap_msgs = { msgs, ARRAY_SIZE(msgs) };
