// SPDX-License-Identifier: GPL-2.0
/*
 * Metadata device of the bsync target: superblocks, bitmap areas and the
 * write log (format and commit protocol in dm-bsync-format.h).
 *
 * Every I/O is bounded in time and every write that makes bits durable is
 * read back: a metadata device that hangs or silently drops writes must
 * turn into inconsistent bitmaps, never into guest writes blocked forever
 * or into bitmaps that look whole and are not.
 *
 * Buffers the size of a bitmap may be large (32 MiB for 1 TiB at 4 KiB),
 * so they are kvmalloc()ed with GFP_KERNEL: on the write path the worker
 * runs in a memalloc_noio scope, which makes that safe and keeps vmalloc
 * available (kvmalloc() with GFP_NOIO would try kmalloc() only).
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/device-mapper.h>
#include <linux/mm.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "dm-bsync-bitmap.h"
#include "dm-bsync-compat.h"
#include "dm-bsync-metadata.h"

#define DM_MSG_PREFIX "bsync"

/* A metadata I/O that takes longer fails: guest writes may be waiting. */
#define MD_IO_TIMEOUT		(30 * HZ)
#define BLOCK_SECTORS		(BSYNC_MD_BLOCK_SIZE >> SECTOR_SHIFT)

struct bsync_md {
	struct bsync_bdev dev;
	char name[32];			/* of the bsync device, for messages */
	u64 dev_blocks;			/* size of the metadata device */
	struct bsync_md_superblock *sb;	/* the current superblock */
	u64 next_seq;			/* next log block */
	struct bsync_md_stats stats;
};

static u32 md_csum(const void *p, size_t len)
{
	BUILD_BUG_ON(sizeof(struct bsync_md_bitmap) != 160);
	BUILD_BUG_ON(sizeof(struct bsync_md_superblock) != 136 + 160 * BSYNC_MD_MAX_BITMAPS);
	BUILD_BUG_ON(sizeof(struct bsync_md_superblock) > BSYNC_MD_BLOCK_SIZE);
	BUILD_BUG_ON(sizeof(struct bsync_md_log_header) != 32);
	BUILD_BUG_ON(sizeof(struct bsync_md_log_record) != 16);

	return ~crc32c(~0U, p, len);
}

/* A superblock's checksum covers all but its first field. */
static u32 block_csum(const void *block)
{
	return md_csum((const u8 *)block + sizeof(__le32), BSYNC_MD_BLOCK_SIZE - sizeof(__le32));
}

/* A log block's, its header after the checksum and its records: the rest is unused. */
static size_t log_used(u32 nr_records)
{
	return sizeof(struct bsync_md_log_header) + nr_records * sizeof(struct bsync_md_log_record);
}

static u32 log_csum(const struct bsync_md_log_header *h, u32 nr_records)
{
	return md_csum((const u8 *)h + sizeof(__le32), log_used(nr_records) - sizeof(__le32));
}

/*
 * Timed block I/O on a private buffer: on a timeout the caller gives up
 * and the buffer is freed by whichever of the two finishes last.
 */
struct md_io {
	refcount_t ref;
	atomic_t pending;		/* bios, plus one while submitting */
	struct completion done;
	blk_status_t status;
	void *buf;
};

static void md_io_put(struct md_io *io)
{
	if (refcount_dec_and_test(&io->ref)) {
		kvfree(io->buf);
		kfree(io);
	}
}

static void md_io_dec(struct md_io *io)
{
	if (atomic_dec_and_test(&io->pending)) {
		complete(&io->done);
		md_io_put(io);
	}
}

static void md_io_endio(struct bio *bio)
{
	struct md_io *io = bio->bi_private;

	if (bio->bi_status)
		WRITE_ONCE(io->status, bio->bi_status);
	bio_put(bio);
	md_io_dec(io);
}

