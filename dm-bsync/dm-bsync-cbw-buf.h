/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A copy of copy-before-write (dm-bsync-cbw.c) and its buffer
 * (dm-bsync-cbw-buf.c). Buffer calls take the session's map lock
 * themselves, but for bsync_copy_take_cached(): its caller holds it.
 */
#ifndef DM_BSYNC_CBW_BUF_H
#define DM_BSYNC_CBW_BUF_H

#include <linux/bio.h>
#include <linux/list.h>
#include <linux/mm.h>

#include "dm-bsync-cbw.h"

/*
 * One cluster being preserved: read from the origin into its own pages,
 * then written from them to the store slot. The pages and bios are kept
 * on a small per-session cache between copies.
 */
struct bsync_copy {
	struct list_head list;		/* s->copies, then s->finished */
	struct list_head start;		/* to issue: a worker's list, or s->to_write */
	struct bsync_session *s;
	unsigned long cluster, slot;
	unsigned long started;		/* jiffies */
	struct bio_list waiters;
	bool read_err, write_err;
	bool timed_out;			/* waiters were given up on */
	bool reader_done;		/* the backup no longer needs it */

	atomic_t pending;		/* bios of the current phase in flight */
	unsigned int nr_pages, nr_bios;
	struct page **pages;
	struct bio **bios;
};

static inline unsigned int bsync_copy_bio_pages(unsigned int nr_pages, unsigned int i)
{
	return min_t(unsigned int, nr_pages - i * BIO_MAX_VECS, BIO_MAX_VECS);
}

static inline unsigned long bsync_copy_bytes(const struct bsync_session *s)
{
	return PAGE_ALIGN(SECTOR_SIZE << s->shift);
}

int bsync_copy_cache_init(struct bsync_session *s);
void bsync_copy_cache_drain(struct bsync_session *s);
struct bsync_copy *bsync_copy_take_cached(struct bsync_session *s);
struct bsync_copy *bsync_copy_new(struct bsync_session *s);
void bsync_copy_put(struct bsync_session *s, struct bsync_copy *c);

#endif
