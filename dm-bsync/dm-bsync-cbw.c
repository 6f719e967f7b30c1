// SPDX-License-Identifier: GPL-2.0
/*
 * Copy-before-write engine of the bsync target: a backup session's life
 * and the preserving of old clusters before writes overwrite them.
 *
 * The bio path tests one bit per cluster a write touches (bsync_cbw_needed()).
 * Only a write to a cluster the backup still needs comes here: it is held
 * on a worker that reads the whole old cluster from the origin into memory
 * and writes it to a free store slot, and parks the write on that copy. When
 * the copy lands, the slot is published, the cluster stops being needed,
 * view reads of the cluster still going to the origin drain, and the write
 * is re-examined and released. Concurrent writes to the cluster share the
 * one copy; writes to other clusters never take a lock.
 *
 * The copies' memory is dm-bsync-cbw-buf.c's; reading the frozen view is
 * dm-bsync-view.c's. Neither calls into this file.
 */
#include <linux/blkdev.h>
#include <linux/bitmap.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "dm-bsync.h"
#include "dm-bsync-cbw-buf.h"

static struct workqueue_struct *bsync_wq;
static atomic_t bsync_live_sessions = ATOMIC_INIT(0);

static struct bsync_bio *bio_pb(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct bsync_bio));
}

/*
 * Session lifetime
 */

static void session_free_work(struct work_struct *work)
{
	struct bsync_session *s = container_of(work, struct bsync_session, free_work);

	cancel_delayed_work_sync(&s->timer);
	cancel_work_sync(&s->work);
	bsync_copy_cache_drain(s);
	xa_destroy(&s->map);
	bsync_bdev_close(&s->store);
	bsync_bdev_close(&s->origin);
	kvfree(s->slots);
	bsync_bitmap_destroy(s->needed);
	kfree(s);
	if (atomic_dec_and_test(&bsync_live_sessions))
		wake_up_var(&bsync_live_sessions);
}

void bsync_session_get(struct bsync_session *s)
{
	refcount_inc(&s->ref);
}

/* The last reference may go from any context: free from the workqueue. */
void bsync_session_put(struct bsync_session *s)
{
	if (refcount_dec_and_test(&s->ref))
		queue_work(bsync_wq, &s->free_work);
}

static void session_work(struct work_struct *work);
static void session_timer(struct work_struct *work);

/*
 * Open the store and the origin and allocate everything a session needs;
 * the needed set is filled by bsync_session_arm() once writes are quiesced.
 */
struct bsync_session *bsync_session_create(const struct bsync_session_params *p,
					   const char **error)
{
	struct bsync_session *s;
	int r;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s) {
		*error = "cannot allocate session";
		return ERR_PTR(-ENOMEM);
	}
	refcount_set(&s->ref, 1);
	s->shift = p->shift;
	s->dev_sectors = p->dev_sectors;
	s->policy = p->policy;
	s->timeout = msecs_to_jiffies(p->timeout_ms);
	s->state = BSYNC_SESSION_ACTIVE;
	strscpy(s->dev_name, p->dev_name, sizeof(s->dev_name));
	xa_init_flags(&s->map, XA_FLAGS_LOCK_IRQ);
	INIT_LIST_HEAD(&s->copies);
	INIT_LIST_HEAD(&s->finished);
	INIT_LIST_HEAD(&s->to_write);
	INIT_LIST_HEAD(&s->copy_cache);
	bio_list_init(&s->held);
	bio_list_init(&s->spent);
	INIT_WORK(&s->work, session_work);
	INIT_WORK(&s->free_work, session_free_work);
	INIT_DELAYED_WORK(&s->timer, session_timer);
	init_waitqueue_head(&s->reader_wait);

	/* Exclusive: nothing else may write the store behind our back. */
	r = bsync_bdev_open_path(&s->store, p->store_path, s);
	if (r) {
		*error = "cannot open the store exclusively";
		goto bad;
	}
	if (s->store.bdev->bd_dev == p->origin_dev || s->store.bdev->bd_dev == p->self_dev) {
		*error = "the store cannot be the device it protects";
		r = -EINVAL;
		goto bad;
	}
	r = bsync_bdev_open_dev(&s->origin, p->origin_dev);
	if (r) {
		*error = "cannot open the origin";
		goto bad;
	}
	s->nr_slots = bdev_nr_sectors(s->store.bdev) >> s->shift;
	if (!s->nr_slots) {
		*error = "the store is smaller than one cluster";
		r = -ENOSPC;
		goto bad;
	}
	r = -ENOMEM;
	*error = "cannot allocate session maps";
	s->slots = kvcalloc(BITS_TO_LONGS(s->nr_slots), sizeof(unsigned long), GFP_KERNEL);
	if (!s->slots)
		goto bad;
	s->needed = bsync_bitmap_create(NULL, s->shift, s->dev_sectors, false);
	if (IS_ERR(s->needed)) {
		r = PTR_ERR(s->needed);
		s->needed = NULL;
		goto bad;
	}
	*error = "cannot allocate a copy buffer";
	r = bsync_copy_cache_init(s);
	if (r)
		goto bad;
	atomic_inc(&bsync_live_sessions);
	return s;