static int md_rw(struct bsync_md *md, blk_opf_t opf, u64 block, void *data, u64 nr_blocks)
{
	size_t len = nr_blocks << BSYNC_MD_BLOCK_SHIFT, done = 0;
	struct md_io *io;
	struct bio *bio;
	int r;

	if (block + nr_blocks > md->dev_blocks)
		return -ENOSPC;
	io = kzalloc(sizeof(*io), GFP_NOIO);
	if (!io)
		return -ENOMEM;
	io->buf = kvmalloc(len, GFP_KERNEL);
	if (!io->buf) {
		kfree(io);
		return -ENOMEM;
	}
	if (op_is_write(opf))
		memcpy(io->buf, data, len);
	refcount_set(&io->ref, 2);
	atomic_set(&io->pending, 1);
	init_completion(&io->done);

	while (done < len) {
		unsigned int vecs = min_t(size_t, DIV_ROUND_UP(len - done, PAGE_SIZE),
					  BIO_MAX_VECS);

		bio = bio_alloc(md->dev.bdev, vecs, opf, GFP_NOIO);
		bio->bi_iter.bi_sector = block * BLOCK_SECTORS + (done >> SECTOR_SHIFT);
		bio->bi_end_io = md_io_endio;
		bio->bi_private = io;
		while (done < len) {
			void *p = io->buf + done;
			struct page *pg = is_vmalloc_addr(p) ? vmalloc_to_page(p) : virt_to_page(p);
			unsigned int n = min_t(size_t, PAGE_SIZE - offset_in_page(p), len - done);

			if (bio_add_page(bio, pg, n, offset_in_page(p)) != n)
				break;
			done += n;
		}
		atomic_inc(&io->pending);
		submit_bio(bio);
	}
	md_io_dec(io);

	if (!wait_for_completion_io_timeout(&io->done, MD_IO_TIMEOUT)) {
		DMERR("%s: metadata %s of block %llu timed out", md->name,
		      op_is_write(opf) ? "write" : "read", block);
		md_io_put(io);
		return -ETIMEDOUT;
	}
	r = blk_status_to_errno(READ_ONCE(io->status));
	if (r)
		DMERR_LIMIT("%s: metadata %s of blocks %llu+%llu failed: %d", md->name,
			    op_is_write(opf) ? "write" : "read", block, nr_blocks, r);
	else if (!op_is_write(opf))
		memcpy(data, io->buf, len);
	else
		md->stats.bytes_written += len;
	md_io_put(io);
	return r;
}

/*
 * Write, then read back: a device that acknowledges writes it drops is
 * caught here, while its failure can still be reported.
 */
static int md_write_verified(struct bsync_md *md, blk_opf_t flags, u64 block,
			     void *data, u64 nr_blocks)
{
	size_t len = nr_blocks << BSYNC_MD_BLOCK_SHIFT;
	void *check;
	int r;

	r = md_rw(md, REQ_OP_WRITE | flags, block, data, nr_blocks);
	if (r)
		return r;
	check = kvmalloc(len, GFP_KERNEL);
	if (!check)
		return -ENOMEM;
	r = md_rw(md, REQ_OP_READ, block, check, nr_blocks);
	if (!r && memcmp(check, data, len)) {
		DMERR("%s: metadata block %llu reads back other than written: writes are lost",
		      md->name, block);
		r = -EIO;
	}
	kvfree(check);
	return r;
}

/*
 * Geometry
 */

static void md_layout(struct bsync_md_superblock *sb, u64 nr_blocks)
{
	u64 rest = nr_blocks - BSYNC_MD_SB_BLOCKS;
	u64 log = clamp_t(u64, rest / 8, 1, BSYNC_MD_LOG_BLOCKS);
	u64 area = (rest - log) / 2;

	sb->nr_blocks = cpu_to_le64(nr_blocks);
	sb->log_start = cpu_to_le64(BSYNC_MD_SB_BLOCKS);
	sb->log_blocks = cpu_to_le64(log);
	sb->area_start[0] = cpu_to_le64(BSYNC_MD_SB_BLOCKS + log);
	sb->area_start[1] = cpu_to_le64(BSYNC_MD_SB_BLOCKS + log + area);
	sb->area_blocks = cpu_to_le64(area);
}

static u64 bits_blocks(unsigned long nr_bits)
{
	return DIV_ROUND_UP(DIV_ROUND_UP((u64)nr_bits, 64) * 8, BSYNC_MD_BLOCK_SIZE);
}

static u64 bits_bytes(unsigned long nr_bits)
{
	return DIV_ROUND_UP((u64)nr_bits, 64) * 8;
}

