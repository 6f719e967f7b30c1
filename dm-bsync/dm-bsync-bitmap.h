/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Dirty bitmaps of the bsync target: one bit per cluster of a device,
 * the cluster ("granularity") a power of two of at least one sector.
 *
 * Marking is lock-free and may run concurrently with itself from any
 * context. Everything else is called with the owning device's control
 * mutex held and, when it rewrites bits, with writes quiesced.
 */
#ifndef DM_BSYNC_BITMAP_H
#define DM_BSYNC_BITMAP_H

#include <linux/bits.h>
#include <linux/list.h>
#include <linux/types.h>

#define BSYNC_NAME_MAX		127
#define BSYNC_GRAN_MIN_SHIFT	0	/* 512 bytes, in sectors */
#define BSYNC_GRAN_MAX_SHIFT	21	/* 1 GiB, in sectors */
#define BSYNC_MAX_BITS		BIT(31)

struct bsync_bitmap {
	struct list_head list;		/* bsync_state.bitmaps */
	char name[BSYNC_NAME_MAX + 1];	/* empty for internal bitmaps */
	unsigned int shift;		/* log2(granularity / 512) */
	unsigned long nr_bits;
	sector_t dev_sectors;		/* the last cluster may be partial */
	unsigned long *bits;
	bool recording;
	/*
	 * Set while frozen for a backup: writes are recorded in @successor
	 * and this bitmap keeps its bits as of the freeze; @remaining is the
	 * part of the job's copy set not yet copied (for sync rule "always").
	 */
	struct bsync_bitmap *successor;
	struct bsync_bitmap *remaining;

	/*
	 * Persistent bitmaps (dm-bsync-persist.c): @durable holds the bits
	 * the metadata device is known to have (this bitmap's and its
	 * successor's); @inconsistent, that the metadata may miss writes.
	 */
	bool persistent;
	bool inconsistent;
	struct bsync_bitmap *durable;
};

static inline u64 bsync_bitmap_granularity(const struct bsync_bitmap *bm)
{
	return (u64)SECTOR_SIZE << bm->shift;
}

static inline bool bsync_bitmap_busy(const struct bsync_bitmap *bm)
{
	return bm->successor;
}

struct bsync_bitmap *bsync_bitmap_create(const char *name, unsigned int shift,
					 sector_t dev_sectors, bool recording);
void bsync_bitmap_destroy(struct bsync_bitmap *bm);
int bsync_bitmap_resize(struct bsync_bitmap *bm, sector_t dev_sectors);

void bsync_bitmap_mark(struct bsync_bitmap *bm, sector_t sector, sector_t nr_sectors);
void bsync_bitmap_mark_all(struct bsync_bitmap *bm);
void bsync_bitmap_unmark_covered(struct bsync_bitmap *bm, sector_t sector,
				 sector_t nr_sectors);
void bsync_bitmap_clear(struct bsync_bitmap *bm);
void bsync_bitmap_merge(struct bsync_bitmap *dst, const struct bsync_bitmap *src);
void bsync_bitmap_move(struct bsync_bitmap *dst, struct bsync_bitmap *src);

bool bsync_bitmap_test_range(const struct bsync_bitmap *bm, sector_t sector,
			     sector_t nr_sectors);
unsigned long bsync_bitmap_weight(const struct bsync_bitmap *bm);
bool bsync_bitmap_next_extent(const struct bsync_bitmap *bm, sector_t from,
			      sector_t *start, sector_t *len);
size_t bsync_bitmap_bytes(unsigned long nr_bits);

#endif
