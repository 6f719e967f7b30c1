// SPDX-License-Identifier: GPL-2.0
/*
 * Persistent bitmaps of the bsync target: the write path's side.
 *
 * The rule, as dm-era's: a write that would dirty a cluster that is clean
 * on the metadata device (in any recording persistent bitmap) is issued
 * only once a log record of it is durable. Such writes wait on a list; one
 * worker writes a log block for all that are waiting (group commit), marks
 * the clusters durable and issues them. Writes to durable clusters pass
 * straight through. A write that finds its cluster dirty in memory but not
 * yet durable waits too: the test is on the durable copy, which only the
 * worker sets, after the record is on disk.
 *
 * When metadata I/O fails, the persistent bitmaps become inconsistent and
 * writes stop waiting for the log: guest writes never hang on metadata
 * trouble, and the bitmaps say they cannot be trusted.
 *
 * The target calls down into this file; the writes it logged go back to
 * the bio path through st->persist_issue, not by calling the target.
 */
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include "dm-bsync.h"
#include "dm-bsync-metadata.h"

/* Records one worker pass writes at most: four log blocks. */
#define PERSIST_BATCH	(4 * BSYNC_MD_LOG_RECORDS)

struct bsync_persist {
	struct bsync_state *st;
	struct bsync_md *md;
	char name[32];

	/* Serialises metadata I/O and changes to the durable bits. */
	struct mutex io_lock;
	bool failed;			/* the last metadata write failed */
	bool flags_pending;		/* inconsistent flags not yet on disk */

	spinlock_t lock;		/* waiting */
	struct bio_list waiting;	/* writes waiting for a log record */
	struct work_struct work;
	struct workqueue_struct *wq;
	struct bsync_md_log_record *recs;

	atomic64_t waited;		/* writes that waited for a record */
};

static bool is_tracked(const struct bsync_bitmap *bm)
{
	return bm->persistent && !READ_ONCE(bm->inconsistent) &&
	       (bm->successor ?: bm)->recording;
}

bool bsync_persist_needed(struct bsync_state *st, sector_t sector, sector_t nr)
{
	struct bsync_bitmap *bm;

	list_for_each_entry(bm, &st->bitmaps, list)
		if (is_tracked(bm) && !bsync_bitmap_test_range(bm->durable, sector, nr))
			return true;
	return false;
}

static void emit_event(struct bio *bio)
{
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));

	dm_table_event(pb->bt->ti->table);
}

/*
 * Metadata cannot be trusted from here on: the tracked bitmaps become
 * inconsistent, and we try to get that onto the disk. Caller holds io_lock.
 */
static void persist_fail(struct bsync_persist *p, int r, const char *what)
{
	struct bsync_bitmap *bm;

	lockdep_assert_held(&p->io_lock);
	list_for_each_entry(bm, &p->st->bitmaps, list) {
		if (!bm->persistent || bm->inconsistent)
			continue;
		WRITE_ONCE(bm->inconsistent, true);
		DMERR("%s: bitmap \"%s\" is now inconsistent: %s failed (%d)",
		      p->name, bm->name, what, r);
	}
	p->failed = true;
	p->flags_pending = bsync_md_commit(p->md, &p->st->bitmaps, p->st->dev_sectors,
					   false) != 0;
}

/* Log the waiting writes that still need it. Caller holds io_lock. */
static bool persist_batch(struct bsync_persist *p, struct bio_list *batch)
{
	struct bsync_state *st = p->st;
	struct bsync_bitmap *bm;
	unsigned int n = 0, i;
	struct bio *bio;
	int r;

	bio_list_for_each(bio, batch) {
		if (!bsync_persist_needed(st, bio->bi_iter.bi_sector, bio_sectors(bio)))
			continue;
		p->recs[n].sector = cpu_to_le64(bio->bi_iter.bi_sector);
		p->recs[n].nr_sectors = cpu_to_le64(bio_sectors(bio));
		n++;
	}
	if (!n)
		return false;
	r = bsync_md_log(p->md, p->recs, n);
	if (r == -ENOSPC) {
		/* The log is full: a commit takes in what it holds. */
		r = bsync_md_commit(p->md, &st->bitmaps, st->dev_sectors, false);
		if (!r)
			r = bsync_md_log(p->md, p->recs, n);
	}
	if (r) {
		persist_fail(p, r, "log write");
		return true;
	}
	for (i = 0; i < n; i++) {
		sector_t sector = le64_to_cpu(p->recs[i].sector);
		sector_t len = le64_to_cpu(p->recs[i].nr_sectors);

		list_for_each_entry(bm, &st->bitmaps, list)
			if (is_tracked(bm))
				bsync_bitmap_mark(bm->durable, sector, len);
	}
	atomic64_add(n, &p->waited);
	return false;
}