bad:
	bsync_bdev_close(&s->store);
	bsync_bdev_close(&s->origin);
	kvfree(s->slots);
	bsync_bitmap_destroy(s->needed);
	kfree(s);
	return ERR_PTR(r);
}

/* The start instant: the caller has writes quiesced. */
void bsync_session_arm(struct bsync_session *s, enum bsync_set set,
		       const struct bsync_bitmap *src)
{
	switch (set) {
	case BSYNC_SET_ALL:
	case BSYNC_SET_NONE:
		bsync_bitmap_mark_all(s->needed);
		break;
	case BSYNC_SET_BITMAP:
	case BSYNC_SET_ALLOCATED:
		bsync_bitmap_merge(s->needed, src);
		break;
	}
}

/* Caller holds the map lock. Guest writes to the session's clusters pass from now on. */
static void session_break(struct bsync_session *s, const char *reason)
{
	struct bsync_copy *c;

	if (s->state != BSYNC_SESSION_ACTIVE)
		return;
	s->state = BSYNC_SESSION_BROKEN;
	s->reason = reason;
	bsync_bitmap_clear(s->needed);
	list_for_each_entry(c, &s->copies, list) {
		bio_list_merge(&s->held, &c->waiters);
		bio_list_init(&c->waiters);
	}
	queue_work(bsync_wq, &s->work);
	DMERR_LIMIT("%s: backup session broken: %s", s->dev_name, reason);
}

/*
 * Disarm copy-before-write at the end of a backup. The caller has writes
 * quiesced, so no write is held; copies still in flight finish on their
 * own and hold the session until then.
 */
void bsync_session_end(struct bsync_session *s)
{
	xa_lock_irq(&s->map);
	s->state = BSYNC_SESSION_ENDED;
	bsync_bitmap_clear(s->needed);
	xa_unlock_irq(&s->map);
	bsync_session_put(s);
}

const char *bsync_session_state_name(const struct bsync_session *s)
{
	switch (READ_ONCE(s->state)) {
	case BSYNC_SESSION_ACTIVE:
		return "active";
	case BSYNC_SESSION_BROKEN:
		return "broken";
	default:
		return "ended";
	}
}

/*
 * Store slots
 */

static long slot_alloc(struct bsync_session *s)
{
	unsigned long slot = find_next_zero_bit(s->slots, s->nr_slots, s->slot_hint);

	if (slot >= s->nr_slots)
		slot = find_first_zero_bit(s->slots, s->nr_slots);
	if (slot >= s->nr_slots)
		return -ENOSPC;
	__set_bit(slot, s->slots);
	s->slot_hint = slot + 1;
	s->slots_used++;
	return slot;
}

static void slot_free(struct bsync_session *s, unsigned long slot)
{
	__clear_bit(slot, s->slots);
	s->slots_used--;
}

/*
 * Held writes
 */

static void release_write(struct bsync_session *s, struct bio *bio)
{
	atomic64_add(ktime_get_ns() - bio_pb(bio)->held_since, &s->delay_ns);
	dm_submit_bio_remap(bio, NULL);
}

static void fail_writes(struct bsync_session *s, struct bio_list *bios)
{
	struct bio *bio;

	while ((bio = bio_list_pop(bios))) {
		atomic64_add(ktime_get_ns() - bio_pb(bio)->held_since, &s->delay_ns);
		bio_io_error(bio);
	}
}

