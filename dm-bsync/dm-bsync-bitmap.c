// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty bitmaps of the bsync target.
 *
 * A flat bit array per bitmap: marking a write is a test and, the first
 * time only, an atomic OR on one word, so a bitmap costs the bio path no
 * locks and nothing in the common already-dirty case.
 */
#include <linux/bitmap.h>
#include <linux/bitops.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-bsync-bitmap.h"

size_t bsync_bitmap_bytes(unsigned long nr_bits)
{
	return BITS_TO_LONGS(nr_bits) * sizeof(unsigned long);
}

struct bsync_bitmap *bsync_bitmap_create(const char *name, unsigned int shift,
					 sector_t dev_sectors, bool recording)
{
	u64 nr = ((u64)dev_sectors + (1ULL << shift) - 1) >> shift;
	struct bsync_bitmap *bm;

	if (nr > BSYNC_MAX_BITS)
		return ERR_PTR(-EFBIG);

	bm = kzalloc(sizeof(*bm), GFP_KERNEL);
	if (!bm)
		return ERR_PTR(-ENOMEM);
	bm->bits = kvzalloc(bsync_bitmap_bytes(max_t(u64, nr, 1)), GFP_KERNEL);
	if (!bm->bits) {
		kfree(bm);
		return ERR_PTR(-ENOMEM);
	}
	strscpy(bm->name, name ? name : "", sizeof(bm->name));
	INIT_LIST_HEAD(&bm->list);
	bm->shift = shift;
	bm->nr_bits = nr;
	bm->dev_sectors = dev_sectors;
	bm->recording = recording;
	return bm;
}

void bsync_bitmap_destroy(struct bsync_bitmap *bm)
{
	if (!bm)
		return;
	bsync_bitmap_destroy(bm->successor);
	bsync_bitmap_destroy(bm->remaining);
	bsync_bitmap_destroy(bm->durable);
	kvfree(bm->bits);
	kfree(bm);
}

/* Grow or shrink with the device; new clusters start clean. Writes quiesced. */
int bsync_bitmap_resize(struct bsync_bitmap *bm, sector_t dev_sectors)
{
	u64 nr = ((u64)dev_sectors + (1ULL << bm->shift) - 1) >> bm->shift;
	unsigned long *bits;

	if (nr > BSYNC_MAX_BITS)
		return -EFBIG;
	if (nr == bm->nr_bits) {
		bm->dev_sectors = dev_sectors;
		return 0;
	}
	bits = kvzalloc(bsync_bitmap_bytes(max_t(u64, nr, 1)), GFP_KERNEL);
	if (!bits)
		return -ENOMEM;
	bitmap_copy(bits, bm->bits, min_t(u64, nr, bm->nr_bits));
	kvfree(bm->bits);
	bm->bits = bits;
	bm->nr_bits = nr;
	bm->dev_sectors = dev_sectors;
	return 0;
}

/*
 * Set bits [first, last] with atomic word updates, skipping words that are
 * already fully set so that re-dirtying a cluster writes no cache line.
 */
static void set_range_atomic(unsigned long *bits, unsigned long first,
			     unsigned long last)
{
	unsigned long w = BIT_WORD(first), lw = BIT_WORD(last);
	unsigned long mask = BITMAP_FIRST_WORD_MASK(first);

	for (; w <= lw; w++, mask = ~0UL) {
		if (w == lw)
			mask &= BITMAP_LAST_WORD_MASK(last + 1);
		if ((READ_ONCE(bits[w]) & mask) != mask)
			set_mask_bits(&bits[w], 0UL, mask);
	}
}

/* Mark every cluster that [sector, sector + nr_sectors) touches. Any context. */
void bsync_bitmap_mark(struct bsync_bitmap *bm, sector_t sector, sector_t nr_sectors)
{
	unsigned long first, last;

	if (!nr_sectors)
		return;
	first = sector >> bm->shift;
	last = (sector + nr_sectors - 1) >> bm->shift;
	if (first >= bm->nr_bits)
		return;
	if (last >= bm->nr_bits)
		last = bm->nr_bits - 1;
	set_range_atomic(bm->bits, first, last);
}

