/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2 v3 image reader and checker, and backing chains of them.
 *
 * What bsyncctl's "chain verify" and "restore" read backups with, without
 * QEMU: the images bsyncd's writer makes (qcow2.h) and the ones qemu-img
 * makes, as long as they use no feature the writer refuses (compressed
 * clusters, internal snapshots, persistent bitmaps, encryption, external
 * data files, extended L2 entries: -ENOTSUP).  Every offset found in the
 * file is checked against the file before it is used.
 *
 * Every function returning int returns 0 or -errno, described in err
 * (open) or kept in the reader (qcow2_reader_errmsg()).  A reader is not
 * thread-safe.
 */
#ifndef BSYNC_QCOW2_READ_H
#define BSYNC_QCOW2_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

struct qcow2_reader;

struct qcow2_info {
	uint64_t virtual_size;
	uint32_t cluster_size;
	uint64_t file_size;
	char backing[1024];	/* as stored: "" if none */
	char backing_fmt[16];	/* "" if not recorded */
	bool incomplete;	/* corrupt bit: a writer did not finish it */
	bool dirty;		/* dirty bit: refcounts not written back */
	bool partial;		/* a failed or cancelled job's image */
	char partial_text[QCOW2_TEXT_MAX];	/* its record, "key=value" lines */
};

/* Open the image at path (a regular file) read-only. */
int qcow2_reader_open(const char *path, struct qcow2_reader **out, char *err, size_t errlen);
void qcow2_reader_close(struct qcow2_reader *r);
const struct qcow2_info *qcow2_reader_info(const struct qcow2_reader *r);
const char *qcow2_reader_errmsg(const struct qcow2_reader *r);

enum qcow2_extent {
	QCOW2_EXT_UNALLOCATED,	/* read from the backing file */
	QCOW2_EXT_ZERO,		/* reads as zeroes */
	QCOW2_EXT_DATA,		/* stored in this image */
};

/*
 * What the image holds at guest offset off (< virtual size): *kind, and
 * *len, how many bytes from off (at most max) are of that kind: for data,
 * up to the end of the cluster at most; for the others, possibly many
 * clusters.  -EUCLEAN if an L1 or L2 entry on the way is invalid, -ENOTSUP
 * for a compressed cluster.
 */
int qcow2_reader_extent(struct qcow2_reader *r, uint64_t off, uint64_t max,
			enum qcow2_extent *kind, uint64_t *len);

/*
 * Read [off, off + len) of this image alone, inside one extent as given by
 * qcow2_reader_extent(): data is read, zero and unallocated ranges read as
 * zeroes.
 */
int qcow2_reader_pread(struct qcow2_reader *r, void *buf, uint64_t len, uint64_t off);

/* What qcow2_reader_check() found (qemu-img check's terms). */
struct qcow2_check {
	uint64_t corruptions;	/* errors: the image cannot be trusted */
	uint64_t leaks;		/* clusters with a refcount but no use: harmless */
	uint64_t data_bytes;	/* guest bytes stored in data clusters */
	uint64_t zero_bytes;	/* guest bytes marked zero */
	bool refcounts_checked;	/* false for an incomplete (unfinished) image */
	char first[320];	/* the first corruption, described */
};

/*
 * Check the image's structure: every L1 and L2 entry, the refcount table
 * and blocks against the references the header, L1, L2 tables and
 * refcount structures make (each host cluster used once, refcounts equal
 * to the uses).  Reads metadata only.  Returns 0 when the check ran
 * (corruptions are counted in *out), -errno when it could not.
 */
int qcow2_reader_check(struct qcow2_reader *r, struct qcow2_check *out);

/* ------------------------------------------------------------------ */
/* backing chains                                                      */

/*
 * The path of the backing file an image at image_path names (as QEMU
 * resolves it: relative names against the image's directory).
 */
void qcow2_backing_path(const char *image_path, const char *backing, char *buf, size_t len);

/* An open chain: level 0 is the tip, the last level the base. */
struct qcow2_chain {
	size_t n;
	struct qcow2_chain_level {
		char *path;
		struct qcow2_reader *r;	/* NULL: a raw file (backing format raw) */
		int raw_fd;
		uint64_t size;		/* virtual size (a raw file's size) */
	} *level;
};

#define QCOW2_CHAIN_MAX 4096	/* levels; more is taken as a loop */

/*
 * Open the chain from tip down to its base.  On failure, the levels opened
 * so far stay in *c (for the caller's report) and *failed_path is the
 * image that could not be opened (in buf).  Free with qcow2_chain_close().
 */
int qcow2_chain_open(const char *tip, struct qcow2_chain *c, char *failed_path, size_t plen,
		     char *err, size_t errlen);
void qcow2_chain_close(struct qcow2_chain *c);

/*
 * Read [off, off + len) of the image the chain describes (level 0's size):
 * what the tip does not hold comes from the levels below it, zero past a
 * level's size.  *all_zero (may be NULL) tells whether the range reads as
 * zeroes only.  Errors are described in err.
 */
int qcow2_chain_pread(struct qcow2_chain *c, void *buf, uint64_t len, uint64_t off,
		      bool *all_zero, char *err, size_t errlen);

/* Does buf hold only zero bytes? */
bool qcow2_is_zero(const void *buf, size_t len);

#endif