/* Called from the bio path for a write that touches a needed cluster. */
void bsync_cbw_hold(struct bsync_session *s, struct bio *bio)
{
	unsigned long flags;

	bio_pb(bio)->held_since = ktime_get_ns();
	atomic64_inc(&s->delayed);
	xa_lock_irqsave(&s->map, flags);
	bio_list_add(&s->held, bio);
	xa_unlock_irqrestore(&s->map, flags);
	queue_work(bsync_wq, &s->work);
}

static void copy_finished(struct bsync_session *s, struct bsync_copy *c)
{
	unsigned long flags;

	xa_lock_irqsave(&s->map, flags);
	list_move_tail(&c->list, &s->finished);
	xa_unlock_irqrestore(&s->map, flags);
	queue_work(bsync_wq, &s->work);
}

static void copy_read_endio(struct bio *bio);

static void copy_write_endio(struct bio *bio)
{
	struct bsync_copy *c = bio->bi_private;

	if (bio->bi_status)
		c->write_err = true;
	if (atomic_dec_and_test(&c->pending))
		copy_finished(c->s, c);
}

/* Issue one phase of a copy: every bio of the cluster, read or write. */
static void copy_submit(struct bsync_session *s, struct bsync_copy *c, bool write)
{
	sector_t start = (sector_t)c->cluster << s->shift;
	sector_t nr_sectors = min_t(sector_t, 1ULL << s->shift, s->dev_sectors - start);
	unsigned int len = nr_sectors << SECTOR_SHIFT;
	sector_t sector = write ? (sector_t)c->slot << s->shift : start;
	struct block_device *bdev = write ? s->store.bdev : s->origin.bdev;
	/* The last, partial cluster may need fewer bios and pages. */
	unsigned int nr = DIV_ROUND_UP(DIV_ROUND_UP(len, PAGE_SIZE), BIO_MAX_VECS);
	unsigned int b, p = 0, n, chunk;
	struct bio *bio;

	atomic_set(&c->pending, nr);
	for (b = 0; b < nr; b++) {
		bio = c->bios[b];
		bio_uninit(bio);
		bio_init(bio, bdev, bio->bi_inline_vecs, bsync_copy_bio_pages(c->nr_pages, b),
			 write ? REQ_OP_WRITE : REQ_OP_READ);
		bio->bi_iter.bi_sector = sector + (p << (PAGE_SHIFT - SECTOR_SHIFT));
		bio->bi_end_io = write ? copy_write_endio : copy_read_endio;
		bio->bi_private = c;
		for (n = 0; n < BIO_MAX_VECS && p * PAGE_SIZE < len; n++, p++) {
			chunk = min_t(unsigned int, PAGE_SIZE, len - p * PAGE_SIZE);
			__bio_add_page(bio, c->pages[p], chunk, 0);
		}
		submit_bio_noacct(bio);
	}
}

/*
 * The old data is in memory: the worker writes it to the store. Never
 * from here: a completion may run inline in the submitter's plug flush
 * (null_blk irqmode=0, brd) or in a threaded interrupt, where submitting
 * again recurses into the driver or sleeps in the store's rq-qos.
 */
static void copy_read_endio(struct bio *bio)
{
	struct bsync_copy *c = bio->bi_private;
	struct bsync_session *s = c->s;
	unsigned long flags;

	if (bio->bi_status)
		c->read_err = true;
	if (!atomic_dec_and_test(&c->pending))
		return;
	if (c->read_err) {
		copy_finished(s, c);
	} else {
		xa_lock_irqsave(&s->map, flags);
		list_add_tail(&c->start, &s->to_write);
		xa_unlock_irqrestore(&s->map, flags);
		queue_work(bsync_wq, &s->work);
	}
}

static void start_copies(struct bsync_session *s, struct list_head *todo)
{
	struct bsync_copy *c, *tmp;
	struct blk_plug plug;

	blk_start_plug(&plug);
	list_for_each_entry_safe(c, tmp, todo, start) {
		list_del_init(&c->start);
		copy_submit(s, c, false);
	}
	blk_finish_plug(&plug);
	if (s->timeout)
		queue_delayed_work(bsync_wq, &s->timer, s->timeout);
}

/* Caller holds the map lock. The oldest copy in flight that may still land. */
static struct bsync_copy *oldest_copy(struct bsync_session *s)
{
	struct bsync_copy *c;

