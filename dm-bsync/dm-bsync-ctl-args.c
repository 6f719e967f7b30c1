// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: argument parsing and the lookups
 * that the message verbs share (a named bitmap, the session, a byte
 * range). Their errors name the verb their caller passes.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/string.h>

#include "dm-bsync-ctl.h"

/* Bytes, with an optional k, m or g suffix (powers of 1024). */
int bsync_parse_size(const char *arg, u64 *val)
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

	r = bsync_parse_size(arg, &bytes);
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

struct bsync_bitmap *bsync_find_bitmap(struct bsync_state *st, const char *name)
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
int bsync_msg_get_bitmap(struct bsync_target *bt, const char *verb, const char *name,
			 bool idle, struct bsync_bitmap **out)
{
	struct bsync_bitmap *bm = bsync_find_bitmap(bt->st, name);

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
int bsync_msg_check_consistent(struct bsync_target *bt, const char *verb,
			       const struct bsync_bitmap *bm)
{
	if (!bm->inconsistent)
		return 0;
	msg_err(bt, "%s: bitmap \"%s\" is inconsistent (it may miss writes): clear or remove it",
		verb, bm->name);
	return -EINVAL;
}

/* After a change to @bm: make it durable if it is persistent. */
int bsync_msg_commit(struct bsync_target *bt, const struct bsync_bitmap *bm)
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
int bsync_msg_parse_range(struct bsync_target *bt, const char *verb, const char *off_arg,
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

/* The device's backup session, for an operation that needs one. */
int bsync_msg_get_session(struct bsync_target *bt, const char *verb)
{
	if (bt->st->session)
		return 0;
	msg_err(bt, "%s: no backup session", verb);
	return -EINVAL;
}
