/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The metadata device of the bsync target: persistent bitmaps on disk
 * (format in dm-bsync-format.h). This layer knows blocks, checksums and
 * the commit protocol; when to commit is dm-bsync-persist.c's business.
 *
 * Callers serialise every call on one struct bsync_md.
 */
#ifndef DM_BSYNC_METADATA_H
#define DM_BSYNC_METADATA_H

#include <linux/list.h>
#include <linux/types.h>

#include "dm-bsync-format.h"

struct bsync_md;

struct bsync_md_stats {
	u64 generation;
	u64 log_used, log_blocks;	/* blocks */
	u64 commits;
	u64 log_writes;			/* log blocks written */
	u64 bytes_written;		/* everything written to the device */
};

/*
 * Open the metadata device @dev and read its superblocks; format it if
 * both are all zeroes. Fails, with *error saying why, on anything that is
 * not our metadata or that cannot be trusted at all.
 */
struct bsync_md *bsync_md_open(dev_t dev, const char *dev_name, char **error);
void bsync_md_close(struct bsync_md *md);

/*
 * Create the persistent bitmaps the metadata holds, for a device of
 * @dev_sectors, with the log replayed, onto @bitmaps (their durable copies
 * equal their bits). A bitmap whose bits fail their checksum is loaded
 * inconsistent. Returns the number loaded, or -errno.
 */
int bsync_md_load(struct bsync_md *md, sector_t dev_sectors, struct list_head *bitmaps,
		  char **error);

/*
 * Write the durable bits of the persistent bitmaps on @bitmaps as the next
 * generation; @clean marks a final commit. -ENOSPC: they do not fit.
 */
int bsync_md_commit(struct bsync_md *md, struct list_head *bitmaps, sector_t dev_sectors,
		    bool clean);

/* Room for a bitmap of @nr_bits more, beside those on @bitmaps? */
int bsync_md_check_room(struct bsync_md *md, struct list_head *bitmaps,
			unsigned long nr_bits);

/*
 * Append write records durably (FUA, read back). -ENOSPC: the log is full
 * and a commit must come first.
 */
int bsync_md_log(struct bsync_md *md, const struct bsync_md_log_record *recs,
		 unsigned int nr);

void bsync_md_get_stats(struct bsync_md *md, struct bsync_md_stats *stats);
dev_t bsync_md_dev(struct bsync_md *md);

#endif
