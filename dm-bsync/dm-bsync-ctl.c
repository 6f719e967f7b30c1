// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: the messages that manage dirty
 * bitmaps, and the status lines. Every operation runs under the device's
 * control mutex; those that rewrite bits the bio path may be setting run
 * with writes quiesced, so they happen at one instant with respect to I/O.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-bsync.h"

#define EXTENTS_DEFAULT	1024
#define EXTENTS_MAX	65536
/* Room one more "offset:length" reply token may need. */
#define EXTENT_TOKEN_MAX 48

#define msg_err(bt, fmt, ...) \
	DMERR_LIMIT("%s: " fmt, bsync_dev_name(bt), ##__VA_ARGS__)

/*
 * Argument parsing
 */

/* Bytes, with an optional k, m or g suffix (powers of 1024). */
static int parse_size(const char *arg, u64 *val)
{
	size_t n = strlen(arg);
	unsigned int shift = 0;
	char buf[24];
	int r;

	if (!n || n >= sizeof(buf))
		return -EINVAL;
	switch (tolower(arg[n - 1])) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	}
	memcpy(buf, arg, n + 1);
	if (shift)
		buf[--n] = '\0';
	r = kstrtoull(buf, 10, val);
	if (r)
		return r;
	if (*val > (U64_MAX >> shift))
		return -ERANGE;
	*val <<= shift;
	return 0;
}

/* A power of two from 512 bytes to 1 GiB, as log2 of sectors. */
int bsync_parse_granularity(const char *arg, unsigned int *shift)
{
	u64 bytes;
	int r;

	r = parse_size(arg, &bytes);
	if (r)
		return r;
	if (!is_power_of_2(bytes))
		return -EINVAL;
	if (bytes < (SECTOR_SIZE << BSYNC_GRAN_MIN_SHIFT) ||
	    bytes > ((u64)SECTOR_SIZE << BSYNC_GRAN_MAX_SHIFT))
		return -ERANGE;
	*shift = ilog2(bytes) - SECTOR_SHIFT;
	return 0;
}

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

static struct bsync_bitmap *find_bitmap(struct bsync_state *st, const char *name)
{
	struct bsync_bitmap *bm;

	list_for_each_entry(bm, &st->bitmaps, list)
		if (!strcmp(bm->name, name))
			return bm;
	return NULL;
}

/*
 * Look up a named bitmap for an operation; fail with -ENOENT if absent and,
 * when @idle, with -EBUSY if a backup has it frozen.
 */
static int get_bitmap(struct bsync_target *bt, const char *verb, const char *name,
		      bool idle, struct bsync_bitmap **out)
{
	struct bsync_bitmap *bm = find_bitmap(bt->st, name);

	if (!bm) {
		msg_err(bt, "%s: no bitmap \"%s\"", verb, name);
		return -ENOENT;
	}
	if (idle && bsync_bitmap_busy(bm)) {
		msg_err(bt, "%s: bitmap \"%s\" is in use by a backup", verb, name);
		return -EBUSY;
	}
	*out = bm;
	return 0;
}

/* Only removal and clear apply to a bitmap that may miss writes. */
static int check_consistent(struct bsync_target *bt, const char *verb,
			    const struct bsync_bitmap *bm)
{
	if (!bm->inconsistent)
		return 0;
	msg_err(bt, "%s: bitmap \"%s\" is inconsistent (it may miss writes): clear or remove it",
		verb, bm->name);
	return -EINVAL;
}

/* After a change to @bm: make it durable if it is persistent. */
static int persist_changed(struct bsync_target *bt, const struct bsync_bitmap *bm)
{
	int r;

	if (!bm->persistent)
		return 0;
	r = bsync_persist_commit(bt->st, bt->ti);
	if (r)
		msg_err(bt, "metadata commit failed (%d): persistent bitmaps are now inconsistent",
			r);
	return r;
}