static unsigned long expected_bits(sector_t dev_sectors, unsigned int shift)
{
	return DIV_ROUND_UP_ULL((u64)dev_sectors, 1ULL << shift);
}

/* Checks a superblock whose checksum is right: NULL, or what is wrong. */
static char *sb_invalid(const struct bsync_md_superblock *sb, u64 dev_blocks)
{
	u64 nr = le64_to_cpu(sb->nr_blocks), log = le64_to_cpu(sb->log_blocks);
	u64 area = le64_to_cpu(sb->area_blocks);
	unsigned int i, j, n = le32_to_cpu(sb->nr_bitmaps);

	if (nr > dev_blocks)
		return "metadata device is smaller than its format";
	if (nr < BSYNC_MD_MIN_BLOCKS || le64_to_cpu(sb->log_start) != BSYNC_MD_SB_BLOCKS ||
	    !log || log > nr || area > nr ||
	    le64_to_cpu(sb->area_start[0]) != BSYNC_MD_SB_BLOCKS + log ||
	    le64_to_cpu(sb->area_start[1]) != BSYNC_MD_SB_BLOCKS + log + area ||
	    BSYNC_MD_SB_BLOCKS + log + 2 * area > nr)
		return "superblock geometry is invalid";
	if (n > BSYNC_MD_MAX_BITMAPS || le32_to_cpu(sb->area) > 1)
		return "superblock bitmap table is invalid";
	for (i = 0; i < n; i++) {
		const struct bsync_md_bitmap *b = &sb->bitmaps[i];

		if (!b->name[0] || strnlen(b->name, BSYNC_MD_NAME_LEN) >= BSYNC_MD_NAME_LEN ||
		    strnlen(b->name, BSYNC_MD_NAME_LEN) > BSYNC_NAME_MAX ||
		    b->shift > BSYNC_GRAN_MAX_SHIFT ||
		    le64_to_cpu(b->nr_bits) !=
		    expected_bits(le64_to_cpu(sb->dev_sectors), b->shift) ||
		    le64_to_cpu(b->offset) > area ||
		    bits_blocks(le64_to_cpu(b->nr_bits)) > area - le64_to_cpu(b->offset))
			return "superblock bitmap entry is invalid";
		for (j = 0; j < i; j++)
			if (!strcmp(b->name, sb->bitmaps[j].name))
				return "superblock names a bitmap twice";
	}
	return NULL;
}

/*
 * Open
 */

static bool all_zero(const void *p, size_t len)
{
	return !memchr_inv(p, 0, len);
}

static int md_format(struct bsync_md *md, struct bsync_md_superblock *sb)
{
	if (md->dev_blocks < BSYNC_MD_MIN_BLOCKS)
		return -ENOSPC;
	memset(sb, 0, BSYNC_MD_BLOCK_SIZE);
	sb->magic = cpu_to_le64(BSYNC_MD_MAGIC);
	sb->version = cpu_to_le32(BSYNC_MD_VERSION);
	sb->generation = cpu_to_le64(1);
	sb->flags = cpu_to_le32(BSYNC_MD_CLEAN);
	sb->nonce = cpu_to_le32(get_random_u32());
	md_layout(sb, md->dev_blocks);
	sb->csum = cpu_to_le32(block_csum(sb));
	return md_write_verified(md, REQ_PREFLUSH | REQ_FUA, 1, sb, 1);
}

/* Pick the current superblock from the two slots in @buf. */
static int md_pick(struct bsync_md *md, u8 *buf, char **error)
{
	struct bsync_md_superblock *best = NULL, *sb;
	bool magic = false;
	char *why;
	int i;

	for (i = 0; i < BSYNC_MD_SB_BLOCKS; i++) {
		sb = (void *)(buf + i * BSYNC_MD_BLOCK_SIZE);
		if (le64_to_cpu(sb->magic) != BSYNC_MD_MAGIC)
			continue;
		magic = true;
		if (le32_to_cpu(sb->csum) != block_csum(sb)) {
			DMWARN("%s: metadata superblock %d has a bad checksum", md->name, i);
			continue;
		}
		if (le32_to_cpu(sb->version) != BSYNC_MD_VERSION) {
			*error = "Metadata version is not supported by this module";
			return -EINVAL;
		}
		why = sb_invalid(sb, md->dev_blocks);
		if (why) {
			DMWARN("%s: metadata superblock %d: %s", md->name, i, why);
			*error = why;
			continue;
		}
		if (!best || le64_to_cpu(sb->generation) > le64_to_cpu(best->generation))
			best = sb;
	}
	if (best) {
		memcpy(md->sb, best, BSYNC_MD_BLOCK_SIZE);
		return 0;
	}
	if (!magic) {
		*error = "Metadata device holds something else (zero its first 8 KiB to use it)";
		return -EINVAL;
	}
	if (!*error)
		*error = "Metadata superblocks are both corrupt (see bsync-metadata check)";
	return -EINVAL;
}

