/* SPDX-License-Identifier: GPL-2.0 */
/*
 * On-disk format of the bsync metadata device, shared by the kernel target
 * and the userspace tools (bsync-metadata). Everything is little-endian;
 * checksums are CRC-32C (Castagnoli, seed ~0, final xor ~0, as crc32c()).
 *
 * Layout, in 4 KiB blocks:
 *
 *   0, 1        superblock copies; the valid one with the highest
 *               generation is current, the other is rewritten next
 *   2 ..        log: records of writes since the current superblock
 *   then        two bitmap areas of equal size, used in turn
 *
 * A commit writes every persistent bitmap into the area the current
 * superblock does not use, then the other superblock slot with the next
 * generation (flush + FUA): a torn commit leaves the previous superblock,
 * its area and its log intact. Between commits, the first write to a
 * cluster that is clean in a persistent bitmap appends a log record (FUA)
 * before the write is issued; loading replays the records of the current
 * generation, in order, up to the first invalid block.
 */
#ifndef DM_BSYNC_FORMAT_H
#define DM_BSYNC_FORMAT_H

#include <linux/types.h>

/* Every structure is laid out without padding (checked at build time). */

#define BSYNC_MD_MAGIC		0x31444d434e595342ULL	/* "BSYNCMD1" */
#define BSYNC_MD_LOG_MAGIC	0x474c5342U		/* "BSLG" */
#define BSYNC_MD_VERSION	1
#define BSYNC_MD_BLOCK_SIZE	4096
#define BSYNC_MD_BLOCK_SHIFT	12
#define BSYNC_MD_SB_BLOCKS	2
#define BSYNC_MD_MAX_BITMAPS	16
#define BSYNC_MD_NAME_LEN	128	/* NUL-terminated */

/* Log blocks: 1 MiB, or an eighth of a small device. */
#define BSYNC_MD_LOG_BLOCKS	256
#define BSYNC_MD_MIN_BLOCKS	16

/* Superblock flags */
#define BSYNC_MD_CLEAN		0x1U	/* closed cleanly: the log is empty */

/* Bitmap flags */
#define BSYNC_MD_BM_RECORDING	0x1U	/* enabled: records writes */
#define BSYNC_MD_BM_INCONSISTENT 0x2U	/* may miss writes: refused for backups */

struct bsync_md_bitmap {
	char name[BSYNC_MD_NAME_LEN];
	__le64 nr_bits;		/* clusters of the device at this granularity */
	__le64 offset;		/* of its bits, in blocks from the area's start */
	__le32 csum;		/* of its bits: nr_bits rounded up to 64, le64 words */
	__u8 shift;		/* log2(granularity / 512) */
	__u8 flags;		/* BSYNC_MD_BM_* */
	__u8 pad[10];
};

struct bsync_md_superblock {
	__le32 csum;		/* of the whole block, from the next field on */
	__le32 version;
	__le64 magic;
	__le64 generation;	/* +1 on every commit */
	__le64 dev_sectors;	/* size of the bsync device at the commit */
	__le64 nr_blocks;	/* of the metadata device when formatted */
	__le64 log_start;	/* block */
	__le64 log_blocks;
	__le64 area_start[2];	/* block */
	__le64 area_blocks;	/* each */
	__le32 flags;		/* BSYNC_MD_CLEAN */
	__le32 nr_bitmaps;
	__le32 area;		/* 0 or 1: the area this commit wrote */
	__le32 nonce;		/* random, per format: tells its log blocks */
	__u8 pad[40];
	struct bsync_md_bitmap bitmaps[BSYNC_MD_MAX_BITMAPS];
};

struct bsync_md_log_record {
	__le64 sector;		/* a write's range on the bsync device */
	__le64 nr_sectors;
};

struct bsync_md_log_header {
	__le32 csum;		/* from the next field to the last record; the rest is unused */
	__le32 magic;
	__le64 generation;	/* of the superblock whose log this continues */
	__le64 seq;		/* 0, 1, ...: index in the log */
	__le32 nr_records;
	__le32 nonce;		/* the superblock's */
};

#define BSYNC_MD_LOG_RECORDS \
	((BSYNC_MD_BLOCK_SIZE - sizeof(struct bsync_md_log_header)) / \
	 sizeof(struct bsync_md_log_record))

#endif