static void persist_work(struct work_struct *work)
{
	struct bsync_persist *p = container_of(work, struct bsync_persist, work);
	unsigned int noio = memalloc_noio_save();
	struct bio_list batch;
	struct bio *bio;
	unsigned int n;
	bool failed;

	for (;;) {
		bio_list_init(&batch);
		spin_lock_irq(&p->lock);
		for (n = 0; n < PERSIST_BATCH && (bio = bio_list_pop(&p->waiting)); n++)
			bio_list_add(&batch, bio);
		spin_unlock_irq(&p->lock);
		if (bio_list_empty(&batch))
			break;

		mutex_lock(&p->io_lock);
		failed = persist_batch(p, &batch);
		mutex_unlock(&p->io_lock);
		if (failed)
			emit_event(bio_list_peek(&batch));
		while ((bio = bio_list_pop(&batch)))
			p->st->persist_issue(bio);
	}
	memalloc_noio_restore(noio);
}

void bsync_persist_defer(struct bsync_state *st, struct bio *bio)
{
	struct bsync_persist *p = st->persist;
	unsigned long flags;

	spin_lock_irqsave(&p->lock, flags);
	bio_list_add(&p->waiting, bio);
	spin_unlock_irqrestore(&p->lock, flags);
	queue_work(p->wq, &p->work);
}

/*
 * Control operations
 */

/*
 * The durable copies take the bits in memory, a frozen bitmap's successor
 * included: with writes quiesced, whatever they dirtied is durable already,
 * or in a bitmap that is inconsistent anyway. Caller holds io_lock.
 */
static void durable_from_memory(struct bsync_state *st)
{
	struct bsync_bitmap *bm;

	list_for_each_entry(bm, &st->bitmaps, list) {
		if (!bm->persistent)
			continue;
		bitmap_copy(bm->durable->bits, bm->bits, bm->nr_bits);
		if (bm->successor)
			bitmap_or(bm->durable->bits, bm->durable->bits, bm->successor->bits,
				  bm->nr_bits);
	}
}

/* Commit the persistent bitmaps as they are in memory; an error leaves them inconsistent. */
int bsync_persist_commit(struct bsync_state *st, struct dm_target *ti)
{
	struct bsync_persist *p = st->persist;
	unsigned int noio;
	int r;

	lockdep_assert_held(&st->lock);
	/* Writes wait at the gate: reclaim must not wait on them. */
	noio = memalloc_noio_save();
	mutex_lock(&p->io_lock);
	durable_from_memory(st);
	r = bsync_md_commit(p->md, &st->bitmaps, st->dev_sectors, false);
	if (!r) {
		p->failed = false;
		p->flags_pending = false;
	} else {
		persist_fail(p, r, "metadata commit");
		dm_table_event(ti->table);
	}
	mutex_unlock(&p->io_lock);
	memalloc_noio_restore(noio);
	return r;
}

/* Try again to get inconsistent flags onto the disk. Caller holds st->lock. */
void bsync_persist_retry(struct bsync_state *st)
{
	struct bsync_persist *p = st->persist;
	unsigned int noio;

	lockdep_assert_held(&st->lock);
	if (!p || !READ_ONCE(p->flags_pending))
		return;
	noio = memalloc_noio_save();
	mutex_lock(&p->io_lock);
	if (p->flags_pending &&
	    !bsync_md_commit(p->md, &st->bitmaps, st->dev_sectors, false)) {
		p->flags_pending = false;
		DMINFO("%s: inconsistent bitmap flags are now on the metadata device", p->name);
	}
	mutex_unlock(&p->io_lock);
	memalloc_noio_restore(noio);
}