struct bsync_md *bsync_md_open(dev_t dev, const char *dev_name, char **error)
{
	struct bsync_md *md;
	u8 *buf;
	int r;

	*error = NULL;
	md = kzalloc(sizeof(*md), GFP_KERNEL);
	buf = kvzalloc(BSYNC_MD_SB_BLOCKS * BSYNC_MD_BLOCK_SIZE, GFP_KERNEL);
	if (md)
		md->sb = kvzalloc(BSYNC_MD_BLOCK_SIZE, GFP_KERNEL);
	if (!md || !buf || !md->sb) {
		*error = "Cannot allocate metadata";
		r = -ENOMEM;
		goto bad;
	}
	strscpy(md->name, dev_name, sizeof(md->name));
	r = bsync_bdev_open_dev(&md->dev, dev);
	if (r) {
		*error = "Cannot open metadata device";
		goto bad;
	}
	md->dev_blocks = bdev_nr_sectors(md->dev.bdev) / BLOCK_SECTORS;
	if (md->dev_blocks < BSYNC_MD_MIN_BLOCKS) {
		*error = "Metadata device is too small (64 KiB at least)";
		r = -ENOSPC;
		goto bad;
	}
	r = md_rw(md, REQ_OP_READ, 0, buf, BSYNC_MD_SB_BLOCKS);
	if (r) {
		*error = "Cannot read metadata superblocks";
		goto bad;
	}
	if (all_zero(buf, BSYNC_MD_SB_BLOCKS * BSYNC_MD_BLOCK_SIZE)) {
		r = md_format(md, md->sb);
		if (r) {
			*error = "Cannot format metadata device";
			goto bad;
		}
		DMINFO("%s: formatted metadata device, %llu blocks", md->name, md->dev_blocks);
	} else {
		r = md_pick(md, buf, error);
		if (r)
			goto bad;
	}
	kvfree(buf);
	md->stats.generation = le64_to_cpu(md->sb->generation);
	return md;
bad:
	kvfree(buf);
	bsync_md_close(md);
	return ERR_PTR(r);
}

void bsync_md_close(struct bsync_md *md)
{
	if (!md)
		return;
	bsync_bdev_close(&md->dev);
	kvfree(md->sb);
	kfree(md);
}

dev_t bsync_md_dev(struct bsync_md *md)
{
	return md->dev.bdev->bd_dev;
}

/*
 * Load
 */

static void words_to_bits(unsigned long *bits, const __le64 *words, unsigned long nr_bits)
{
	u64 i, n = DIV_ROUND_UP((u64)nr_bits, 64);

	for (i = 0; i < n; i++)
		bitmap_from_u64(bits + i * (64 / BITS_PER_LONG), le64_to_cpu(words[i]));
	if (nr_bits % BITS_PER_LONG)
		bits[BIT_WORD(nr_bits)] &= BITMAP_LAST_WORD_MASK(nr_bits);
}

static void bits_to_words(__le64 *words, const unsigned long *bits, unsigned long nr_bits)
{
	u64 i, n = DIV_ROUND_UP((u64)nr_bits, 64);

	for (i = 0; i < n; i++) {
		u64 w = bits[i * (64 / BITS_PER_LONG)];

		if (BITS_PER_LONG == 32 && i * 64 + 32 < nr_bits)
			w |= (u64)bits[i * 2 + 1] << 32;
		words[i] = cpu_to_le64(w);
	}
}

