/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2 v3 image writer for backup targets.
 *
 * Writes QEMU-compatible qcow2 images: full backups (no backing file) and
 * incremental overlays (backing file = the previous backup).  Data clusters
 * are appended to the file in large sequential writes whatever the guest
 * order; L2 tables and refcounts are allocated as the image grows and the
 * refcount structures are written when the image is closed.
 *
 * While an image is open for writing it is marked incomplete on disk: the
 * "corrupt" incompatible bit is set (QEMU refuses read/write opens) and the
 * refcount table is empty (qemu-img check reports errors, exit code 2).
 * qcow2_close(img, true) clears the mark only after all metadata has been
 * written and fsync'ed.  See Documentation/qcow2-writer.rst.
 *
 * Every function returning int returns 0 or -errno.  A message a person can
 * act on is written to err (create/open) or kept in the image
 * (qcow2_errmsg()).  An image handle is not thread-safe.
 */
#ifndef BSYNC_QCOW2_H
#define BSYNC_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qcow2_image;

struct qcow2_create_opts {
	uint64_t virtual_size;    /* bytes, > 0, multiple of 512 */
	uint32_t cluster_size;    /* power of two, 512 B .. 2 MiB; 0 = 64 KiB */
	const char *backing_file; /* NULL = standalone image; stored verbatim,
				     QEMU resolves a relative name against the
				     image's directory; at most 1023 bytes */
	const char *backing_fmt;  /* NULL = "qcow2" when backing_file is set */
};

/*
 * Create a new image at path (O_EXCL: -EEXIST if it exists; mode 0600).
 * On failure nothing is left behind.
 */
int qcow2_create(const char *path, const struct qcow2_create_opts *o,
		 struct qcow2_image **out, char *err, size_t errlen);

/*
 * Open an existing, empty qcow2 v3 image (e.g. made by
 * `qemu-img create -f qcow2 [-b base -F qcow2]`) for writing, keeping its
 * cluster size, refcount width, backing file and header extensions.
 * expect_virtual_size must equal the image's size (0 = accept any).
 * Refuses (-EINVAL/-ENOTSUP/-EUCLEAN) anything it cannot safely extend.
 */
int qcow2_open_existing(const char *path, uint64_t expect_virtual_size,
			struct qcow2_image **out, char *err, size_t errlen);

uint32_t qcow2_cluster_size(const struct qcow2_image *img);
uint64_t qcow2_virtual_size(const struct qcow2_image *img);
/* Message for the last error on img ("" if none). */
const char *qcow2_errmsg(const struct qcow2_image *img);

/*
 * Write guest data.  guest_offset is cluster aligned; len is a multiple of
 * the cluster size, except that the range may end at the end of the disk
 * with a partial last cluster.  Several clusters may be written at once.
 * Each cluster may be written (data or zero) only once per open image:
 * rewriting one fails with -EINVAL and writes nothing.  A write of at least
 * 256 KiB from a 4 KiB-aligned buffer goes to the disk without a copy
 * (O_DIRECT, before the call returns); smaller ones are copied into the
 * image's append buffer.
 */
int qcow2_write_cluster(struct qcow2_image *img, uint64_t guest_offset,
			const void *buf, size_t len);

/*
 * Write a range read from a disk at once: cluster i of [guest_offset,
 * guest_offset + len) is marked zero (as qcow2_write_zero) if zero[i], else
 * written from buf + i * cluster size (zero may be NULL: all data).  Same
 * alignment and once-only rules as qcow2_write_cluster().  It is
 * qcow2_write_pieces() over the range cut into pieces of at most 64 data
 * runs: with at least 256 KiB of data in a 4 KiB-aligned buffer, the data
 * go to the disk with O_DIRECT (pwritev), without a copy, before the call
 * returns.
 */
int qcow2_write_sparse(struct qcow2_image *img, uint64_t guest_offset,
		       const void *buf, size_t len, const bool *zero);

/*
 * Several ranges read from a disk (each as for qcow2_write_sparse()), in
 * increasing guest order without overlap: with at least 256 KiB of data,
 * all in whole clusters from 4 KiB-aligned buffers and at most 64 data runs
 * a piece, their data clusters go to the disk together, in one O_DIRECT
 * write per 64 buffers.  Otherwise each piece is copied run by run through
 * the append buffer.
 */
struct qcow2_piece {
	uint64_t off;		/* guest offset */
	const void *buf;
	size_t len;
	const bool *zero;	/* per cluster, or NULL: all data */
};

int qcow2_write_pieces(struct qcow2_image *img, const struct qcow2_piece *p, size_t n);

/*
 * Mark clusters as reading zero (zero flag, no data is stored).  They hide
 * whatever the backing file holds.  Same alignment and once-only rules as
 * qcow2_write_cluster().
 */
int qcow2_write_zero(struct qcow2_image *img, uint64_t guest_offset,
		     uint64_t len);

/*
 * Bound the memory used for L2 tables (default 32 MiB, at least 4 tables).
 * Tables beyond it are written to disk and re-read when needed.
 */
void qcow2_set_l2_cache(struct qcow2_image *img, size_t bytes);

/*
 * Record that the image holds only part of what was asked (a failed or
 * cancelled backup): text, at most 1024 bytes of "key=value" lines, is kept
 * in a header extension of bsyncd's own (QEMU ignores and preserves it) when
 * the image is closed complete.  The image stays a well-formed qcow2 that
 * QEMU opens read/write.  Returns 0 or -ENOMEM.
 */
#define QCOW2_TEXT_MAX 1025	/* a record's text and its NUL */
int qcow2_set_partial(struct qcow2_image *img, const char *text);

/*
 * Read the partial-backup record of the image at path into text (len bytes,
 * NUL-terminated, "" if none).  Returns 1 if the image carries one, 0 if
 * not, -errno (described in err) if it cannot be read or is not qcow2 v3.
 */
int qcow2_read_partial(const char *path, char *text, size_t len, char *err,
		       size_t errlen);

/*
 * Write the remaining metadata (L2, L1, refcounts), fsync, and when complete
 * is true write the partial record if one was set, clear the incomplete mark
 * and fsync again.  With complete false the
 * metadata is still written (the image is readable, e.g. as a backing file)
 * but the image stays marked incomplete.  Always frees img; returns the first
 * error met during the image's life or while closing, described in err
 * (may be NULL).
 */
int qcow2_close(struct qcow2_image *img, bool complete, char *err,
		size_t errlen);

/* Close without writing metadata and remove the file.  Frees img. */
void qcow2_abort_and_unlink(struct qcow2_image *img);

/*
 * Is the image at path a qcow2 image marked complete?  0 if so;
 * -EUCLEAN if it is marked incomplete (corrupt or dirty bit: a writer did
 * not finish it), -EINVAL if not a qcow2 image, other -errno on I/O errors.
 */
int qcow2_check_complete(const char *path, char *err, size_t errlen);

#endif