	list_for_each_entry(c, &s->copies, list)
		if (!c->timed_out)
			return c;
	return NULL;
}

/*
 * Start copies for the needed clusters @bio touches and park it on the
 * first copy still in flight; release it once none is left. With the
 * budget spent, the bio waits on the oldest copy in flight and is
 * examined again when it lands: a bio over many clusters is preserved a
 * budget at a time.
 *
 * The map lock is dropped to allocate a copy buffer or an xarray node, and
 * the walk restarts from the bio's first cluster. The restarts are bounded
 * by the bio's clusters: a new buffer is mapped to a cluster on the next
 * pass (or the pass ends), and once a node is reserved that cluster's
 * __xa_store() cannot fail for memory on the next pass; entries are only
 * removed on this worker, so nothing undoes that progress meanwhile.
 * Hence at most 2n + 2 passes for n clusters; more would be a bug, and the
 * write fails rather than the worker spinning.
 */
static void examine_write(struct bsync_session *s, struct bio *bio)
{
	sector_t sector = bio->bi_iter.bi_sector;
	unsigned long first = sector >> s->shift;
	unsigned long last = (sector + bio_sectors(bio) - 1) >> s->shift;
	struct bsync_copy *spare = NULL, *wait_on, *c;
	LIST_HEAD(todo);
	bool fail = false, parked = false, spent = false;
	unsigned long i, passes = 0, max_passes;
	void *entry;
	long slot;

	last = min(last, s->needed->nr_bits - 1);
	max_passes = 2 * (last >= first ? last - first + 1 : 0) + 2;
again:
	wait_on = NULL;
	xa_lock_irq(&s->map);
	if (s->state != BSYNC_SESSION_ACTIVE)
		goto unlock;
	if (WARN_ON_ONCE(++passes > max_passes)) {
		fail = true;
		goto unlock;
	}
	for (i = find_next_bit(s->needed->bits, last + 1, first); i <= last;
	     i = find_next_bit(s->needed->bits, last + 1, i + 1)) {
		entry = xa_load(&s->map, i);
		if (entry) {
			c = entry;
			if (c->timed_out) {
				fail = true;
				goto unlock;
			}
			wait_on = wait_on ?: c;
			continue;
		}
		if (!spare)
			spare = bsync_copy_take_cached(s);
		if (!spare && !spent) {
			xa_unlock_irq(&s->map);
			spare = bsync_copy_new(s);
			spent = !spare;
			goto again;
		}
		if (!spare) {
			c = wait_on ?: oldest_copy(s);
			if (c) {
				wait_on = c;
			} else if (list_empty(&s->copies)) {
				/* Every buffer is landing on the worker: look again after it. */
				bio_list_add(&s->spent, bio);
				parked = true;
			} else {
				/* Only copies given up on are in flight: the store is stuck. */
				fail = true;
			}
			break;
		}
		slot = slot_alloc(s);
		if (slot < 0) {
			if (s->policy == BSYNC_BREAK_GUEST_WRITE) {
				DMERR_LIMIT("%s: store full: failing a guest write", s->dev_name);
				fail = true;
			} else {
				session_break(s, "enospc");
			}
			goto unlock;
		}
		/*
		 * The slot is empty or reserved below (xa_load() reads both as
		 * NULL): a store, as a cmpxchg from NULL would not replace a
		 * reserved entry yet return NULL as if it had.
		 */
		entry = __xa_store(&s->map, i, spare, GFP_NOWAIT);
		if (xa_is_err(entry)) {
			slot_free(s, slot);
			xa_unlock_irq(&s->map);
			if (xa_reserve_irq(&s->map, i, GFP_NOIO)) {
				xa_lock_irq(&s->map);
				session_break(s, "enomem");
				goto unlock;
			}
			goto again;
		}
		spare->s = s;
		spare->cluster = i;
		spare->slot = slot;
		spare->started = jiffies;
		bio_list_init(&spare->waiters);
		list_add_tail(&spare->list, &s->copies);
		list_add_tail(&spare->start, &todo);
		bsync_session_get(s);
		wait_on = wait_on ?: spare;
		spare = NULL;
	}
	if (wait_on) {
		bio_list_add(&wait_on->waiters, bio);
		parked = true;
	}
unlock:
	xa_unlock_irq(&s->map);
	if (spare)
		bsync_copy_put(s, spare);
	start_copies(s, &todo);
	if (fail) {
		struct bio_list one = BIO_EMPTY_LIST;

		bio_list_add(&one, bio);
		fail_writes(s, &one);
	} else if (!parked) {
		release_write(s, bio);
	}
}