static int load_bitmap(struct bsync_md *md, const struct bsync_md_bitmap *d,
		       sector_t dev_sectors, struct bsync_bitmap **out)
{
	u64 area = le64_to_cpu(md->sb->area_start[le32_to_cpu(md->sb->area)]);
	unsigned long nr_bits = le64_to_cpu(d->nr_bits);
	u64 blocks = bits_blocks(nr_bits);
	struct bsync_bitmap *bm;
	void *buf;
	int r;

	bm = bsync_bitmap_create(d->name, d->shift, dev_sectors,
				 d->flags & BSYNC_MD_BM_RECORDING);
	if (IS_ERR(bm))
		return PTR_ERR(bm);
	bm->persistent = true;
	bm->inconsistent = d->flags & BSYNC_MD_BM_INCONSISTENT;
	buf = kvmalloc(blocks << BSYNC_MD_BLOCK_SHIFT, GFP_KERNEL);
	if (!buf) {
		bsync_bitmap_destroy(bm);
		return -ENOMEM;
	}
	r = md_rw(md, REQ_OP_READ, area + le64_to_cpu(d->offset), buf, blocks);
	if (!r && md_csum(buf, bits_bytes(nr_bits)) != le32_to_cpu(d->csum)) {
		DMERR("%s: bitmap \"%s\": checksum mismatch in the metadata: inconsistent",
		      md->name, d->name);
		bm->inconsistent = true;
	} else if (r) {
		DMERR("%s: bitmap \"%s\": cannot read its bits (%d): inconsistent",
		      md->name, d->name, r);
		bm->inconsistent = true;
	}
	if (!r)
		words_to_bits(bm->bits, buf, bm->nr_bits);
	kvfree(buf);
	*out = bm;
	return 0;
}