/* A byte offset and length, sector aligned and inside the device. */
static int parse_range(struct bsync_target *bt, const char *verb, const char *off_arg,
		       const char *len_arg, sector_t *sector, sector_t *nr)
{
	u64 off, len;

	if (kstrtoull(off_arg, 10, &off) || kstrtoull(len_arg, 10, &len) ||
	    (off | len) & (SECTOR_SIZE - 1)) {
		msg_err(bt, "%s: range %s+%s is not in 512-byte units", verb, off_arg, len_arg);
		return -EINVAL;
	}
	if (off >> SECTOR_SHIFT > bt->st->dev_sectors ||
	    len >> SECTOR_SHIFT > bt->st->dev_sectors - (off >> SECTOR_SHIFT)) {
		msg_err(bt, "%s: range %s+%s is beyond the device end", verb, off_arg, len_arg);
		return -ERANGE;
	}
	*sector = off >> SECTOR_SHIFT;
	*nr = len >> SECTOR_SHIFT;
	return 0;
}

/*
 * Bitmap messages
 */

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
static int msg_add(struct bsync_target *bt, unsigned int argc, char **argv,
		   char *result, unsigned int maxlen)
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
	if (find_bitmap(st, argv[0])) {
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
	r = persist_changed(bt, bm);
	bsync_resume_writes(st);
	return r;
}

/* remove <name> */
static int msg_remove(struct bsync_target *bt, unsigned int argc, char **argv,
		      char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	int r;

	r = get_bitmap(bt, "remove", argv[0], true, &bm);
	if (r)
		return r;
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	list_del(&bm->list);
	bt->st->nr_bitmaps--;
	bt->st->nr_persistent -= bm->persistent;
	r = persist_changed(bt, bm);
	bsync_resume_writes(bt->st);
	bsync_bitmap_destroy(bm);
	return r;
}

/* clear|enable|disable <name> */
static int msg_set_state(struct bsync_target *bt, unsigned int argc, char **argv,
			 char *result, unsigned int maxlen)
{
	bool clear = !strcmp(argv[-1], "clear");
	struct bsync_bitmap *bm;
	int r;

	r = get_bitmap(bt, argv[-1], argv[0], true, &bm);
	if (!r && !clear)
		r = check_consistent(bt, argv[-1], bm);
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
		bm->recording = !strcmp(argv[-1], "enable");
	}
	r = persist_changed(bt, bm);
	bsync_resume_writes(bt->st);
	return r;
}

/* merge <target> <source> [<source>...]: target |= sources */
static int msg_merge(struct bsync_target *bt, unsigned int argc, char **argv,
		     char *result, unsigned int maxlen)
{
	struct bsync_bitmap *dst, *src;
	unsigned int i;
	int r;

	r = get_bitmap(bt, "merge", argv[0], true, &dst);
	if (!r)
		r = check_consistent(bt, "merge", dst);
	if (r)
		return r;
	for (i = 1; i < argc; i++) {
		r = get_bitmap(bt, "merge", argv[i], true, &src);
		if (!r)
			r = check_consistent(bt, "merge", src);
		if (r)
			return r;
	}
	r = bsync_quiesce_writes(bt->st);
	if (r)
		return r;
	for (i = 1; i < argc; i++)
		bsync_bitmap_merge(dst, find_bitmap(bt->st, argv[i]));
	r = persist_changed(bt, dst);
	bsync_resume_writes(bt->st);
	return r;
}

/*
 * freeze <name> [bitmap|all|allocated|none]
 *
 * From this instant writes are recorded in an anonymous successor and the
 * bitmap keeps its bits. The optional argument says what the backup will
 * copy (default: the bitmap's bits); that "remaining" set, less what is
 * reported copied, is merged back by "unfreeze <name> always".
 */
struct freeze {
	struct bsync_bitmap *bm, *succ, *rem;
	enum bsync_set set;
};