void bsync_bitmap_mark_all(struct bsync_bitmap *bm)
{
	bitmap_fill(bm->bits, bm->nr_bits);
}

/*
 * Clear the clusters that [sector, sector + nr_sectors) covers completely;
 * a range that reaches the device end covers its last, partial cluster.
 * Caller serialises against every other user of @bm.
 */
void bsync_bitmap_unmark_covered(struct bsync_bitmap *bm, sector_t sector,
				 sector_t nr_sectors)
{
	sector_t gran = 1ULL << bm->shift;
	sector_t end_sector = sector + nr_sectors;
	unsigned long first = (sector + gran - 1) >> bm->shift;
	unsigned long end = end_sector >> bm->shift;

	if (end_sector >= bm->dev_sectors)
		end = bm->nr_bits;
	if (first < end)
		bitmap_clear(bm->bits, first, end - first);
}

void bsync_bitmap_clear(struct bsync_bitmap *bm)
{
	bitmap_zero(bm->bits, bm->nr_bits);
}

/*
 * dst |= src. Across granularities every dst cluster that a dirty src
 * cluster overlaps becomes dirty. Writes to dst quiesced.
 */
void bsync_bitmap_merge(struct bsync_bitmap *dst, const struct bsync_bitmap *src)
{
	unsigned long b = 0, e;

	if (dst->shift == src->shift) {
		bitmap_or(dst->bits, dst->bits, src->bits,
			  min(dst->nr_bits, src->nr_bits));
		return;
	}
	while ((b = find_next_bit(src->bits, src->nr_bits, b)) < src->nr_bits) {
		e = find_next_zero_bit(src->bits, src->nr_bits, b);
		bsync_bitmap_mark(dst, (sector_t)b << src->shift,
				  (sector_t)(e - b) << src->shift);
		b = e;
	}
}

/* dst takes over src's bits and recording state; src is destroyed. */
void bsync_bitmap_move(struct bsync_bitmap *dst, struct bsync_bitmap *src)
{
	swap(dst->bits, src->bits);
	swap(dst->nr_bits, src->nr_bits);
	swap(dst->dev_sectors, src->dev_sectors);
	dst->recording = src->recording;
	bsync_bitmap_destroy(src);
}

/* Is every cluster [sector, sector + nr_sectors) touches dirty? Any context. */
bool bsync_bitmap_test_range(const struct bsync_bitmap *bm, sector_t sector,
			     sector_t nr_sectors)
{
	unsigned long first = sector >> bm->shift;
	unsigned long last = (sector + nr_sectors - 1) >> bm->shift;

	if (!nr_sectors || first >= bm->nr_bits)
		return true;
	if (last >= bm->nr_bits)
		last = bm->nr_bits - 1;
	return find_next_zero_bit(bm->bits, last + 1, first) > last;
}

unsigned long bsync_bitmap_weight(const struct bsync_bitmap *bm)
{
	return bitmap_weight(bm->bits, bm->nr_bits);
}

/*
 * The first dirty run at or after @from, in sectors, clipped to the device.
 * Returns false when there is none.
 */
bool bsync_bitmap_next_extent(const struct bsync_bitmap *bm, sector_t from,
			      sector_t *start, sector_t *len)
{
	unsigned long b, e;
	sector_t s, end;

	if (from >= bm->dev_sectors)
		return false;
	b = find_next_bit(bm->bits, bm->nr_bits, from >> bm->shift);
	if (b >= bm->nr_bits)
		return false;
	e = find_next_zero_bit(bm->bits, bm->nr_bits, b);
	s = max_t(sector_t, (sector_t)b << bm->shift, from);
	end = min_t(sector_t, (sector_t)e << bm->shift, bm->dev_sectors);
	if (s >= end)
		return false;
	*start = s;
	*len = end - s;
	return true;
}
