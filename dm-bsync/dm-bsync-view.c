// SPDX-License-Identifier: GPL-2.0
/*
 * The view of a backup session: where each cluster of the instant the
 * session froze is. A cluster still needed is on the origin; one that
 * copy-before-write preserved is in its store slot; any other has been
 * copied by the backup, and the view no longer has it. This file routes
 * the reads of the bsync-snap target (dm-bsync-snap.c) by that rule and
 * answers the extent queries over it (dm-bsync-ctl-query.c); it reads
 * the session's map and changes nothing but the counts of reads in flight
 * that the engine (dm-bsync-cbw.c) waits on.
 */
#include <linux/bio.h>
#include <linux/sched.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "dm-bsync.h"

/*
 * Route a view read of one cluster: to the origin while the cluster is
 * needed (a write there now waits for this read), to its store slot once
 * preserved, else fail. *bucket tells bsync_snap_read_done() what to drop.
 */
int bsync_snap_map_read(struct bsync_session *s, struct bio *bio, int *bucket)
{
	sector_t sector = bio->bi_iter.bi_sector;
	unsigned long cluster = sector >> s->shift;
	unsigned int b = bsync_reader_bucket(cluster);
	void *entry;

	if (READ_ONCE(s->state) != BSYNC_SESSION_ACTIVE || cluster >= s->needed->nr_bits)
		return -EIO;
	atomic_inc(&s->readers[b]);
	smp_mb__after_atomic(); /* pairs with clear_bit() + wait in finish_copy() */
	if (test_bit(cluster, s->needed->bits)) {
		bio_set_dev(bio, s->origin.bdev);
		*bucket = b;
		return 0;
	}
	entry = xa_load(&s->map, cluster);
	if (xa_is_value(entry)) {
		bio_set_dev(bio, s->store.bdev);
		bio->bi_iter.bi_sector = ((sector_t)xa_to_value(entry) << s->shift) +
					 (sector & ((1ULL << s->shift) - 1));
		*bucket = b;
		return 0;
	}
	bsync_snap_read_done(s, b);
	return -EIO;
}

void bsync_snap_read_done(struct bsync_session *s, int bucket)
{
	if (atomic_dec_and_test(&s->readers[bucket]) && wq_has_sleeper(&s->reader_wait))
		wake_up(&s->reader_wait);
}

/*
 * Queries
 */

/*
 * The queries walk runs under the map lock, which keeps interrupts off: a
 * run is extended at most WALK_CHUNK clusters per lock hold, so a run of
 * millions of clusters does not keep interrupts off for long.
 */
#define WALK_CHUNK	4096

/* Extend the run of preserved clusters that ends at @end. */
static unsigned long preserved_run_end(struct bsync_session *s, unsigned long end)
{
	unsigned long i, limit;
	void *entry;

	for (;;) {
		limit = end + WALK_CHUNK;
		xa_lock_irq(&s->map);
		xa_for_each_range(&s->map, i, entry, end, limit - 1) {
			if (i != end || !xa_is_value(entry))
				break;
			end++;
		}
		xa_unlock_irq(&s->map);
		if (end < limit)
			return end;
		cond_resched();
	}
}

/* The next run of preserved clusters at or after @from, in sectors. */
bool bsync_session_next_preserved(struct bsync_session *s, sector_t from,
				  sector_t *start, sector_t *len)
{
	unsigned long idx, end;
	void *entry;

	xa_lock_irq(&s->map);
	xa_for_each_start(&s->map, idx, entry, from >> s->shift) {
		if (xa_is_value(entry))
			break;
	}
	xa_unlock_irq(&s->map);
	if (!entry)
		return false;
	end = preserved_run_end(s, idx + 1);
	*start = max_t(sector_t, (sector_t)idx << s->shift, from);
	*len = min_t(sector_t, (sector_t)end << s->shift, s->dev_sectors) - *start;
	return true;
}

/* Extend the run of wanted (needed or preserved) clusters that ends at @end. */
static unsigned long wanted_run_end(struct bsync_session *s, unsigned long end)
{
	unsigned long nr = s->needed->nr_bits, limit;

	for (;;) {
		limit = min(nr, end + WALK_CHUNK);
		xa_lock_irq(&s->map);
		while (end < limit) {
			if (test_bit(end, s->needed->bits))
				end = find_next_zero_bit(s->needed->bits, limit, end);
			else if (xa_is_value(xa_load(&s->map, end)))
				end++;
			else
				break;
		}
		xa_unlock_irq(&s->map);
		if (end < limit || end >= nr)
			return end;
		cond_resched();
	}
}

/*
 * The next run at or after @from, in sectors, of clusters the backup still
 * has to copy: needed, or preserved and not yet done.
 */
bool bsync_session_next_wanted(struct bsync_session *s, sector_t from,
			       sector_t *start, sector_t *len)
{
	unsigned long nr = s->needed->nr_bits, wanted, kept = ULONG_MAX, end;
	void *entry;

	if (from >= s->dev_sectors)
		return false;
	xa_lock_irq(&s->map);
	wanted = find_next_bit(s->needed->bits, nr, from >> s->shift);
	xa_for_each_start(&s->map, kept, entry, from >> s->shift) {
		if (xa_is_value(entry) || kept >= wanted)
			break;
	}
	if (entry && xa_is_value(entry) && kept < wanted)
		wanted = kept;
	xa_unlock_irq(&s->map);
	if (wanted >= nr)
		return false;
	end = wanted_run_end(s, wanted + 1);
	*start = max_t(sector_t, (sector_t)wanted << s->shift, from);
	*len = min_t(sector_t, (sector_t)end << s->shift, s->dev_sectors) - *start;
	return true;
}
