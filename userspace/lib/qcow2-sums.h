/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-cluster checksum record the qcow2 writer can keep beside an
 * image: IMAGE.sums, the XXH64 of every data cluster written into IMAGE
 * (guest offset -> checksum), so that "bsyncctl chain verify" can tell a
 * cluster that changed on the backup disk after it was written.
 *
 * Format (big-endian, as qcow2): a 64-byte header, then 16-byte entries in
 * the order the clusters were written.
 *   0  magic "BSYNCSUM"          8  version (1)       12 header length (64)
 *   16 algorithm (1: XXH64,      20 cluster size      24 virtual size (u64)
 *      seed 0)
 *   32 state (0: being written, 1: complete)          36 reserved
 *   40 entries (u64)             48 the image's file size when it was
 *                                   finished (u64)
 *   56 XXH64 of bytes 0..55 (u64)
 *   entry: guest offset (u64), XXH64 of the cluster's bytes up to the
 *          virtual size (u64).
 * The record is made at the image's creation in state 0 and put in state 1,
 * with its count and the image's file size, and fsynced, before the image
 * is marked complete (qcow2.h): a complete image never has a record in
 * state 0, and a record in state 0 is an unfinished image's.  A record
 * whose file size or geometry differs from the image's is another image's
 * (the image was rewritten, or replaced, after it).
 */
#ifndef BSYNC_QCOW2_SUMS_H
#define BSYNC_QCOW2_SUMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

#define QCOW2_SUMS_SUFFIX ".sums"

/*
 * Start the record of img (a new or empty image): IMAGE.sums is made anew,
 * replacing a stale one.  From then on every data cluster written is
 * recorded; qcow2_close() finishes it, qcow2_abort_and_unlink() removes
 * it.  0 or -errno, described in err (the image is still usable, without
 * a record).
 */
int qcow2_enable_sums(struct qcow2_image *img, char *err, size_t errlen);

struct qcow2_sum {
	uint64_t off;		/* guest offset of the cluster */
	uint64_t hash;
	bool seen;		/* for the reader's caller: matched a cluster */
};

struct qcow2_sums {
	uint32_t cluster_size;
	uint64_t virtual_size;
	uint64_t image_file_size;	/* when it was finished */
	bool complete;			/* state 1 */
	size_t n;
	struct qcow2_sum *e;		/* sorted by offset */
};

/* The record's path for image (buf of len bytes). */
void qcow2_sums_path(const char *image, char *buf, size_t len);
/*
 * fsync the directory of path, so that a file made, renamed or unlinked
 * there is durable (the record's commit; chain merge's renames).
 */
int qcow2_sync_dir(const char *path);

/*
 * Load image's record: 1 loaded into *s (free with qcow2_sums_free()), 0 if
 * the image has none, -errno if it cannot be read or is malformed (-EUCLEAN:
 * bad magic, header checksum, length or a duplicated cluster), said in err.
 */
int qcow2_sums_load(const char *image, struct qcow2_sums *s, char *err, size_t errlen);
void qcow2_sums_free(struct qcow2_sums *s);

/* The entry of the cluster at guest offset off, or NULL. */
struct qcow2_sum *qcow2_sums_find(const struct qcow2_sums *s, uint64_t off);

/* The checksum the record keeps of a cluster's len bytes. */
uint64_t qcow2_sum_of(const void *buf, size_t len);

#endif
