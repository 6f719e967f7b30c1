/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2 writer internals shared by its files, not part of the public API:
 *   qcow2.c           the image's life: create (header), close, the handle
 *   qcow2-open.c      opening an existing image (qemu-img create's)
 *   qcow2-cluster.c   guest clusters to host clusters (the write calls)
 *   qcow2-cache.c     the L2 table cache
 *   qcow2-io.c        the file I/O: append buffer, O_DIRECT, whole reads
 *   qcow2-refcount.c  the refcount structures, generated at close
 *   qcow2-partial.c   the partial-backup record
 *   qcow2-sums.c      the per-cluster checksum record (qcow2-sums.h)
 *   qcow2-read.c      the reader and checker, and chains (qcow2-read.h)
 */
#ifndef BSYNC_QCOW2_INTERNAL_H
#define BSYNC_QCOW2_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC		0x514649fbu
#define QCOW2_HDR_V3_LEN	104u	/* mandatory v3 header fields */
#define QCOW2_HDR_LEN		112u	/* + compression_type + padding */

/* header field offsets */
#define QH_MAGIC		0
#define QH_VERSION		4
#define QH_BACKING_OFF		8
#define QH_BACKING_SIZE		16
#define QH_CLUSTER_BITS		20
#define QH_SIZE			24
#define QH_CRYPT		32
#define QH_L1_SIZE		36
#define QH_L1_OFF		40
#define QH_RT_OFF		48
#define QH_RT_CLUSTERS		56
#define QH_NB_SNAP		60
#define QH_SNAP_OFF		64
#define QH_INCOMPAT		72
#define QH_COMPAT		80
#define QH_AUTOCLEAR		88
#define QH_REFCOUNT_ORDER	96
#define QH_HDR_LEN		100
#define QH_COMPRESSION		104

#define QCOW2_INCOMPAT_DIRTY	(1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT	(1ull << 1)
#define QCOW2_INCOMPAT_DATAFILE	(1ull << 2)
#define QCOW2_INCOMPAT_COMPR	(1ull << 3)
#define QCOW2_INCOMPAT_EXTL2	(1ull << 4)

#define QCOW2_EXT_END		0x00000000u
#define QCOW2_EXT_BACKING_FMT	0xe2792acau
#define QCOW2_EXT_FEATURES	0x6803f857u
#define QCOW2_EXT_BITMAPS	0x23852875u
#define QCOW2_EXT_CRYPTO	0x0537be77u
#define QCOW2_EXT_DATAFILE	0x44415441u
/* ours: a failed or cancelled job's image (qcow2-partial.c); QEMU keeps it */
#define QCOW2_EXT_BSYNC_PARTIAL	0x62737970u	/* "bsyp" */
#define QCOW2_PARTIAL_MAX	1024u

#define QCOW2_OFLAG_COPIED	(1ull << 63)
#define QCOW2_OFLAG_COMPRESSED	(1ull << 62)
#define QCOW2_OFLAG_ZERO	1ull
#define QCOW2_OFFSET_MASK	0x00fffffffffffe00ull

#define QCOW2_MIN_CLUSTER_BITS	9
#define QCOW2_MAX_CLUSTER_BITS	21
#define QCOW2_MAX_L1_BYTES	(32u << 20)	/* QEMU's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_RT_BYTES	(8u << 20)	/* QEMU's QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_BACKING_NAME	1023u
#define QCOW2_MAX_BACKING_FMT	15u

#define QCOW2_DIO_ALIGN		4096u	/* covers 512 B and 4 KiB logical blocks */

struct qcow2_range {
	uint64_t start, len;	/* in clusters */
};

struct qcow2_image {
	int fd;
	int dfd;			/* same file, O_DIRECT, for data; or -1 */
	char *path;
	int failed;			/* sticky -errno after an I/O error */
	char err[320];

	unsigned cluster_bits;
	uint32_t cs;
	uint64_t size;			/* virtual size, bytes */
	unsigned refcount_order;
	uint8_t hdr[QCOW2_HDR_V3_LEN];	/* header fields as on disk */

	uint32_t l1_size;		/* entries */
	uint64_t l1_off;
	uint64_t *l1;			/* L2 host offsets, flags stripped */
	uint64_t **l2;			/* resident L2 tables (BE), per L1 index */

	uint32_t *ring;			/* L1 indexes of resident L2 tables */
	size_t ring_cap, ring_n, ring_hand;

	uint8_t *abuf;			/* pending appended clusters */
	size_t abuf_cap, abuf_len;
	uint64_t end;			/* next free host cluster */

	struct qcow2_range *holes;	/* free clusters below end, sorted */
	size_t nholes;

	char *partial;			/* partial-backup record, or NULL */
	struct qcow2_sums_writer *sums;	/* checksum record, or NULL */
};

static inline uint16_t q_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t q_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t q_get64(const uint8_t *p)
{
	return (uint64_t)q_get32(p) << 32 | q_get32(p + 4);
}

static inline void q_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void q_put64(uint8_t *p, uint64_t v)
{
	q_put32(p, (uint32_t)(v >> 32));
	q_put32(p + 4, (uint32_t)v);
}

/* qcow2.c */
__attribute__((format(printf, 4, 5)))
int qcow2_seterr(char *err, size_t errlen, int rc, const char *fmt, ...);

/* qcow2_seterr() of "PATH: <fmt's message>". */
__attribute__((format(printf, 5, 0)))
int qcow2_vseterr_at(char *err, size_t errlen, int rc, const char *path, const char *fmt,
		     va_list ap);

/*
 * Record an I/O error: the image is unusable from now on.  Returns the
 * first error recorded.
 */
int qcow2_fail(struct qcow2_image *img, int rc, const char *what);

/* Allocate the in-memory tables of img once its geometry is known. */
int qcow2_image_alloc_tables(struct qcow2_image *img);
void qcow2_image_free(struct qcow2_image *img);

/* L2 entries per table and L1 entries needed for the virtual size. */
static inline uint64_t qcow2_l2_entries(const struct qcow2_image *img)
{
	return img->cs / 8;
}

uint64_t qcow2_l1_needed(uint64_t size, unsigned cluster_bits);

/* qcow2-io.c */
struct iovec;

/* Whole reads (past EOF reads as zero) and writes; 0 or -errno. */
int qcow2_pread_all(int fd, void *buf, size_t len, uint64_t off);
int qcow2_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/*
 * Open img->path a second time with O_DIRECT for the appended data (after
 * img->fd is set); on any failure img->dfd stays -1 and all I/O is buffered.
 */
void qcow2_open_direct(struct qcow2_image *img);
void qcow2_close_direct(struct qcow2_image *img);

/* Allocate the append buffer (img->cs must be set). */
int qcow2_abuf_alloc(struct qcow2_image *img);

/* Write out the append buffer, whose clusters end at img->end. */
int qcow2_flush_abuf(struct qcow2_image *img);

/* Flush the append buffer if it holds part of host range [off, off+len). */
int qcow2_flush_abuf_over(struct qcow2_image *img, uint64_t off, uint64_t len);

/*
 * Append one cluster at img->end through the buffer: len bytes of data
 * padded with zeros, or zeros if data is NULL.  Its host offset goes to
 * *host.
 */
int qcow2_append_cluster(struct qcow2_image *img, const void *data,
			 size_t len, uint64_t *host);

/*
 * Write iov (cnt buffers, whole clusters) at img->end with O_DIRECT, after
 * flushing the buffer; *host is where it went.  The caller moves img->end.
 * 1 if the file refuses O_DIRECT (the caller copies instead).
 */
int qcow2_append_direct(struct qcow2_image *img, struct iovec *iov, int cnt,
			uint64_t *host);

/* qcow2-cache.c */

/* Allocate the per-L1-entry table pointers and the ring, default size. */
int qcow2_l2_cache_alloc(struct qcow2_image *img);

/*
 * The resident L2 table (big-endian entries) for L1 index l1i, read from
 * the file or, with alloc, made new at the file's end.  *out is NULL if the
 * table is unallocated and !alloc.
 */
int qcow2_get_l2(struct qcow2_image *img, uint32_t l1i, bool alloc, uint64_t **out);

/* Write every resident table to the file. */
int qcow2_l2_cache_flush(struct qcow2_image *img);
void qcow2_l2_cache_free(struct qcow2_image *img);

/* qcow2-refcount.c */

/*
 * Place the refcount blocks and table (holes first, then past img->end,
 * which moves), write them, and give the table's offset and size in
 * clusters for the header.
 */
int qcow2_write_refcounts(struct qcow2_image *img, uint64_t *rt_off,
			  uint64_t *rt_clusters);

/* qcow2-open.c */

/*
 * Open path with flags (O_CLOEXEC added): a regular file at least as long
 * as a v3 header.  *fd (-1 on failure) and *fsize; 0 or -errno, described.
 */
int qcow2_open_file(const char *path, int flags, int *fd, uint64_t *fsize, char *err,
		    size_t errlen);

/*
 * What is wrong with the fixed header h (QCOW2_HDR_V3_LEN bytes) for us:
 * 0, or -errno with the reason (without the path) in msg.  With
 * incomplete_ok, the corrupt and dirty bits are accepted.
 */
int qcow2_header_problem(const uint8_t *h, bool incomplete_ok, char *msg, size_t len);

/* The same for the header cluster hc (cs bytes): length, backing name, extensions. */
int qcow2_header_cluster_problem(const uint8_t *hc, uint32_t cs, char *msg, size_t len);

/* qcow2-partial.c */

/*
 * Rewrite the extension area of the header cluster of fd (cluster size cs)
 * with the partial-backup record text added (replacing any earlier one),
 * moving the backing file name behind it: its new offset is also put in
 * hdr, the caller's copy of the fixed header.  The other fixed header fields
 * stay as they are on disk.  -ENOSPC if it does not fit in the cluster.
 */
int qcow2_put_partial_record(int fd, uint32_t cs, uint8_t *hdr, const char *text);

/*
 * Walk the extensions of header cluster h (cs bytes): visit is called for
 * each one before the end marker.  0, or -EINVAL for a malformed list.
 */
int qcow2_walk_extensions(const uint8_t *h, uint32_t cs,
			  void (*visit)(void *arg, uint32_t type, const uint8_t *data, uint32_t len),
			  void *arg);

/* qcow2-sums.c */

/* Record the checksums of the data clusters [off, off + len) from p (no-op without a record). */
int qcow2_sums_add(struct qcow2_image *img, uint64_t off, const uint8_t *p, uint64_t len);

/*
 * Write the record out with its header: state complete or not, the
 * count, the image's file size (final: call after the refcounts), fsync.
 */
int qcow2_sums_finish(struct qcow2_image *img, bool complete);

/* Let the record go (remove: delete its file too). */
void qcow2_sums_close(struct qcow2_image *img, bool remove);

#endif
