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
#include <linux/device-mapper.h>
#include <linux/minmax.h>
#include <linux/sched.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "dm-bsync.h"

/*
 * A view read holds the reader count of each cluster it covers (one bucket
 * a cluster, all of them for a read of BSYNC_READER_BUCKETS clusters or
 * more), taken before it looks where the clusters are: finish_copy() clears
 * a cluster's needed bit and then waits for its bucket, so either the read
 * sees the bit cleared or the copy waits for the read.
 */
static void pin_buckets(struct bsync_session *s, struct bsync_view_pin *pin,
			unsigned long cluster, unsigned long clusters)
{
	unsigned int i;

	pin->first = bsync_reader_bucket(cluster);
	pin->count = min_t(unsigned long, clusters, BSYNC_READER_BUCKETS);
	for (i = 0; i < pin->count; i++)
		atomic_inc(&s->readers[(pin->first + i) % BSYNC_READER_BUCKETS]);
}

/* Keep the pins of the first @clusters clusters only. */
static void unpin_buckets(struct bsync_session *s, struct bsync_view_pin *pin,
			  unsigned long clusters)
{
	unsigned int keep = min_t(unsigned long, clusters, BSYNC_READER_BUCKETS);
	bool wake = false;

	while (pin->count > keep) {
		pin->count--;
		if (atomic_dec_and_test(&s->readers[(pin->first + pin->count) %
						    BSYNC_READER_BUCKETS]))
			wake = true;
	}
	if (wake && wq_has_sleeper(&s->reader_wait))
		wake_up(&s->reader_wait);
}

/* The end of the run of preserved clusters from @first in consecutive slots. */
static unsigned long store_run_end(struct bsync_session *s, unsigned long first,
				   unsigned long last, unsigned long slot)
{
	unsigned long c = first + 1;

	while (c <= last && xa_load(&s->map, c) == xa_mk_value(slot + (c - first)))
		c++;
	return c;
}

/*
 * Route a view read: to the origin while its clusters are needed (a write
 * there now waits for this read), to the store where copy-before-write
 * preserved them, else fail. A read over several clusters goes on as one
 * bio over the run from its first cluster that routes the same way (all
 * needed, or in consecutive store slots); dm_accept_partial_bio() hands
 * the rest back to device-mapper, which maps it again. @pin records what
 * bsync_snap_read_done() drops.
 */
int bsync_snap_map_read(struct bsync_session *s, struct bio *bio, struct bsync_view_pin *pin)
{
	sector_t sector = bio->bi_iter.bi_sector;
	unsigned long first = sector >> s->shift;
	unsigned long last = (bio_end_sector(bio) - 1) >> s->shift;
	unsigned long end;
	void *entry;

	pin->count = 0;
	if (READ_ONCE(s->state) != BSYNC_SESSION_ACTIVE || last >= s->needed->nr_bits)
		return -EIO;
	pin_buckets(s, pin, first, last - first + 1);
	smp_mb__after_atomic(); /* pairs with clear_bit() + wait in finish_copy() */
	if (test_bit(first, s->needed->bits)) {
		end = find_next_zero_bit(s->needed->bits, last + 1, first + 1);
		bio_set_dev(bio, s->origin.bdev);
	} else {
		entry = xa_load(&s->map, first);
		if (!xa_is_value(entry)) {
			bsync_snap_read_done(s, pin);
			return -EIO;
		}
		end = store_run_end(s, first, last, xa_to_value(entry));
		bio_set_dev(bio, s->store.bdev);
		bio->bi_iter.bi_sector = ((sector_t)xa_to_value(entry) << s->shift) +
					 (sector & ((1ULL << s->shift) - 1));
	}
	if (end <= last) {
		dm_accept_partial_bio(bio, ((sector_t)end << s->shift) - sector);
		unpin_buckets(s, pin, end - first);
	}
	return 0;
}

void bsync_snap_read_done(struct bsync_session *s, struct bsync_view_pin *pin)
{
	unpin_buckets(s, pin, 0);
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
