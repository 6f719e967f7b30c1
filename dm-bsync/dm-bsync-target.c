// SPDX-License-Identifier: GPL-2.0
/*
 * dm-bsync: dirty bitmaps for incremental, point-in-time block backups.
 *
 * The target passes I/O straight to one origin device and records, in any
 * number of named dirty bitmaps, which clusters were written. This file
 * holds the table constructor, the state kept across table reloads and the
 * bio path. It calls down into the write gate (dm-bsync-gate.c), the
 * control files (dm-bsync-ctl*.c: messages and status), persist and
 * copy-before-write; they hand writes back through the continuations in
 * struct bsync_state, never by calling up into this file.
 */
#include <linux/blkdev.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "dm-bsync.h"

/*
 * State shared across table reloads
 */

static LIST_HEAD(bsync_states);
static DEFINE_MUTEX(bsync_states_lock);

static void state_free(struct bsync_state *st)
{
	struct bsync_bitmap *bm, *tmp;

	/* The device is gone: no write is in flight. */
	if (st->session)
		bsync_session_end(st->session);
	bsync_persist_destroy(st);
	list_for_each_entry_safe(bm, tmp, &st->bitmaps, list)
		bsync_bitmap_destroy(bm);
	bsync_bitmap_destroy(st->alloc);
	bsync_gate_free(st);
	free_percpu(st->stats);
	kfree(st);
}

/* The bio path's continuations, for the write gate and persist (below). */
static void gate_reissue(struct bio *bio);
static void persist_issue(struct bio *bio);

static struct bsync_state *state_create(struct bsync_target *bt)
{
	struct bsync_state *st;

	bt->ti->error = "Cannot allocate device state";
	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!st)
		return ERR_PTR(-ENOMEM);
	refcount_set(&st->ref, 1);
	st->md = dm_table_get_md(bt->ti->table);
	st->origin_dev = bt->origin->bdev->bd_dev;
	st->dev_sectors = bt->ti->len;
	mutex_init(&st->lock);
	INIT_LIST_HEAD(&st->bitmaps);
	st->gate_reissue = gate_reissue;
	st->persist_issue = persist_issue;

	/* First: state_free() cancels the gate's expiry, which must be set up. */
	if (bsync_gate_init(st))
		goto bad;
	st->stats = alloc_percpu(struct bsync_stats);
	if (!st->stats)
		goto bad;
	st->alloc = bsync_bitmap_create(NULL, bt->alloc_shift, st->dev_sectors, true);
	if (IS_ERR(st->alloc)) {
		int r = PTR_ERR(st->alloc);

		st->alloc = NULL;
		state_free(st);
		return ERR_PTR(r);
	}
	/* Unknown origin content: every cluster may hold data. */
	if (!bt->zeroed)
		bsync_bitmap_mark_all(st->alloc);
	if (bt->meta) {
		dev_t dev = bt->meta->bdev->bd_dev;
		char *error;
		int r = bsync_persist_create(st, dev, bsync_dev_name(bt), &error);

		if (r) {
			bt->ti->error = error;
			state_free(st);
			return ERR_PTR(r);
		}
	}
	return st;
bad:
	state_free(st);
	return ERR_PTR(-ENOMEM);
}

/* Find the state of a reloaded device, or make a new one. */
static int state_get(struct bsync_target *bt)
{
	struct mapped_device *md = dm_table_get_md(bt->ti->table);
	struct bsync_state *st;
	int r = 0;

	mutex_lock(&bsync_states_lock);
	list_for_each_entry(st, &bsync_states, node) {
		if (st->md != md)
			continue;
		if (st->origin_dev != bt->origin->bdev->bd_dev) {
			bt->ti->error = "Origin differs from the loaded table's";
			r = -EINVAL;
		} else if (BIT(bt->alloc_shift) != BIT(st->alloc->shift)) {
			bt->ti->error = "alloc_granularity cannot change on reload";
			r = -EINVAL;
		} else if ((bt->meta ? bt->meta->bdev->bd_dev : 0) !=
			   (st->persist ? bsync_persist_dev(st) : 0)) {
			bt->ti->error = "Metadata device cannot change on reload";
			r = -EINVAL;
		} else {
			refcount_inc(&st->ref);
			bt->st = st;
		}
		goto out;
	}
	st = state_create(bt);
	if (IS_ERR(st)) {
		r = PTR_ERR(st);
		goto out;
	}
	list_add(&st->node, &bsync_states);
	bt->st = st;
out:
	mutex_unlock(&bsync_states_lock);
	return r;
}

