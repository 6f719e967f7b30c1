/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels dm-bsync supports (Linux 6.1 and 6.12),
 * kept in one place.
 */
#ifndef DM_BSYNC_COMPAT_H
#define DM_BSYNC_COMPAT_H

#include <linux/blkdev.h>
#include <linux/file.h>
#include <linux/fs.h>

/*
 * Opening block devices outside a table (the backup store, and the origin
 * for a session that may outlive the table): 6.9 replaced block_device
 * handles with files (Kbuild detects bdev_file_open_by_path()); 6.5-6.8
 * had bdev_handle, which we do not support.
 */
#ifdef BSYNC_HAVE_BDEV_FILE

struct bsync_bdev {
	struct file *file;
	struct block_device *bdev;
};

static inline int bsync_bdev_open_path(struct bsync_bdev *b, const char *path, void *holder)
{
	struct file *f = bdev_file_open_by_path(path, BLK_OPEN_READ | BLK_OPEN_WRITE,
						holder, NULL);

	if (IS_ERR(f))
		return PTR_ERR(f);
	b->file = f;
	b->bdev = file_bdev(f);
	return 0;
}

static inline int bsync_bdev_open_dev(struct bsync_bdev *b, dev_t dev)
{
	struct file *f = bdev_file_open_by_dev(dev, BLK_OPEN_READ | BLK_OPEN_WRITE, NULL, NULL);

	if (IS_ERR(f))
		return PTR_ERR(f);
	b->file = f;
	b->bdev = file_bdev(f);
	return 0;
}

static inline void bsync_bdev_close(struct bsync_bdev *b)
{
	if (b->file)
		bdev_fput(b->file);
	b->file = NULL;
	b->bdev = NULL;
}

#define bsync_table_writable(t)	(dm_table_get_mode(t) & BLK_OPEN_WRITE)

#else

struct bsync_bdev {
	struct block_device *bdev;
	fmode_t mode;
};

static inline int bsync_bdev_open_path(struct bsync_bdev *b, const char *path, void *holder)
{
	fmode_t mode = FMODE_READ | FMODE_WRITE | (holder ? FMODE_EXCL : 0);
	struct block_device *bdev = blkdev_get_by_path(path, mode, holder);

	if (IS_ERR(bdev))
		return PTR_ERR(bdev);
	b->bdev = bdev;
	b->mode = mode;
	return 0;
}

static inline int bsync_bdev_open_dev(struct bsync_bdev *b, dev_t dev)
{
	struct block_device *bdev = blkdev_get_by_dev(dev, FMODE_READ | FMODE_WRITE, NULL);

	if (IS_ERR(bdev))
		return PTR_ERR(bdev);
	b->bdev = bdev;
	b->mode = FMODE_READ | FMODE_WRITE;
	return 0;
}

static inline void bsync_bdev_close(struct bsync_bdev *b)
{
	if (b->bdev)
		blkdev_put(b->bdev, b->mode);
	b->bdev = NULL;
}

#define bsync_table_writable(t)	(dm_table_get_mode(t) & FMODE_WRITE)

#endif

#endif