int bsync_persist_check_room(struct bsync_state *st, unsigned long nr_bits)
{
	return bsync_md_check_room(st->persist->md, &st->bitmaps, nr_bits);
}

const char *bsync_persist_state(struct bsync_state *st)
{
	if (!st->persist)
		return "-";
	return READ_ONCE(st->persist->failed) ? "failed" : "ok";
}

dev_t bsync_persist_dev(struct bsync_state *st)
{
	return bsync_md_dev(st->persist->md);
}

int bsync_persist_emit_status(struct bsync_state *st, char *result, unsigned int maxlen)
{
	struct bsync_persist *p = st->persist;
	struct bsync_md_stats stats;
	unsigned int sz = 0;
	dev_t dev;

	if (!p) {
		DMEMIT("state=none");
		return sz;
	}
	mutex_lock(&p->io_lock);
	bsync_md_get_stats(p->md, &stats);
	mutex_unlock(&p->io_lock);
	dev = bsync_md_dev(p->md);
	DMEMIT("state=%s dev=%u:%u generation=%llu log=%llu/%llu commits=%llu",
	       bsync_persist_state(st), MAJOR(dev), MINOR(dev), stats.generation, stats.log_used,
	       stats.log_blocks, stats.commits);
	DMEMIT(" log_writes=%llu bytes_written=%llu waited_writes=%lld", stats.log_writes,
	       stats.bytes_written, (long long)atomic64_read(&p->waited));
	return sz;
}

/*
 * Set-up and tear-down
 */

static void bsync_persist_destroy_state(struct bsync_persist *p)
{
	if (!p)
		return;
	if (p->wq)
		destroy_workqueue(p->wq);
	bsync_md_close(p->md);
	kvfree(p->recs);
	kfree(p);
}

/*
 * Open the metadata device and load its bitmaps onto st->bitmaps, then
 * commit at once: the log starts afresh and the superblock says "in use".
 */
int bsync_persist_create(struct bsync_state *st, dev_t dev, const char *name,
			 char **error)
{
	struct bsync_persist *p;
	int r;

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p) {
		*error = "Cannot allocate metadata state";
		return -ENOMEM;
	}
	p->st = st;
	strscpy(p->name, name, sizeof(p->name));
	mutex_init(&p->io_lock);
	spin_lock_init(&p->lock);
	bio_list_init(&p->waiting);
	INIT_WORK(&p->work, persist_work);
	p->recs = kvmalloc_array(PERSIST_BATCH, sizeof(*p->recs), GFP_KERNEL);
	p->wq = alloc_workqueue("bsync-md", WQ_MEM_RECLAIM, 0);
	if (!p->recs || !p->wq) {
		*error = "Cannot allocate metadata state";
		r = -ENOMEM;
		goto bad;
	}
	p->md = bsync_md_open(dev, name, error);
	if (IS_ERR(p->md)) {
		r = PTR_ERR(p->md);
		p->md = NULL;
		goto bad;
	}
	r = bsync_md_load(p->md, st->dev_sectors, &st->bitmaps, error);
	if (r < 0)
		goto bad;
	st->nr_bitmaps += r;
	st->nr_persistent = r;
	st->persist = p;

	mutex_lock(&p->io_lock);
	r = bsync_md_commit(p->md, &st->bitmaps, st->dev_sectors, false);
	if (r) {
		/* Keep serving I/O; the bitmaps cannot be trusted. */
		persist_fail(p, r, "metadata commit at load");
		r = 0;
	}
	mutex_unlock(&p->io_lock);
	return 0;
bad:
	bsync_persist_destroy_state(p);
	return r;
}

/* The device is gone: write the bitmaps one last time, marked clean. */
void bsync_persist_destroy(struct bsync_state *st)
{
	struct bsync_persist *p = st->persist;
	int r;

	if (!p)
		return;
	flush_workqueue(p->wq);
	mutex_lock(&p->io_lock);
	durable_from_memory(st);
	r = bsync_md_commit(p->md, &st->bitmaps, st->dev_sectors, !p->failed);
	if (r)
		DMERR("%s: final metadata commit failed (%d): bitmaps load from the last good one",
		      p->name, r);
	mutex_unlock(&p->io_lock);
	st->persist = NULL;
	bsync_persist_destroy_state(p);
}