static void requeue_writes(struct bsync_session *s, struct bio_list *bios)
{
	if (bio_list_empty(bios))
		return;
	xa_lock_irq(&s->map);
	bio_list_merge(&s->held, bios);
	xa_unlock_irq(&s->map);
	queue_work(bsync_wq, &s->work);
}

static bool bucket_idle(struct bsync_session *s, unsigned int b)
{
	return !atomic_read(&s->readers[b]);
}

/* A copy landed (or failed): publish it and let its writes go on. */
static void finish_copy(struct bsync_session *s, struct bsync_copy *c)
{
	struct bio_list waiters;
	bool fail = false;

	xa_lock_irq(&s->map);
	waiters = c->waiters;
	bio_list_init(&c->waiters);
	if (!c->read_err && !c->write_err && !c->reader_done &&
	    s->state == BSYNC_SESSION_ACTIVE) {
		/* Replacing an entry allocates nothing. */
		__xa_store(&s->map, c->cluster, xa_mk_value(c->slot), GFP_ATOMIC);
		clear_bit(c->cluster, s->needed->bits);
		atomic64_inc(&s->preserved);
		xa_unlock_irq(&s->map);
		/* View reads that went to the origin before the switch must finish first. */
		wait_event(s->reader_wait, bucket_idle(s, bsync_reader_bucket(c->cluster)));
		goto out;
	}
	__xa_erase(&s->map, c->cluster);
	slot_free(s, c->slot);
	if ((c->read_err || c->write_err) && s->state == BSYNC_SESSION_ACTIVE) {
		DMERR_LIMIT("%s: copy-before-write of cluster %lu failed: %s error",
			    s->dev_name, c->cluster, c->read_err ? "origin read" : "store write");
		if (s->policy == BSYNC_BREAK_GUEST_WRITE)
			fail = true;	/* the cluster stays needed: a later write retries */
		else
			session_break(s, c->read_err ? "origin-eio" : "store-eio");
	}
	xa_unlock_irq(&s->map);
out:
	if (fail)
		fail_writes(s, &waiters);
	else
		requeue_writes(s, &waiters);
	bsync_copy_put(s, c);
	bsync_session_put(s);
}

static void session_work(struct work_struct *work)
{
	struct bsync_session *s = container_of(work, struct bsync_session, work);
	struct bsync_copy *c, *tmp;
	LIST_HEAD(finished);
	LIST_HEAD(to_write);
	struct bio_list held;
	struct bio *bio;

	xa_lock_irq(&s->map);
	list_splice_init(&s->to_write, &to_write);
	list_splice_init(&s->finished, &finished);
	held = s->held;
	bio_list_init(&s->held);
	/*
	 * Writes that found every buffer landing: the copies they waited for
	 * were on s->finished, and queued this run once there.
	 */
	bio_list_merge(&held, &s->spent);
	bio_list_init(&s->spent);
	xa_unlock_irq(&s->map);

	list_for_each_entry_safe(c, tmp, &to_write, start) {
		list_del_init(&c->start);
		copy_submit(s, c, true);
	}
	list_for_each_entry_safe(c, tmp, &finished, list) {
		list_del(&c->list);
		finish_copy(s, c);
	}
	while ((bio = bio_list_pop(&held)))
		examine_write(s, bio);
}

/* No guest write waits longer than the cbw timeout for a copy. */
static void session_timer(struct work_struct *work)
{
	struct bsync_session *s = container_of(to_delayed_work(work), struct bsync_session, timer);
	struct bio_list expired = BIO_EMPTY_LIST;
	unsigned long next = 0;
	struct bsync_copy *c;

	xa_lock_irq(&s->map);
	list_for_each_entry(c, &s->copies, list) {
		if (c->timed_out)
			continue;
		if (time_before(jiffies, c->started + s->timeout)) {
			next = c->started + s->timeout - jiffies;
			break;
		}
		if (s->state != BSYNC_SESSION_ACTIVE)
			break;
		DMERR_LIMIT("%s: copy-before-write of cluster %lu timed out", s->dev_name,
			    c->cluster);
		if (s->policy == BSYNC_BREAK_SNAPSHOT) {
			session_break(s, "timeout");
			break;
		}
		c->timed_out = true;
		bio_list_merge(&expired, &c->waiters);
		bio_list_init(&c->waiters);
	}
	if (next)
		queue_delayed_work(bsync_wq, &s->timer, next);
	xa_unlock_irq(&s->map);
	fail_writes(s, &expired);
}