static void freeze_abort(struct freeze *f)
{
	bsync_bitmap_destroy(f->succ);
	bsync_bitmap_destroy(f->rem);
}

/* Allocate what freezing @bm needs, before writes are quiesced. */
static int freeze_prepare(struct bsync_state *st, struct bsync_bitmap *bm,
			  enum bsync_set set, struct freeze *f)
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
static void freeze_commit(struct bsync_state *st, struct freeze *f)
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
static int msg_freeze(struct bsync_target *bt, unsigned int argc, char **argv,
		      char *result, unsigned int maxlen)
{
	static const char * const sets[] = {
		[BSYNC_SET_BITMAP] = "bitmap", [BSYNC_SET_ALL] = "all",
		[BSYNC_SET_ALLOCATED] = "allocated", [BSYNC_SET_NONE] = "none",
	};
	struct bsync_state *st = bt->st;
	struct bsync_bitmap *bm;
	struct freeze f;
	int set = BSYNC_SET_BITMAP, r;

	r = get_bitmap(bt, "freeze", argv[0], true, &bm);
	if (!r)
		r = check_consistent(bt, "freeze", bm);
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
	r = freeze_prepare(st, bm, set, &f);
	if (r)
		return r;
	r = bsync_quiesce_writes(st);
	if (r) {
		freeze_abort(&f);
		return r;
	}
	freeze_commit(st, &f);
	bsync_resume_writes(st);
	return 0;
}