/* Apply the log records of the current generation, up to the first bad block. */
static int replay_log(struct bsync_md *md, struct list_head *bitmaps)
{
	u64 gen = le64_to_cpu(md->sb->generation);
	u64 start = le64_to_cpu(md->sb->log_start), n = le64_to_cpu(md->sb->log_blocks);
	struct bsync_md_log_header *h;
	struct bsync_md_log_record *rec;
	struct bsync_bitmap *bm;
	u64 seq, end, records = 0;
	u32 i, nr;
	u8 *buf;
	int r;

	buf = kvmalloc(n << BSYNC_MD_BLOCK_SHIFT, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	r = md_rw(md, REQ_OP_READ, start, buf, n);
	if (r)
		goto out;
	for (seq = 0; seq < n; seq++) {
		h = (void *)(buf + (seq << BSYNC_MD_BLOCK_SHIFT));
		nr = le32_to_cpu(h->nr_records);
		if (le32_to_cpu(h->magic) != BSYNC_MD_LOG_MAGIC ||
		    le64_to_cpu(h->generation) != gen ||
		    le64_to_cpu(h->seq) != seq || h->nonce != md->sb->nonce ||
		    nr > BSYNC_MD_LOG_RECORDS || le32_to_cpu(h->csum) != log_csum(h, nr))
			break;
		rec = (void *)(h + 1);
		for (i = 0; i < nr; i++) {
			u64 sector = le64_to_cpu(rec[i].sector);
			u64 len = le64_to_cpu(rec[i].nr_sectors);

			list_for_each_entry(bm, bitmaps, list)
				if (bm->persistent && bm->recording && !bm->inconsistent)
					bsync_bitmap_mark(bm, sector, min(len, U64_MAX - sector));
		}
		records += nr;
	}
	if (seq)
		DMINFO("%s: metadata log replayed: %llu blocks, %llu writes",
		       md->name, seq, records);
	/*
	 * Log blocks are written one after the other, each once the one
	 * before is durable, so a crash leaves at most the last one torn.
	 * A valid block past the end means records were lost to damage; a
	 * block of a later generation, that a committed superblock was.
	 */
	for (end = seq; seq < n; seq++) {
		h = (void *)(buf + (seq << BSYNC_MD_BLOCK_SHIFT));
		nr = le32_to_cpu(h->nr_records);
		if (le32_to_cpu(h->magic) != BSYNC_MD_LOG_MAGIC || h->nonce != md->sb->nonce ||
		    le64_to_cpu(h->generation) < gen || nr > BSYNC_MD_LOG_RECORDS ||
		    le32_to_cpu(h->csum) != log_csum(h, nr))
			continue;
		if (le64_to_cpu(h->generation) > gen) {
			DMERR("%s: metadata log newer than its superblock: bitmaps inconsistent",
			      md->name);
			r = -ESTALE;
		} else {
			DMERR("%s: metadata log block %llu bad, %llu valid: bitmaps inconsistent",
			      md->name, end, seq);
			r = -EILSEQ;
		}
		break;
	}
out:
	kvfree(buf);
	return r;
}

int bsync_md_load(struct bsync_md *md, sector_t dev_sectors, struct list_head *bitmaps,
		  char **error)
{
	struct bsync_md_superblock *sb = md->sb;
	sector_t committed = le64_to_cpu(sb->dev_sectors);
	unsigned int i, n = le32_to_cpu(sb->nr_bitmaps);
	struct bsync_bitmap *bm, *tmp;
	LIST_HEAD(loaded);
	int r;

	for (i = 0; i < n; i++) {
		r = load_bitmap(md, &sb->bitmaps[i], committed, &bm);
		if (r) {
			*error = "Cannot allocate persistent bitmaps";
			goto bad;
		}
		list_add_tail(&bm->list, &loaded);
	}
	r = replay_log(md, &loaded);
	if (r && r != -ESTALE && r != -EILSEQ)
		DMERR("%s: cannot read the metadata log (%d): bitmaps inconsistent", md->name, r);
	/*
	 * Records lost from the log (-EILSEQ) only matter to bitmaps that
	 * record; a lost commit or an unreadable log may touch any.
	 */
	list_for_each_entry(bm, &loaded, list)
		if (r && (r != -EILSEQ || bm->recording))
			bm->inconsistent = true;
	list_for_each_entry(bm, &loaded, list) {
		r = bsync_bitmap_resize(bm, dev_sectors);
		if (r) {
			*error = "Cannot resize persistent bitmaps";
			goto bad;
		}
		/* Grown while offline: the new space may hold anything. */
		if (dev_sectors > committed)
			bsync_bitmap_mark(bm, committed, dev_sectors - committed);
		bm->durable = bsync_bitmap_create(NULL, bm->shift, dev_sectors, false);
		if (IS_ERR(bm->durable)) {
			r = PTR_ERR(bm->durable);
			bm->durable = NULL;
			*error = "Cannot allocate persistent bitmaps";
			goto bad;
		}
		bitmap_copy(bm->durable->bits, bm->bits, bm->nr_bits);
	}
	list_splice_tail(&loaded, bitmaps);
	return n;
bad:
	list_for_each_entry_safe(bm, tmp, &loaded, list)
		bsync_bitmap_destroy(bm);
	return r;
}

/*
 * Commit
 */

static u64 area_needed(struct list_head *bitmaps, unsigned int *count)
{
	struct bsync_bitmap *bm;
	u64 blocks = 0;

	*count = 0;
	list_for_each_entry(bm, bitmaps, list) {
		if (!bm->persistent)
			continue;
		blocks += bits_blocks(bm->durable->nr_bits);
		(*count)++;
	}
	return blocks;
}

int bsync_md_check_room(struct bsync_md *md, struct list_head *bitmaps,
			unsigned long nr_bits)
{
	unsigned int count;
	u64 blocks = area_needed(bitmaps, &count) + bits_blocks(nr_bits);

	if (count >= BSYNC_MD_MAX_BITMAPS)
		return -EMLINK;
	return blocks > le64_to_cpu(md->sb->area_blocks) ? -ENOSPC : 0;
}

int bsync_md_commit(struct bsync_md *md, struct list_head *bitmaps, sector_t dev_sectors,
		    bool clean)
{
	struct bsync_md_superblock *sb;
	struct bsync_bitmap *bm;
	unsigned int count, i = 0;
	u64 blocks, off = 0, gen;
	u32 area;
	u8 *buf = NULL;
	int r;

	blocks = area_needed(bitmaps, &count);
	if (blocks > le64_to_cpu(md->sb->area_blocks) || count > BSYNC_MD_MAX_BITMAPS)
		return -ENOSPC;
	sb = kvmalloc(BSYNC_MD_BLOCK_SIZE, GFP_KERNEL);
	if (blocks)
		buf = kvzalloc(blocks << BSYNC_MD_BLOCK_SHIFT, GFP_KERNEL);
	if (!sb || (blocks && !buf)) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(sb, md->sb, BSYNC_MD_BLOCK_SIZE);
	memset(sb->bitmaps, 0, sizeof(sb->bitmaps));
	area = !le32_to_cpu(md->sb->area);
	list_for_each_entry(bm, bitmaps, list) {
		struct bsync_md_bitmap *d = &sb->bitmaps[i];
		__le64 *words = (__le64 *)(buf + (off << BSYNC_MD_BLOCK_SHIFT));

		if (!bm->persistent)
			continue;
		strscpy(d->name, bm->name, sizeof(d->name));
		d->nr_bits = cpu_to_le64(bm->durable->nr_bits);
		d->offset = cpu_to_le64(off);
		d->shift = bm->shift;
		d->flags = ((bm->successor ?: bm)->recording ? BSYNC_MD_BM_RECORDING : 0) |
			   (bm->inconsistent ? BSYNC_MD_BM_INCONSISTENT : 0);
		bits_to_words(words, bm->durable->bits, bm->durable->nr_bits);
		d->csum = cpu_to_le32(md_csum(words, bits_bytes(bm->durable->nr_bits)));
		off += bits_blocks(bm->durable->nr_bits);
		i++;
	}
	gen = le64_to_cpu(md->sb->generation) + 1;
	sb->generation = cpu_to_le64(gen);
	sb->dev_sectors = cpu_to_le64(dev_sectors);
	sb->nr_bitmaps = cpu_to_le32(count);
	sb->area = cpu_to_le32(area);
	sb->flags = cpu_to_le32(clean ? BSYNC_MD_CLEAN : 0);
	sb->csum = cpu_to_le32(block_csum(sb));

	if (blocks) {
		r = md_rw(md, REQ_OP_WRITE, le64_to_cpu(sb->area_start[area]), buf, blocks);
		if (r)
			goto out;
	}
	/* The flush makes the area durable before the superblock names it. */
	r = md_write_verified(md, REQ_PREFLUSH | REQ_FUA, gen % BSYNC_MD_SB_BLOCKS, sb, 1);
	if (r)
		goto out;
	memcpy(md->sb, sb, BSYNC_MD_BLOCK_SIZE);
	md->next_seq = 0;
	md->stats.generation = gen;
	md->stats.commits++;
out:
	kvfree(buf);
	kvfree(sb);
	return r;
}

/*
 * Log
 */

int bsync_md_log(struct bsync_md *md, const struct bsync_md_log_record *recs,
		 unsigned int nr)
{
	unsigned int blocks = DIV_ROUND_UP(nr, BSYNC_MD_LOG_RECORDS), n;
	u64 gen = le64_to_cpu(md->sb->generation);
	struct bsync_md_log_header *h;
	int r = 0;

	if (!nr)
		return 0;
	if (md->next_seq + blocks > le64_to_cpu(md->sb->log_blocks))
		return -ENOSPC;
	h = kmalloc(BSYNC_MD_BLOCK_SIZE, GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	/* One block at a time: only the last can be torn (see replay_log()). */
	for (; nr && !r; recs += n, nr -= n) {
		n = min_t(unsigned int, nr, BSYNC_MD_LOG_RECORDS);
		memset(h, 0, BSYNC_MD_BLOCK_SIZE);
		h->magic = cpu_to_le32(BSYNC_MD_LOG_MAGIC);
		h->generation = cpu_to_le64(gen);
		h->seq = cpu_to_le64(md->next_seq);
		h->nr_records = cpu_to_le32(n);
		h->nonce = md->sb->nonce;
		memcpy(h + 1, recs, n * sizeof(*recs));
		h->csum = cpu_to_le32(log_csum(h, n));
		r = md_write_verified(md, REQ_FUA, le64_to_cpu(md->sb->log_start) + md->next_seq,
				      h, 1);
		if (!r) {
			md->next_seq++;
			md->stats.log_writes++;
		}
	}
	kfree(h);
	return r;
}

void bsync_md_get_stats(struct bsync_md *md, struct bsync_md_stats *stats)
{
	*stats = md->stats;
	stats->log_used = md->next_seq;
	stats->log_blocks = le64_to_cpu(md->sb->log_blocks);
}