static void state_put(struct bsync_state *st)
{
	mutex_lock(&bsync_states_lock);
	if (refcount_dec_and_test(&st->ref)) {
		list_del(&st->node);
		state_free(st);
	}
	mutex_unlock(&bsync_states_lock);
}

/* The active session of the bsync device @dev, with a reference. */
struct bsync_session *bsync_session_lookup(dev_t dev, char **error)
{
	struct bsync_session *s = ERR_PTR(-ENODEV);
	struct bsync_state *st;

	*error = "Not a bsync device";
	mutex_lock(&bsync_states_lock);
	list_for_each_entry(st, &bsync_states, node) {
		if (disk_devt(dm_disk(st->md)) != dev)
			continue;
		mutex_lock(&st->lock);
		if (st->session && READ_ONCE(st->session->state) == BSYNC_SESSION_ACTIVE) {
			s = st->session;
			bsync_session_get(s);
		} else {
			*error = "The bsync device has no active backup session";
			s = ERR_PTR(-ENXIO);
		}
		mutex_unlock(&st->lock);
		break;
	}
	mutex_unlock(&bsync_states_lock);
	return s;
}

/*
 * Bio path
 */

static bool bio_writes_data(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_WRITE:
	case REQ_OP_WRITE_ZEROES:
	case REQ_OP_DISCARD:
		return bio_sectors(bio) != 0;
	default:
		return false;
	}
}

static void track_write(struct bsync_state *st, sector_t sector, sector_t nr)
{
	struct bsync_bitmap *bm, *rec;

	list_for_each_entry(bm, &st->bitmaps, list) {
		rec = bm->successor ?: bm;
		if (rec->recording)
			bsync_bitmap_mark(rec, sector, nr);
	}
	bsync_bitmap_mark(st->alloc, sector, nr);
	this_cpu_inc(st->stats->writes);
}

/* Copy-before-write holds a write that touches clusters a backup needs. */
static int map_session(struct bsync_target *bt, struct bio *bio)
{
	/* Stable: sessions start and end with writes quiesced. */
	struct bsync_session *s = bt->st->session;

	if (likely(!s) || !bsync_cbw_needed(s, bio->bi_iter.bi_sector, bio_sectors(bio)))
		return DM_MAPIO_REMAPPED;
	if (bio->bi_opf & REQ_NOWAIT) {
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	bsync_cbw_hold(s, bio);
	return DM_MAPIO_SUBMITTED;
}

static int bsync_map_write(struct bsync_target *bt, struct bio *bio)
{
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));
	struct bsync_state *st = bt->st;
	sector_t sector;

	while (!bsync_gate_enter(st)) {
		if (bio->bi_opf & REQ_NOWAIT) {
			bio_wouldblock_error(bio);
			return DM_MAPIO_SUBMITTED;
		}
		if (bsync_gate_defer(st, bio))
			return DM_MAPIO_SUBMITTED;
	}
	pb->gated = true;
	sector = dm_target_offset(bt->ti, bio->bi_iter.bi_sector);
	track_write(st, sector, bio_sectors(bio));
	bio->bi_iter.bi_sector = sector;
	bio_set_dev(bio, bt->origin->bdev);

	/* Stable: persistent bitmaps come and go with writes quiesced. */
	if (unlikely(st->nr_persistent) &&
	    bsync_persist_needed(st, sector, bio_sectors(bio))) {
		if (bio->bi_opf & REQ_NOWAIT) {
			bio_wouldblock_error(bio);
			return DM_MAPIO_SUBMITTED;
		}
		bsync_persist_defer(st, bio);
		return DM_MAPIO_SUBMITTED;
	}
	return map_session(bt, bio);
}

/* A write whose clusters are durable in the persistent bitmaps goes on. */
static void persist_issue(struct bio *bio)
{
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));

	if (map_session(pb->bt, bio) == DM_MAPIO_REMAPPED)
		dm_submit_bio_remap(bio, NULL);
}