/*
 * The reader's side
 */

/* Wait until no view read is in flight anywhere. */
static void readers_drain(struct bsync_session *s)
{
	unsigned int b;

	for (b = 0; b < BSYNC_READER_BUCKETS; b++)
		wait_event(s->reader_wait, bucket_idle(s, b));
}

/*
 * The backup copied the clusters [sector, sector + nr) covers: writes there
 * pass from now on and their store slots are reused. Slots are freed in
 * batches once view reads that may still use them have finished.
 */
void bsync_session_done(struct bsync_session *s, sector_t sector, sector_t nr)
{
	sector_t gran = 1ULL << s->shift;
	unsigned long i = (sector + gran - 1) >> s->shift;
	unsigned long end = (sector + nr) >> s->shift;
	unsigned long freed[64];
	struct bio_list go = BIO_EMPTY_LIST;
	unsigned int n = 0;
	void *entry;

	if (sector + nr >= s->dev_sectors)
		end = s->needed->nr_bits;
	while (i < end) {
		xa_lock_irq(&s->map);
		for (; i < end && n < ARRAY_SIZE(freed); i++) {
			entry = xa_load(&s->map, i);
			if (xa_is_value(entry)) {
				__xa_erase(&s->map, i);
				freed[n++] = xa_to_value(entry);
			} else if (entry) {
				struct bsync_copy *c = entry;

				c->reader_done = true;
				bio_list_merge(&go, &c->waiters);
				bio_list_init(&c->waiters);
			} else if (!test_bit(i, s->needed->bits)) {
				continue;
			}
			clear_bit(i, s->needed->bits);
			atomic64_inc(&s->copied);
		}
		xa_unlock_irq(&s->map);
		if (n) {
			readers_drain(s);
			xa_lock_irq(&s->map);
			while (n)
				slot_free(s, freed[--n]);
			xa_unlock_irq(&s->map);
		}
		cond_resched();
	}
	requeue_writes(s, &go);
}

/*
 * state=<s> reason=<r> cluster=<bytes> needed=<n> copied=<n> preserved=<n>
 * store_used=<bytes> store_size=<bytes> delayed=<n> delay_us=<n>
 * copy_mem=<bytes> copy_mem_peak=<bytes>
 */
int bsync_session_emit_status(struct bsync_session *s, char *result, unsigned int maxlen)
{
	unsigned long used, mem, peak;
	unsigned int sz = 0;

	xa_lock_irq(&s->map);
	used = s->slots_used;
	mem = s->copy_mem;
	peak = s->copy_mem_peak;
	xa_unlock_irq(&s->map);
	DMEMIT("state=%s reason=%s cluster=%llu needed=%lu copied=%lld preserved=%lld ",
	       bsync_session_state_name(s), s->reason ?: "-",
	       (u64)SECTOR_SIZE << s->shift, bsync_bitmap_weight(s->needed),
	       atomic64_read(&s->copied), atomic64_read(&s->preserved));
	DMEMIT("store_used=%llu store_size=%llu delayed=%lld delay_us=%lld",
	       (u64)used << (s->shift + SECTOR_SHIFT),
	       (u64)s->nr_slots << (s->shift + SECTOR_SHIFT),
	       atomic64_read(&s->delayed), atomic64_read(&s->delay_ns) / NSEC_PER_USEC);
	DMEMIT(" copy_mem=%lu copy_mem_peak=%lu", mem, peak);
	return sz;
}

int bsync_cbw_init(void)
{
	bsync_wq = alloc_workqueue("dm-bsync", WQ_MEM_RECLAIM, 0);
	return bsync_wq ? 0 : -ENOMEM;
}

/* Sessions outlive their devices until their last copy lands. */
void bsync_cbw_exit(void)
{
	wait_var_event(&bsync_live_sessions, !atomic_read(&bsync_live_sessions));
	destroy_workqueue(bsync_wq);
}
