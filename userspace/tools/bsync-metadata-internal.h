/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bsync-metadata internals shared by its files, not part of the tool's
 * interface (bsync-metadata.h):
 *   bsync-metadata-core.c    the device: open, block I/O, CRC, layout, problems
 *   bsync-metadata-check.c   loading by the kernel's rules; the check command
 *   bsync-metadata-dump.c    the dump command, text and JSON
 *   bsync-metadata-repair.c  the repair command
 *   bsync-metadata-cli.c     the command line
 */
#ifndef BSYNC_METADATA_INTERNAL_H
#define BSYNC_METADATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dm-bsync-format.h"
#include "bsync-metadata.h"

#define BS		BSYNC_MD_BLOCK_SIZE
#define MAX_PROBLEMS	200		/* listed; the rest are counted */

/*
 * The loaded state of a device.
 */
enum slot_state { SLOT_EMPTY, SLOT_BAD, SLOT_OK };

struct slot {
	enum slot_state state;
	char why[400];		/* SLOT_BAD */
	uint64_t gen;		/* SLOT_OK */
	unsigned char raw[BS];
};

struct bm {
	char name[BSYNC_MD_NAME_LEN];
	uint64_t nr_bits, offset, nwords, blocks;
	uint32_t csum;
	unsigned int shift, flags;
	const char *lost;	/* it may miss writes: why (NULL if it may not) */
	uint64_t *bits;		/* NULL if not read */
	uint64_t dirty;		/* set bits after replay */
};

struct md {
	const char *path;
	int fd;
	uint64_t dev_bytes, dev_blocks;
	struct slot slot[2];
	int cur;		/* current slot, -1 if none */
	/* the current superblock, decoded */
	uint64_t gen, dev_sectors, nr_blocks;
	struct bmd_layout lay;
	uint32_t flags, nr_bitmaps, area, nonce;	/* nonce: as on disk */
	struct bm bm[BSYNC_MD_MAX_BITMAPS];
	/* log replay */
	uint64_t log_valid, log_records, newer_gen;
	char log_end[400];	/* why replay stopped */
	bool log_gap;
	bool newer_version;	/* a slot of a format this tool does not know */
	/* problems, one line each */
	char *prob[MAX_PROBLEMS];
	size_t nprob, nprob_more;
};

/* bsync-metadata-core.c */

/* Open path for reading (or writing); exclusively if it is a block device. */
int bmd_open(struct md *m, const char *path, bool rw, FILE *err);
void bmd_close(struct md *m);

/* Record a problem (one line); past MAX_PROBLEMS they are only counted. */
__attribute__((format(printf, 2, 3)))
void bmd_problem(struct md *m, const char *fmt, ...);
size_t bmd_nproblems(const struct md *m);

/*
 * Read or write n whole blocks at block: -ENODATA (read) or -ENOSPC (write)
 * if they are not all on the device, else 0 or -errno.
 */
int bmd_read_blocks(struct md *m, uint64_t block, uint64_t n, void *buf);
int bmd_write_blocks(struct md *m, uint64_t block, uint64_t n, const void *buf);

/* bsync-metadata-check.c: load everything; -errno on an I/O error (message on err). */
int bmd_load(struct md *m, FILE *err);

/* The commands, on a loaded device; each returns the exit status. */
int bmd_check(const struct md *m, FILE *out, FILE *err);	/* bsync-metadata-check.c */
int bmd_dump(const struct md *m, bool json, FILE *out);		/* bsync-metadata-dump.c */
int bmd_repair(struct md *m, FILE *out, FILE *err);		/* bsync-metadata-repair.c */

#endif