/* A write the write gate held goes on. */
static void gate_reissue(struct bio *bio)
{
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));

	if (bsync_map_write(pb->bt, bio) == DM_MAPIO_REMAPPED)
		dm_submit_bio_remap(bio, NULL);
}

static int bsync_map(struct dm_target *ti, struct bio *bio)
{
	struct bsync_target *bt = ti->private;
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));

	pb->gated = false;
	pb->bt = bt;
	if (bio_writes_data(bio))
		return bsync_map_write(bt, bio);

	bio_set_dev(bio, bt->origin->bdev);
	if (bio_sectors(bio))
		bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

static int bsync_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct bsync_target *bt = ti->private;
	struct bsync_bio *pb = dm_per_bio_data(bio, sizeof(struct bsync_bio));

	if (pb->gated)
		bsync_gate_leave(bt->st);
	return DM_ENDIO_DONE;
}

/*
 * Constructor
 */

/*
 * <origin dev> [<#feature args> [<feature arg>]*]
 *
 * feature args:
 *   zeroed                   the origin reads as zeroes: nothing is
 *                            allocated until written
 *   alloc_granularity <bytes> allocation tracking granularity (64 KiB)
 *   metadata <dev>           keeps persistent bitmaps on <dev>
 */
static int parse_features(struct dm_arg_set *as, struct bsync_target *bt)
{
	static const struct dm_arg _args[] = {
		{0, 5, "Invalid number of feature args"},
	};
	struct dm_target *ti = bt->ti;
	unsigned int argc;
	const char *arg;
	dev_t self;
	int r;

	if (!as->argc)
		return 0;
	r = dm_read_arg_group(_args, as, &argc, &ti->error);
	if (r)
		return r;
	while (argc--) {
		arg = dm_shift_arg(as);
		if (!strcasecmp(arg, "zeroed")) {
			bt->zeroed = true;
		} else if (!strcasecmp(arg, "alloc_granularity")) {
			if (!argc--) {
				ti->error = "alloc_granularity needs a value";
				return -EINVAL;
			}
			r = bsync_parse_granularity(dm_shift_arg(as), &bt->alloc_shift);
			if (r) {
				ti->error = "Invalid alloc_granularity";
				return r;
			}
		} else if (!strcasecmp(arg, "metadata") && !bt->meta) {
			if (!argc--) {
				ti->error = "metadata needs a device";
				return -EINVAL;
			}
			r = dm_get_device(ti, dm_shift_arg(as), dm_table_get_mode(ti->table),
					  &bt->meta);
			if (r) {
				ti->error = "Cannot open metadata device";
				return r;
			}
			self = disk_devt(dm_disk(dm_table_get_md(ti->table)));
			if (bt->meta->bdev == bt->origin->bdev || bt->meta->bdev->bd_dev == self) {
				ti->error = "Metadata device cannot be the origin or this device";
				return -EINVAL;
			}
		} else {
			ti->error = "Unrecognised feature argument";
			return -EINVAL;
		}
	}
	if (as->argc) {
		ti->error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

static int bsync_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	struct bsync_target *bt;
	int r;

	if (argc < 1) {
		ti->error = "Missing origin device";
		return -EINVAL;
	}
	bt = kzalloc(sizeof(*bt), GFP_KERNEL);
	if (!bt) {
		ti->error = "Cannot allocate target";
		return -ENOMEM;
	}
	bt->ti = ti;
	bt->alloc_shift = BSYNC_DEFAULT_GRAN_SHIFT;

	r = dm_get_device(ti, dm_shift_arg(&as), dm_table_get_mode(ti->table), &bt->origin);
	if (r) {
		ti->error = "Cannot open origin device";
		goto bad_free;
	}
	if (ti->len > bdev_nr_sectors(bt->origin->bdev)) {
		ti->error = "Device is larger than its origin";
		r = -EINVAL;
		goto bad_put;
	}
	r = parse_features(&as, bt);
	if (r)
		goto bad_put;
	r = state_get(bt);
	if (r)
		goto bad_put;
	/*
	 * Refuse a resize during a session here: refused in preresume, DM
	 * has swapped the table already and the device would stay suspended.
	 */
	mutex_lock(&bt->st->lock);
	if (bt->st->session && ti->len != bt->st->dev_sectors) {
		ti->error = "Cannot resize during a backup session";
		r = -EBUSY;
	}
	mutex_unlock(&bt->st->lock);
	if (r)
		goto bad_state;

	ti->private = bt;
	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->per_io_data_size = sizeof(struct bsync_bio);
	return 0;

bad_state:
	state_put(bt->st);
bad_put:
	if (bt->meta)
		dm_put_device(ti, bt->meta);
	dm_put_device(ti, bt->origin);
bad_free:
	kfree(bt);
	return r;
}

static void bsync_dtr(struct dm_target *ti)
{
	struct bsync_target *bt = ti->private;

	state_put(bt->st);
	if (bt->meta)
		dm_put_device(ti, bt->meta);
	dm_put_device(ti, bt->origin);
	kfree(bt);
}

/*
 * Suspend, resume, limits
 */

/*
 * DM's suspend waits for the writes a held gate holds, and locks the file
 * system with writes first: the hold ends here, its token then reports
 * that the instant broke.
 */
static void bsync_presuspend(struct dm_target *ti)
{
	struct bsync_state *st = ((struct bsync_target *)ti->private)->st;

	mutex_lock(&st->lock);
	bsync_gate_drop(st);
	mutex_unlock(&st->lock);
}

/* A reload with a new length resizes the bitmaps; the device is suspended. */
static int bsync_preresume(struct dm_target *ti)
{
	struct bsync_target *bt = ti->private;
	struct bsync_state *st = bt->st;
	struct bsync_bitmap *bm;
	int r = 0;

	mutex_lock(&st->lock);
	if (st->dev_sectors == ti->len)
		goto out;
	/* The constructor refused this; a session started since the load. */
	if (st->session) {
		DMERR("%s: cannot resize during a backup session", bsync_dev_name(bt));
		r = -EBUSY;
		goto out;
	}
	r = bsync_quiesce_writes(st);
	if (r)
		goto out;
	list_for_each_entry(bm, &st->bitmaps, list) {
		r = bsync_bitmap_resize(bm, ti->len);
		if (!r && bm->successor)
			r = bsync_bitmap_resize(bm->successor, ti->len);
		if (!r && bm->remaining)
			r = bsync_bitmap_resize(bm->remaining, ti->len);
		if (!r && bm->durable)
			r = bsync_bitmap_resize(bm->durable, ti->len);
		if (r)
			break;
	}
	if (!r)
		r = bsync_bitmap_resize(st->alloc, ti->len);
	if (!r) {
		/*
		 * Grown space of an origin of unknown content may hold data
		 * no bitmap saw written: dirty, as when grown offline.
		 */
		if (!bt->zeroed && ti->len > st->dev_sectors) {
			sector_t grown = ti->len - st->dev_sectors;

			bsync_bitmap_mark(st->alloc, st->dev_sectors, grown);
			list_for_each_entry(bm, &st->bitmaps, list)
				bsync_bitmap_mark(bm->successor ?: bm, st->dev_sectors, grown);
		}
		st->dev_sectors = ti->len;
		/* A commit failure leaves the bitmaps inconsistent, not the resize undone. */
		if (st->nr_persistent)
			bsync_persist_commit(st, ti);
	} else {
		DMERR("%s: cannot resize bitmaps to %llu sectors: %d",
		      bsync_dev_name(bt), (unsigned long long)ti->len, r);
	}
	bsync_resume_writes(st);
out:
	mutex_unlock(&st->lock);
	return r;
}

static int bsync_iterate_devices(struct dm_target *ti, iterate_devices_callout_fn fn,
				 void *data)
{
	struct bsync_target *bt = ti->private;

	return fn(ti, bt->origin, 0, ti->len, data);
}

static struct target_type bsync_target = {
	.name = "bsync",
	.version = {1, 3, 0},
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = bsync_ctr,
	.dtr = bsync_dtr,
	.map = bsync_map,
	.end_io = bsync_end_io,
	.presuspend = bsync_presuspend,
	.preresume = bsync_preresume,
	.status = bsync_status,
	.message = bsync_message,
	.iterate_devices = bsync_iterate_devices,
};

int bsync_target_register(void)
{
	return dm_register_target(&bsync_target);
}

void bsync_target_unregister(void)
{
	dm_unregister_target(&bsync_target);
}