/* copied <name> <offset> <length> [<offset> <length>...] (bytes) */
static int msg_copied(struct bsync_target *bt, unsigned int argc, char **argv,
		      char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	sector_t sector, nr;
	unsigned int i;
	int r;

	r = get_bitmap(bt, "copied", argv[0], false, &bm);
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
		r = parse_range(bt, "copied", argv[i], argv[i + 1], &sector, &nr);
		if (r)
			return r;
	}
	if (!bm->remaining)
		return 0;
	for (i = 1; i < argc; i += 2) {
		parse_range(bt, "copied", argv[i], argv[i + 1], &sector, &nr);
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
static int msg_unfreeze(struct bsync_target *bt, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	static const char * const ends[] = { "abdicate", "reclaim", "always" };
	struct bsync_bitmap *bm, *succ, *rem;
	int end, r;

	r = get_bitmap(bt, "unfreeze", argv[0], false, &bm);
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
	r = persist_changed(bt, bm);
	bsync_resume_writes(bt->st);
	bsync_bitmap_destroy(rem);
	return r;
}

/*
 * Backup session messages
 */

/* A power of two from 4 KiB to 64 MiB, as log2 of sectors. */
static int parse_cluster(struct bsync_target *bt, const char *arg, unsigned int *shift)
{
	u64 bytes;

	if (parse_size(arg, &bytes) || !is_power_of_2(bytes) ||
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
static int msg_session_start(struct bsync_target *bt, unsigned int argc, char **argv,
			     char *result, unsigned int maxlen)
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
	struct freeze f;
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
		r = get_bitmap(bt, "session_start", argv[3], true, &bm);
		if (!r)
			r = check_consistent(bt, "session_start", bm);
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
		r = freeze_prepare(st, bm, set, &f);
		if (r)
			goto bad;
		strscpy(s->bitmap, bm->name, sizeof(s->bitmap));
	}
	r = bsync_quiesce_writes(st);
	if (r)
		goto bad_freeze;
	bsync_session_arm(s, set, set == BSYNC_SET_ALLOCATED ? st->alloc : bm);
	if (bm)
		freeze_commit(st, &f);
	st->session = s;
	bsync_resume_writes(st);
	return 0;

bad_freeze:
	if (bm)
		freeze_abort(&f);
bad:
	bsync_session_end(s);
	return r;
}

static int get_session(struct bsync_target *bt, const char *verb)
{
	if (bt->st->session)
		return 0;
	msg_err(bt, "%s: no backup session", verb);
	return -EINVAL;
}

/* session_done <offset> <length> [<offset> <length>...] (bytes) */
static int msg_session_done(struct bsync_target *bt, unsigned int argc, char **argv,
			    char *result, unsigned int maxlen)
{
	struct bsync_session *s = bt->st->session;
	struct bsync_bitmap *bm;
	sector_t sector, nr;
	unsigned int i;
	int r;

	r = get_session(bt, "session_done");
	if (r)
		return r;
	if (argc % 2) {
		msg_err(bt, "session_done: needs offset and length pairs");
		return -EINVAL;
	}
	for (i = 0; i < argc; i += 2) {
		r = parse_range(bt, "session_done", argv[i], argv[i + 1], &sector, &nr);
		if (r)
			return r;
	}
	bm = s->bitmap[0] ? find_bitmap(bt->st, s->bitmap) : NULL;
	for (i = 0; i < argc; i += 2) {
		parse_range(bt, "session_done", argv[i], argv[i + 1], &sector, &nr);
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
static int msg_session_end(struct bsync_target *bt, unsigned int argc, char **argv,
			   char *result, unsigned int maxlen)
{
	struct bsync_state *st = bt->st;
	struct bsync_session *s;
	int r;

	r = get_session(bt, "session_end");
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

static int msg_session_status(struct bsync_target *bt, unsigned int argc, char **argv,
			      char *result, unsigned int maxlen)
{
	unsigned int sz = 0;

	if (!bt->st->session) {
		DMEMIT("state=none");
		return 1;
	}
	bsync_session_emit_status(bt->st->session, result, maxlen);
	return 1;
}

/* metadata_status: the metadata device's state and counters */
static int msg_metadata_status(struct bsync_target *bt, unsigned int argc, char **argv,
			       char *result, unsigned int maxlen)
{
	bsync_persist_emit_status(bt->st, result, maxlen);
	return 1;
}

/*
 * Queries
 */

static u64 dirty_bytes(const struct bsync_bitmap *bm)
{
	return (u64)bsync_bitmap_weight(bm) * bsync_bitmap_granularity(bm);
}

/*
 * list: one line per bitmap, a frozen bitmap's successor on the next line:
 *   bitmap name=<n> granularity=<bytes> count=<bytes> recording=<0|1> busy=<0|1>
 *          persistent=<0|1> inconsistent=<0|1>
 *   successor parent=<n> granularity=<bytes> count=<bytes> recording=<0|1>
 */
static int msg_list(struct bsync_target *bt, unsigned int argc, char **argv,
		    char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm, *s;
	unsigned int sz = 0;

	list_for_each_entry(bm, &bt->st->bitmaps, list) {
		s = bm->successor;
		DMEMIT("bitmap name=%s granularity=%llu count=%llu recording=%d busy=%d",
		       bm->name, bsync_bitmap_granularity(bm), dirty_bytes(bm),
		       s ? s->recording : bm->recording, !!s);
		DMEMIT(" persistent=%d inconsistent=%d\n", bm->persistent,
		       READ_ONCE(bm->inconsistent));
		if (s)
			DMEMIT("successor parent=%s granularity=%llu count=%llu recording=%d\n",
			       bm->name, bsync_bitmap_granularity(s), dirty_bytes(s),
			       s->recording);
	}
	return 1;
}

/*
 * Reply "<offset>:<length> ... <next>" in bytes: the dirty runs from
 * <offset> on, at most @max of them and as many as fit, then where to
 * continue, or "end".
 */
typedef bool (*next_extent_fn)(void *set, sector_t from, sector_t *start, sector_t *len);

static bool next_dirty(void *bm, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_bitmap_next_extent(bm, from, start, len);
}

static bool next_preserved(void *s, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_session_next_preserved(s, from, start, len);
}

static int emit_extents(struct bsync_target *bt, next_extent_fn next, void *set,
			unsigned int argc, char **argv, char *result, unsigned int maxlen)
{
	unsigned int sz = 0, max = EXTENTS_DEFAULT, n = 0;
	sector_t from, start, len;
	u64 off;

	if (kstrtoull(argv[0], 10, &off) || off & (SECTOR_SIZE - 1)) {
		msg_err(bt, "extents: offset %s is not in 512-byte units", argv[0]);
		return -EINVAL;
	}
	if (argc > 1 && (kstrtouint(argv[1], 10, &max) || !max || max > EXTENTS_MAX)) {
		msg_err(bt, "extents: count %s is not 1..%d", argv[1], EXTENTS_MAX);
		return -EINVAL;
	}
	from = off >> SECTOR_SHIFT;
	while (n < max && maxlen - sz > 2 * EXTENT_TOKEN_MAX &&
	       next(set, from, &start, &len)) {
		DMEMIT("%llu:%llu ", (u64)start << SECTOR_SHIFT, (u64)len << SECTOR_SHIFT);
		from = start + len;
		n++;
	}
	if (next(set, from, &start, &len))
		DMEMIT("%llu", (u64)from << SECTOR_SHIFT);
	else
		DMEMIT("end");
	return 1;
}

/* extents <name> <offset> [<max>] */
static int msg_extents(struct bsync_target *bt, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	int r;

	r = get_bitmap(bt, "extents", argv[0], false, &bm);
	if (r)
		return r;
	return emit_extents(bt, next_dirty, bm, argc - 1, argv + 1, result, maxlen);
}

/* alloc_extents <offset> [<max>]: runs that may hold data */
static int msg_alloc_extents(struct bsync_target *bt, unsigned int argc, char **argv,
			     char *result, unsigned int maxlen)
{
	return emit_extents(bt, next_dirty, bt->st->alloc, argc, argv, result, maxlen);
}

static bool next_wanted(void *s, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_session_next_wanted(s, from, start, len);
}

/* session_extents <offset> [<max>]: what the backup has still to copy */
static int msg_session_extents(struct bsync_target *bt, unsigned int argc, char **argv,
			       char *result, unsigned int maxlen)
{
	int r = get_session(bt, "session_extents");

	if (r)
		return r;
	return emit_extents(bt, next_wanted, bt->st->session, argc, argv, result, maxlen);
}

/* preserved_extents <offset> [<max>]: what a sync=none backup must copy */
static int msg_preserved_extents(struct bsync_target *bt, unsigned int argc, char **argv,
				 char *result, unsigned int maxlen)
{
	int r = get_session(bt, "preserved_extents");

	if (r)
		return r;
	return emit_extents(bt, next_preserved, bt->st->session, argc, argv, result, maxlen);
}

/*
 * Dispatch
 */

struct bsync_msg {
	const char *verb;
	unsigned int min_args, max_args;	/* after the verb */
	int (*fn)(struct bsync_target *bt, unsigned int argc, char **argv,
		  char *result, unsigned int maxlen);
};

static const struct bsync_msg bsync_msgs[] = {
	{ "add",		1, 4,		msg_add },
	{ "remove",		1, 1,		msg_remove },
	{ "clear",		1, 1,		msg_set_state },
	{ "enable",		1, 1,		msg_set_state },
	{ "disable",		1, 1,		msg_set_state },
	{ "merge",		2, BSYNC_MAX_BITMAPS, msg_merge },
	{ "freeze",		1, 2,		msg_freeze },
	{ "copied",		3, UINT_MAX,	msg_copied },
	{ "unfreeze",		2, 2,		msg_unfreeze },
	{ "list",		0, 0,		msg_list },
	{ "extents",		2, 3,		msg_extents },
	{ "alloc_extents",	1, 2,		msg_alloc_extents },
	{ "session_start",	3, 6,		msg_session_start },
	{ "session_done",	2, UINT_MAX,	msg_session_done },
	{ "session_end",	0, 0,		msg_session_end },
	{ "session_status",	0, 0,		msg_session_status },
	{ "session_extents",	1, 2,		msg_session_extents },
	{ "preserved_extents",	1, 2,		msg_preserved_extents },
	{ "metadata_status",	0, 0,		msg_metadata_status },
};

int bsync_message(struct dm_target *ti, unsigned int argc, char **argv,
		  char *result, unsigned int maxlen)
{
	struct bsync_target *bt = ti->private;
	const struct bsync_msg *m;
	unsigned int i;
	int r;

	for (i = 0; i < ARRAY_SIZE(bsync_msgs); i++) {
		m = &bsync_msgs[i];
		if (argc && !strcasecmp(argv[0], m->verb))
			goto found;
	}
	msg_err(bt, "unknown message \"%s\"", argc ? argv[0] : "");
	return -EINVAL;
found:
	if (argc - 1 < m->min_args || argc - 1 > m->max_args) {
		msg_err(bt, "%s: wrong number of arguments (%u)", m->verb, argc - 1);
		return -EINVAL;
	}
	mutex_lock(&bt->st->lock);
	r = m->fn(bt, argc - 1, argv + 1, result, maxlen);
	bsync_persist_retry(bt->st);
	mutex_unlock(&bt->st->lock);
	return r;
}

/*
 * Status
 */

static void sum_stats(struct bsync_state *st, struct bsync_stats *sum)
{
	int cpu;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		struct bsync_stats *s = per_cpu_ptr(st->stats, cpu);

		sum->writes += s->writes;
		sum->deferred += s->deferred;
	}
}

/*
 * INFO:  <#bitmaps> <alloc granularity> <allocated clusters>/<clusters>
 *        <writes> <held writes> <metadata: - | ok | failed>
 *        <session: - | state=... (as session_status)>
 * TABLE: <origin> [<#features> [zeroed] [alloc_granularity <bytes>] [metadata <dev>]]
 */
void bsync_status(struct dm_target *ti, status_type_t type, unsigned int status_flags,
		  char *result, unsigned int maxlen)
{
	struct bsync_target *bt = ti->private;
	struct bsync_state *st = bt->st;
	bool gran = bt->alloc_shift != BSYNC_DEFAULT_GRAN_SHIFT;
	struct bsync_stats stats;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		sum_stats(st, &stats);
		mutex_lock(&st->lock);
		DMEMIT("%u %llu %lu/%lu %llu %llu %s", st->nr_bitmaps,
		       bsync_bitmap_granularity(st->alloc), bsync_bitmap_weight(st->alloc),
		       st->alloc->nr_bits, stats.writes, stats.deferred, bsync_persist_state(st));
		if (st->session) {
			DMEMIT(" ");
			sz += bsync_session_emit_status(st->session, result + sz, maxlen - sz);
		} else {
			DMEMIT(" -");
		}
		mutex_unlock(&st->lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", bt->origin->name);
		if (bt->zeroed || gran || bt->meta)
			DMEMIT(" %u", bt->zeroed + 2 * gran + 2 * !!bt->meta);
		if (bt->zeroed)
			DMEMIT(" zeroed");
		if (gran)
			DMEMIT(" alloc_granularity %llu", (u64)SECTOR_SIZE << bt->alloc_shift);
		if (bt->meta)
			DMEMIT(" metadata %s", bt->meta->name);
		break;
	case STATUSTYPE_IMA:
		DMEMIT("target_name=%s,target_version=%u.%u.%u,origin=%s,zeroed=%c,metadata=%s;",
		       ti->type->name, ti->type->version[0], ti->type->version[1],
		       ti->type->version[2], bt->origin->name, bt->zeroed ? 'y' : 'n',
		       bt->meta ? bt->meta->name : "-");
		break;
	}
}
