// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-snap: the read-only, point-in-time view of a bsync device during a
 * backup session.
 *
 *   bsync-snap <bsync device>
 *
 * Reads are routed by the session (dm-bsync-view.c), a run of clusters at a
 * time: to the origin while the clusters are still needed, to their store
 * slots once copy-before-write preserved them. Anything else fails with EIO
 * rather than return data from after the instant the session started.
 */
#include <linux/blkdev.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "dm-bsync.h"

struct bsync_snap {
	struct bsync_session *s;
	char dev_name[32];
};

static int snap_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct bsync_snap *snap;
	dev_t dev;
	int r;

	if (argc != 1) {
		ti->error = "Expected one argument: the bsync device";
		return -EINVAL;
	}
	if (bsync_table_writable(ti->table)) {
		ti->error = "bsync-snap is read-only: load the table with --readonly";
		return -EROFS;
	}
	/*
	 * Not dm_get_device(): that would claim the bsync device and so fail
	 * while, say, a filesystem has it mounted. The session holds what it
	 * reads from.
	 */
	r = lookup_bdev(argv[0], &dev);
	if (r) {
		ti->error = "Cannot find the bsync device";
		return r;
	}
	snap = kzalloc(sizeof(*snap), GFP_KERNEL);
	if (!snap) {
		ti->error = "Cannot allocate the view";
		return -ENOMEM;
	}
	snap->s = bsync_session_lookup(dev, &ti->error);
	if (IS_ERR(snap->s)) {
		r = PTR_ERR(snap->s);
		goto bad;
	}
	if (ti->begin + ti->len > snap->s->dev_sectors) {
		ti->error = "The view is larger than the bsync device";
		r = -EINVAL;
		goto bad_put;
	}
	strscpy(snap->dev_name, argv[0], sizeof(snap->dev_name));
	ti->per_io_data_size = sizeof(struct bsync_view_pin);
	ti->private = snap;
	return 0;

bad_put:
	bsync_session_put(snap->s);
bad:
	kfree(snap);
	return r;
}

static void snap_dtr(struct dm_target *ti)
{
	struct bsync_snap *snap = ti->private;

	bsync_session_put(snap->s);
	kfree(snap);
}

static int snap_map(struct dm_target *ti, struct bio *bio)
{
	struct bsync_snap *snap = ti->private;
	struct bsync_view_pin *pin = dm_per_bio_data(bio, sizeof(*pin));

	pin->count = 0;
	if (bio_op(bio) != REQ_OP_READ)
		return DM_MAPIO_KILL;
	bio->bi_iter.bi_sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	if (bsync_snap_map_read(snap->s, bio, pin))
		return DM_MAPIO_KILL;
	return DM_MAPIO_REMAPPED;
}

static int snap_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct bsync_snap *snap = ti->private;

	bsync_snap_read_done(snap->s, dm_per_bio_data(bio, sizeof(struct bsync_view_pin)));
	return DM_ENDIO_DONE;
}

/* INFO: <session state> <cluster bytes>; TABLE: <bsync device> */
static void snap_status(struct dm_target *ti, status_type_t type, unsigned int status_flags,
			char *result, unsigned int maxlen)
{
	struct bsync_snap *snap = ti->private;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%s %llu", bsync_session_state_name(snap->s),
		       (u64)SECTOR_SIZE << snap->s->shift);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", snap->dev_name);
		break;
	case STATUSTYPE_IMA:
		DMEMIT("target_name=%s,target_version=%u.%u.%u,bsync_device=%s;",
		       ti->type->name, ti->type->version[0], ti->type->version[1],
		       ti->type->version[2], snap->dev_name);
		break;
	}
}

static void snap_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct bsync_snap *snap = ti->private;
	unsigned int lbs = max(bdev_logical_block_size(snap->s->origin.bdev),
			       bdev_logical_block_size(snap->s->store.bdev));

	limits->logical_block_size = max(limits->logical_block_size, lbs);
	limits->physical_block_size = max(limits->physical_block_size, lbs);
	limits->io_min = max(limits->io_min, lbs);
}

static struct target_type bsync_snap_target = {
	.name = "bsync-snap",
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = snap_ctr,
	.dtr = snap_dtr,
	.map = snap_map,
	.end_io = snap_end_io,
	.status = snap_status,
	.io_hints = snap_io_hints,
};

int bsync_snap_register(void)
{
	return dm_register_target(&bsync_snap_target);
}

void bsync_snap_unregister(void)
{
	dm_unregister_target(&bsync_snap_target);
}
