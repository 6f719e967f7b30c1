// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 v3 image writer: create, write, close.
 *
 * Host layout of an image we create (cluster numbers):
 *   0       header, extensions, backing file name
 *   1       refcount table while writing (all zero: marks the image
 *           incomplete); reused for the final table if it fits
 *   2..     L1 table
 *   then    data clusters and L2 tables, appended in the order written
 *   last    refcount blocks and table, written by qcow2_close()
 *
 * All clusters in [0, end) are in use (refcount 1) except the ranges in
 * img->holes; everything at or above end is free.  Refcounts are therefore
 * not tracked per cluster while writing: they are generated at close.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qcow2.h"
#include "qcow2-internal.h"

#define ABUF_BYTES	(8u << 20)
#define L2_CACHE_BYTES	(32u << 20)
#define MIN_L2_TABLES	4
#define DIO_ALIGN	4096u	/* covers 512 B and 4 KiB logical blocks */
/* data writes at least this big go from the caller's buffer to the disk */
#ifndef QCOW2_DIRECT_MIN
#define QCOW2_DIRECT_MIN (256u << 10)
#endif

int qcow2_seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int qcow2_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {	/* past EOF reads as zero */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* pwritev until done; -errno on failure. */
static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt) {
		ssize_t n = pwritev(fd, iov, cnt, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int qcow2_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return len ? pwritev_all(fd, &iov, 1, off) : 0;
}

uint64_t qcow2_l1_needed(uint64_t size, unsigned cluster_bits)
{
	uint64_t clusters = (size + (1ull << cluster_bits) - 1) >> cluster_bits;
	uint64_t l2e = 1ull << (cluster_bits - 3);

	return (clusters + l2e - 1) / l2e;
}

int qcow2_image_alloc_tables(struct qcow2_image *img)
{
	img->l1 = calloc(img->l1_size ? img->l1_size : 1, sizeof(*img->l1));
	img->l2 = calloc(img->l1_size ? img->l1_size : 1, sizeof(*img->l2));
	img->abuf_cap = ABUF_BYTES > img->cs ? ABUF_BYTES : img->cs;
	/* aligned for O_DIRECT; both sizes are multiples of DIO_ALIGN */
	img->abuf = aligned_alloc(DIO_ALIGN, img->abuf_cap);
	if (!img->l1 || !img->l2 || !img->abuf)
		return -ENOMEM;
	qcow2_set_l2_cache(img, L2_CACHE_BYTES);
	return img->ring ? 0 : -ENOMEM;
}

void qcow2_image_free(struct qcow2_image *img)
{
	if (!img)
		return;
	if (img->l2) {
		for (size_t i = 0; i < img->ring_n; i++)
			free(img->l2[img->ring[i]]);
	}
	free(img->l2);
	free(img->l1);
	free(img->ring);
	free(img->abuf);
	free(img->holes);
	free(img->partial);
	free(img->path);
	free(img);
}

uint32_t qcow2_cluster_size(const struct qcow2_image *img)
{
	return img->cs;
}

uint64_t qcow2_virtual_size(const struct qcow2_image *img)
{
	return img->size;
}

const char *qcow2_errmsg(const struct qcow2_image *img)
{
	return img->err;
}

/* Record an I/O error: the image is unusable from now on. */
static int fail(struct qcow2_image *img, int rc, const char *what)
{
	if (!img->failed) {
		img->failed = rc;
		qcow2_seterr(img->err, sizeof(img->err), rc, "%s: %s: %s%s",
			     img->path, what, strerror(-rc),
			     rc == -ENOSPC ? " (free space on the backup target)" : "");
	}
	return img->failed;
}

void qcow2_open_direct(struct qcow2_image *img)
{
	struct stat a, b;
	int fd = open(img->path, O_WRONLY | O_DIRECT | O_CLOEXEC);

	img->dfd = -1;
	if (fd < 0)
		return;
	/* the same file, not one renamed into its place meanwhile */
	if (fstat(fd, &a) < 0 || fstat(img->fd, &b) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(fd);
		return;
	}
	img->dfd = fd;
}

static void close_direct(struct qcow2_image *img)
{
	if (img->dfd >= 0)
		close(img->dfd);
	img->dfd = -1;
}

/*
 * Write the buffer with O_DIRECT when it is aligned: the data goes from
 * abuf to the disk without a copy into the page cache, nothing is left
 * dirty for the final fsync, and backups do not evict the host's cache.
 * Returns 1 if the caller must write it through the page cache instead.
 */
static int write_direct(struct qcow2_image *img, uint64_t off)
{
	int rc;

	if (img->dfd < 0 || ((off | img->abuf_len) & (DIO_ALIGN - 1)))
		return 1;
	rc = qcow2_pwrite_all(img->dfd, img->abuf, img->abuf_len, off);
	if (rc == -EINVAL || rc == -EOPNOTSUPP) {
		/* another alignment, or no O_DIRECT writes: stay buffered */
		close_direct(img);
		return 1;
	}
	return rc;
}

static int flush_abuf(struct qcow2_image *img)
{
	uint64_t off;
	int rc;

	if (!img->abuf_len)
		return 0;
	off = (img->end << img->cluster_bits) - img->abuf_len;
	rc = write_direct(img, off);
	if (rc == 0) {
		img->abuf_len = 0;
		return 0;
	}
	if (rc < 0)
		return fail(img, rc, "writing data");
	rc = qcow2_pwrite_all(img->fd, img->abuf, img->abuf_len, off);
	if (rc)
		return fail(img, rc, "writing data");
	/*
	 * Start writeback now so that the disk works while the caller reads
	 * the next data, and the final fsync has little left to do.
	 */
	sync_file_range(img->fd, (off64_t)off, (off64_t)img->abuf_len,
			SYNC_FILE_RANGE_WRITE);
	img->abuf_len = 0;
	return 0;
}

/* Append one cluster (data, padded with zeros; or zeros if data is NULL). */
static int append_cluster(struct qcow2_image *img, const void *data,
			  size_t len, uint64_t *host)
{
	int rc;

	if (img->abuf_len + img->cs > img->abuf_cap) {
		rc = flush_abuf(img);
		if (rc)
			return rc;
	}
	if (data)
		memcpy(img->abuf + img->abuf_len, data, len);
	else
		len = 0;
	memset(img->abuf + img->abuf_len + len, 0, img->cs - len);
	img->abuf_len += img->cs;
	*host = img->end << img->cluster_bits;
	img->end++;
	return 0;
}

/* Does host range [off, off+len) overlap clusters still in abuf? */
static bool in_abuf(const struct qcow2_image *img, uint64_t off, uint64_t len)
{
	uint64_t start = (img->end << img->cluster_bits) - img->abuf_len;

	return img->abuf_len && off + len > start;
}

static int write_l2(struct qcow2_image *img, uint32_t l1i)
{
	uint64_t off = img->l1[l1i];
	int rc;

	if (in_abuf(img, off, img->cs)) {
		rc = flush_abuf(img);
		if (rc)
			return rc;
	}
	rc = qcow2_pwrite_all(img->fd, img->l2[l1i], img->cs, off);
	return rc ? fail(img, rc, "writing an L2 table") : 0;
}

void qcow2_set_l2_cache(struct qcow2_image *img, size_t bytes)
{
	size_t cap = bytes / img->cs;
	uint32_t *ring;

	if (cap < MIN_L2_TABLES)
		cap = MIN_L2_TABLES;
	if (img->l1_size && cap > img->l1_size)
		cap = img->l1_size;
	if (img->failed)
		return;
	/* shrinking: write back the tables that no longer fit */
	while (img->ring_n > cap) {
		uint32_t victim = img->ring[--img->ring_n];

		if (write_l2(img, victim))
			return;
		free(img->l2[victim]);
		img->l2[victim] = NULL;
	}
	ring = realloc(img->ring, cap * sizeof(*ring));
	if (!ring)
		return;
	img->ring = ring;
	img->ring_cap = cap;
	img->ring_hand = 0;
}

/*
 * Return the resident L2 table for l1i, loading it from disk or (with
 * alloc) allocating a new one.  *out is NULL if unallocated and !alloc.
 */
static int get_l2(struct qcow2_image *img, uint32_t l1i, bool alloc,
		  uint64_t **out)
{
	uint64_t *t;
	int rc;

	*out = img->l2[l1i];
	if (*out)
		return 0;
	if (!img->l1[l1i] && !alloc)
		return 0;
	if (img->ring_n == img->ring_cap) {
		uint32_t victim = img->ring[img->ring_hand];

		rc = write_l2(img, victim);
		if (rc)
			return rc;
		free(img->l2[victim]);
		img->l2[victim] = NULL;
		img->ring[img->ring_hand] = l1i;
		img->ring_hand = (img->ring_hand + 1) % img->ring_cap;
	} else {
		img->ring[img->ring_n++] = l1i;
	}
	t = calloc(1, img->cs);
	if (!t) {
		/* keep ring consistent: drop the slot we just claimed */
		for (size_t i = 0; i < img->ring_n; i++) {
			if (img->ring[i] == l1i) {
				img->ring[i] = img->ring[--img->ring_n];
				break;
			}
		}
		img->ring_hand = 0;
		return fail(img, -ENOMEM, "allocating an L2 table");
	}
	img->l2[l1i] = t;
	if (img->l1[l1i]) {
		if (in_abuf(img, img->l1[l1i], img->cs)) {
			rc = flush_abuf(img);
			if (rc)
				return rc;
		}
		rc = qcow2_pread_all(img->fd, t, img->cs, img->l1[l1i]);
		if (rc)
			return fail(img, rc, "reading an L2 table");
	} else {
		rc = append_cluster(img, NULL, 0, &img->l1[l1i]);
		if (rc)
			return rc;
	}
	*out = t;
	return 0;
}

static int check_range(struct qcow2_image *img, uint64_t off, uint64_t len)
{
	if (img->failed)
		return img->failed;
	if (off & (img->cs - 1))
		return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
				    "guest offset %llu is not aligned to the cluster size %u",
				    (unsigned long long)off, img->cs);
	if (!len || off >= img->size || len > img->size - off)
		return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
				    "range %llu+%llu is empty or beyond the virtual size %llu",
				    (unsigned long long)off, (unsigned long long)len,
				    (unsigned long long)img->size);
	if ((len & (img->cs - 1)) && off + len != img->size)
		return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
				    "length %llu is not a multiple of the cluster size %u",
				    (unsigned long long)len, img->cs);
	return 0;
}

/* Fail with -EINVAL, before any change, if a cluster was written already. */
static int check_unwritten(struct qcow2_image *img, uint64_t off, uint64_t len)
{
	uint64_t c = off >> img->cluster_bits;
	uint64_t last = (off + len - 1) >> img->cluster_bits;
	uint64_t l2e = qcow2_l2_entries(img);

	while (c <= last) {
		uint32_t l1i = (uint32_t)(c / l2e);
		uint64_t *t;
		int rc;

		if (!img->l1[l1i]) {
			c = (uint64_t)(l1i + 1) * l2e;
			continue;
		}
		rc = get_l2(img, l1i, false, &t);
		if (rc)
			return rc;
		for (; c <= last && c / l2e == l1i; c++) {
			if (t[c % l2e])
				return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
						    "guest cluster at offset %llu was already written",
						    (unsigned long long)(c << img->cluster_bits));
		}
	}
	return 0;
}

/*
 * Append iov to the file with O_DIRECT, after the buffer (flushed first),
 * at *host. 1: the file refuses O_DIRECT, the caller copies instead.
 */
static int append_direct(struct qcow2_image *img, struct iovec *iov, int cnt, uint64_t *host)
{
	int rc = flush_abuf(img);

	if (rc)
		return rc;
	*host = img->end << img->cluster_bits;
	rc = pwritev_all(img->dfd, iov, cnt, *host);
	if (rc == -EINVAL || rc == -EOPNOTSUPP) {
		close_direct(img);
		return 1;
	}
	return rc ? fail(img, rc, "writing data") : 0;
}

/*
 * Write n whole clusters from the caller's buffer straight to the disk with
 * O_DIRECT at the end of the file, and map them in t from index i.  The
 * buffer is flushed first so that these clusters follow it on disk.
 * Returns 1 if the caller must copy them through the buffer instead.
 */
static int write_direct_from(struct qcow2_image *img, const uint8_t *p,
			     size_t n, uint64_t *t, uint64_t i)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };
	uint64_t host;
	int rc;

	if (img->dfd < 0 || (((uintptr_t)p | n | img->cs) & (DIO_ALIGN - 1)))
		return 1;
	rc = append_direct(img, &iov, 1, &host);
	if (rc)
		return rc;
	for (size_t k = 0; k < n >> img->cluster_bits; k++)
		t[i + k] = htobe64((host + ((uint64_t)k << img->cluster_bits)) |
				   QCOW2_OFLAG_COPIED);
	img->end += n >> img->cluster_bits;
	return 0;
}

int qcow2_write_cluster(struct qcow2_image *img, uint64_t off,
			const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t l2e = qcow2_l2_entries(img);
	bool direct = len >= QCOW2_DIRECT_MIN;
	int rc = check_range(img, off, len);

	if (!rc)
		rc = check_unwritten(img, off, len);
	while (!rc && len) {
		uint64_t c = off >> img->cluster_bits;
		size_t n = len < img->cs ? len : img->cs;
		uint64_t *t, host;

		rc = get_l2(img, (uint32_t)(c / l2e), true, &t);
		if (rc)
			break;
		/* the whole clusters of this L2 table's part, without a copy */
		if (direct && len >= img->cs) {
			uint64_t room = (l2e - c % l2e) << img->cluster_bits;
			size_t m = len & ~(size_t)(img->cs - 1);

			if (m > room)
				m = (size_t)room;
			rc = write_direct_from(img, p, m, t, c % l2e);
			if (rc < 0)
				break;
			if (rc == 0) {
				p += m;
				off += m;
				len -= m;
				continue;
			}
			rc = 0;
		}
		rc = append_cluster(img, p, n, &host);
		if (rc)
			break;
		t[c % l2e] = htobe64(host | QCOW2_OFLAG_COPIED);
		p += n;
		off += n;
		len -= n;
	}
	return rc;
}

/* Is cluster i of a qcow2_write_sparse() range to be written as zero? */
static bool sparse_zero(const bool *zero, uint64_t i)
{
	return zero && zero[i];
}

/* qcow2_write_sparse() one run at a time (no O_DIRECT from the buffer). */
static int write_sparse_runs(struct qcow2_image *img, uint64_t off,
			     const uint8_t *p, size_t len, const bool *zero)
{
	uint64_t i = 0;
	int rc = 0;

	while (!rc && len) {
		bool z = sparse_zero(zero, i);
		size_t n = 0;

		while (n < len && sparse_zero(zero, i) == z) {
			n += len - n < img->cs ? len - n : img->cs;
			i++;
		}
		rc = z ? qcow2_write_zero(img, off, n) : qcow2_write_cluster(img, off, p, n);
		off += n;
		p += n;
		len -= n;
	}
	return rc;
}

#define IOV_BATCH 64	/* buffers per O_DIRECT pwritev */
#define SPARSE_PIECES 16

/*
 * The whole clusters of the range as pieces of at most IOV_BATCH data runs
 * each (one pwritev), several at a time; the partial last cluster (the
 * disk's end) is copied.
 */
int qcow2_write_sparse(struct qcow2_image *img, uint64_t off, const void *buf,
		       size_t len, const bool *zero)
{
	struct qcow2_piece pc[SPARSE_PIECES];
	const uint8_t *p = buf;
	size_t whole = len & ~(size_t)(img->cs - 1), np = 0;
	uint64_t k, nk = whole >> img->cluster_bits, start = 0, runs = 0;
	int rc = check_range(img, off, len);

	if (!rc)
		rc = check_unwritten(img, off, len);
	for (k = 0; !rc && k <= nk; k++) {
		bool new_run = k < nk && !sparse_zero(zero, k) && (k == 0 || sparse_zero(zero, k - 1));

		if (k == nk || (new_run && runs == IOV_BATCH)) {
			if (k > start)
				pc[np++] = (struct qcow2_piece){
					off + (start << img->cluster_bits), p + (start << img->cluster_bits),
					(size_t)((k - start) << img->cluster_bits), zero ? zero + start : NULL };
			start = k;
			runs = 0;
			if (np && (np == SPARSE_PIECES || k == nk)) {
				rc = qcow2_write_pieces(img, pc, np);
				np = 0;
			}
		}
		runs += new_run;
	}
	if (!rc && whole < len)
		rc = write_sparse_runs(img, off + whole, p + whole, len - whole,
				       zero ? zero + nk : NULL);
	return rc;
}

/* Is data cluster k of piece q a whole, aligned cluster for O_DIRECT? */
static bool piece_direct(const struct qcow2_image *img, const struct qcow2_piece *q)
{
	return !((q->len | (uintptr_t)q->buf) & (DIO_ALIGN - 1)) && !(q->len & (img->cs - 1));
}

/*
 * The data clusters of pieces [from, n) gathered into one pwritev of at most
 * IOV_BATCH buffers at the end of the file: *next is the first piece not
 * taken, *clusters how many data clusters were written.
 */
static int append_pieces(struct qcow2_image *img, const struct qcow2_piece *p, size_t from,
			 size_t n, size_t *next, uint64_t *clusters)
{
	struct iovec iov[IOV_BATCH];
	uint64_t host, cl = 0;
	size_t i;
	int cnt = 0, rc;

	for (i = from; i < n; i++) {
		const struct qcow2_piece *q = &p[i];
		uint64_t k, nk = q->len >> img->cluster_bits, need = 0;

		/* a piece is taken whole: count the buffers it may need */
		for (k = 0; k < nk; k++)
			if (!sparse_zero(q->zero, k) && (k == 0 || sparse_zero(q->zero, k - 1)))
				need++;
		if (cnt && cnt + need > IOV_BATCH)
			break;
		for (k = 0; k < nk; k++) {
			const uint8_t *b = (const uint8_t *)q->buf + (k << img->cluster_bits);

			if (sparse_zero(q->zero, k))
				continue;
			cl++;
			if (cnt && (uint8_t *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == b) {
				iov[cnt - 1].iov_len += img->cs;
			} else {	/* need counted: cnt < IOV_BATCH */
				iov[cnt].iov_base = (void *)b;
				iov[cnt++].iov_len = img->cs;
			}
		}
	}
	*next = i;
	*clusters = cl;
	if (!cnt)
		return 0;
	rc = append_direct(img, iov, cnt, &host);
	if (!rc)
		img->end += cl;
	return rc;
}

/* Map the data clusters of pieces [from, to), written from host on. */
static int map_pieces(struct qcow2_image *img, const struct qcow2_piece *p, size_t from,
		      size_t to, uint64_t host)
{
	uint64_t l2e = qcow2_l2_entries(img);
	size_t i;

	for (i = from; i < to; i++) {
		uint64_t c = p[i].off >> img->cluster_bits, k, nk = p[i].len >> img->cluster_bits;
		uint64_t *t = NULL;

		for (k = 0; k < nk; k++, c++) {
			uint64_t e = QCOW2_OFLAG_ZERO;
			int rc;

			if (!t || c % l2e == 0) {
				rc = get_l2(img, (uint32_t)(c / l2e), true, &t);
				if (rc)
					return rc;
			}
			if (!sparse_zero(p[i].zero, k)) {
				e = host | QCOW2_OFLAG_COPIED;
				host += img->cs;
			}
			t[c % l2e] = htobe64(e);
		}
	}
	return 0;
}

int qcow2_write_pieces(struct qcow2_image *img, const struct qcow2_piece *p, size_t n)
{
	uint64_t data = 0;
	bool direct = img->dfd >= 0;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		uint64_t pos, k = 0, runs = 0;

		if (i && p[i].off < p[i - 1].off + p[i - 1].len)
			return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
					    "pieces must be in increasing order without overlap (%llu after %llu+%llu)",
					    (unsigned long long)p[i].off, (unsigned long long)p[i - 1].off,
					    (unsigned long long)p[i - 1].len);
		rc = check_range(img, p[i].off, p[i].len);
		if (!rc)
			rc = check_unwritten(img, p[i].off, p[i].len);
		if (rc)
			return rc;
		direct = direct && piece_direct(img, &p[i]);
		for (pos = 0; pos < p[i].len; pos += img->cs, k++) {
			if (sparse_zero(p[i].zero, k))
				continue;
			data += p[i].len - pos < img->cs ? p[i].len - pos : img->cs;
			runs += k == 0 || sparse_zero(p[i].zero, k - 1);
		}
		/* one piece must fit one pwritev */
		direct = direct && runs <= IOV_BATCH;
	}
	if (!direct || data < QCOW2_DIRECT_MIN) {
		for (i = 0, rc = 0; i < n && !rc; i++)
			rc = write_sparse_runs(img, p[i].off, p[i].buf, p[i].len, p[i].zero);
		return rc;
	}
	/*
	 * L2 tables are fetched only after the data is written: a table
	 * allocated now goes after the data in the file, and an evicted one
	 * cannot be held across pieces.
	 */
	for (i = 0; i < n;) {
		uint64_t host = img->end << img->cluster_bits, cl;
		size_t next;

		rc = append_pieces(img, p, i, n, &next, &cl);
		if (rc == 1)	/* the file refused O_DIRECT: copy the rest */
			return qcow2_write_pieces(img, p + i, n - i);
		if (!rc)
			rc = map_pieces(img, p, i, next, host);
		if (rc)
			return rc;
		i = next;
	}
	return 0;
}

int qcow2_write_zero(struct qcow2_image *img, uint64_t off, uint64_t len)
{
	uint64_t l2e = qcow2_l2_entries(img);
	uint64_t c, last;
	int rc = check_range(img, off, len);

	if (!rc)
		rc = check_unwritten(img, off, len);
	if (rc)
		return rc;
	c = off >> img->cluster_bits;
	last = (off + len - 1) >> img->cluster_bits;
	while (c <= last) {
		uint32_t l1i = (uint32_t)(c / l2e);
		uint64_t *t;

		rc = get_l2(img, l1i, true, &t);
		if (rc)
			return rc;
		for (; c <= last && c / l2e == l1i; c++)
			t[c % l2e] = htobe64(QCOW2_OFLAG_ZERO);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* create                                                              */

static const struct {
	uint8_t type, bit;
	const char *name;
} feature_names[] = {
	{ 0, 0, "dirty bit" },
	{ 0, 1, "corrupt bit" },
	{ 0, 2, "external data file" },
	{ 0, 3, "compression type" },
	{ 0, 4, "extended L2 entries" },
	{ 1, 0, "lazy refcounts" },
	{ 2, 0, "bitmaps" },
	{ 2, 1, "raw external data" },
};

#define NFEATURES (sizeof(feature_names) / sizeof(feature_names[0]))

static size_t ext_len(size_t datalen)
{
	return 8 + ((datalen + 7) & ~(size_t)7);
}

/* Build cluster 0 in buf (cs bytes, zeroed).  Returns 0 or -errno. */
static int build_header(struct qcow2_image *img, uint8_t *buf,
			const char *backing, const char *fmt,
			char *err, size_t errlen)
{
	size_t blen = backing ? strlen(backing) : 0;
	size_t flen = fmt ? strlen(fmt) : 0;
	size_t need = QCOW2_HDR_LEN + (fmt ? ext_len(flen) : 0) + 8 + blen;
	bool features = need + ext_len(NFEATURES * 48) <= img->cs;
	size_t pos = QCOW2_HDR_LEN;

	if (need > img->cs)
		return qcow2_seterr(err, errlen, -ENAMETOOLONG,
				    "backing file name of %zu bytes does not fit in the %u-byte header cluster; use a bigger cluster size or a shorter name",
				    blen, img->cs);
	q_put32(buf + QH_MAGIC, QCOW2_MAGIC);
	q_put32(buf + QH_VERSION, 3);
	q_put32(buf + QH_CLUSTER_BITS, img->cluster_bits);
	q_put64(buf + QH_SIZE, img->size);
	q_put32(buf + QH_L1_SIZE, img->l1_size);
	q_put64(buf + QH_L1_OFF, img->l1_off);
	q_put64(buf + QH_RT_OFF, img->cs);
	q_put32(buf + QH_RT_CLUSTERS, 1);
	q_put64(buf + QH_INCOMPAT, QCOW2_INCOMPAT_CORRUPT);
	q_put32(buf + QH_REFCOUNT_ORDER, img->refcount_order);
	q_put32(buf + QH_HDR_LEN, QCOW2_HDR_LEN);
	/* byte 104: compression type 0 (zlib) and padding, already zero */
	if (fmt) {
		q_put32(buf + pos, QCOW2_EXT_BACKING_FMT);
		q_put32(buf + pos + 4, (uint32_t)flen);
		memcpy(buf + pos + 8, fmt, flen);
		pos += ext_len(flen);
	}
	if (features) {
		q_put32(buf + pos, QCOW2_EXT_FEATURES);
		q_put32(buf + pos + 4, NFEATURES * 48);
		for (size_t i = 0; i < NFEATURES; i++) {
			uint8_t *e = buf + pos + 8 + i * 48;

			e[0] = feature_names[i].type;
			e[1] = feature_names[i].bit;
			memcpy(e + 2, feature_names[i].name,
			       strlen(feature_names[i].name));
		}
		pos += ext_len(NFEATURES * 48);
	}
	pos += 8;	/* end-of-extensions marker, zero */
	if (backing) {
		memcpy(buf + pos, backing, blen);
		q_put64(buf + QH_BACKING_OFF, pos);
		q_put32(buf + QH_BACKING_SIZE, (uint32_t)blen);
	}
	memcpy(img->hdr, buf, sizeof(img->hdr));
	return 0;
}

static int validate_create(const struct qcow2_create_opts *o, unsigned *bits,
			   char *err, size_t errlen)
{
	uint32_t cs = o->cluster_size ? o->cluster_size : 65536;
	unsigned b = 0;

	while (b < QCOW2_MAX_CLUSTER_BITS && (1u << b) < cs)
		b++;
	if ((1u << b) != cs || b < QCOW2_MIN_CLUSTER_BITS)
		return qcow2_seterr(err, errlen, -EINVAL,
				    "cluster size %u is not a power of two between 512 and 2097152",
				    cs);
	if (!o->virtual_size || (o->virtual_size & 511))
		return qcow2_seterr(err, errlen, -EINVAL,
				    "virtual size %llu is not a positive multiple of 512 bytes",
				    (unsigned long long)o->virtual_size);
	if (o->virtual_size > (1ull << 56) ||
	    qcow2_l1_needed(o->virtual_size, b) * 8 > QCOW2_MAX_L1_BYTES)
		return qcow2_seterr(err, errlen, -EFBIG,
				    "virtual size %llu is too big for %u-byte clusters (L1 table over 32 MiB); use a bigger cluster size",
				    (unsigned long long)o->virtual_size, cs);
	if (o->backing_file &&
	    (!*o->backing_file || strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME))
		return qcow2_seterr(err, errlen, -ENAMETOOLONG,
				    "backing file name must be 1 to %u bytes long",
				    QCOW2_MAX_BACKING_NAME);
	if (o->backing_fmt && !o->backing_file)
		return qcow2_seterr(err, errlen, -EINVAL,
				    "backing format given without a backing file");
	if (o->backing_fmt &&
	    (!*o->backing_fmt || strlen(o->backing_fmt) > QCOW2_MAX_BACKING_FMT))
		return qcow2_seterr(err, errlen, -EINVAL,
				    "backing format name must be 1 to %u bytes long",
				    QCOW2_MAX_BACKING_FMT);
	*bits = b;
	return 0;
}

int qcow2_create(const char *path, const struct qcow2_create_opts *o,
		 struct qcow2_image **out, char *err, size_t errlen)
{
	struct qcow2_image *img;
	uint8_t *hdr = NULL;
	uint64_t l1_clusters;
	unsigned bits = 0;
	int rc;

	*out = NULL;
	rc = validate_create(o, &bits, err, errlen);
	if (rc)
		return rc;
	img = calloc(1, sizeof(*img));
	if (!img || !(img->path = strdup(path))) {
		free(img);
		return qcow2_seterr(err, errlen, -ENOMEM, "out of memory");
	}
	img->fd = -1;
	img->dfd = -1;
	img->cluster_bits = bits;
	img->cs = 1u << bits;
	img->size = o->virtual_size;
	img->refcount_order = 4;
	img->l1_size = (uint32_t)qcow2_l1_needed(img->size, bits);
	img->l1_off = 2ull << bits;
	l1_clusters = ((uint64_t)img->l1_size * 8 + img->cs - 1) >> bits;
	img->end = 2 + l1_clusters;
	img->holes = malloc(sizeof(*img->holes));
	hdr = calloc(1, img->cs);
	rc = (!img->holes || !hdr) ? -ENOMEM : qcow2_image_alloc_tables(img);
	if (rc) {
		qcow2_seterr(err, errlen, rc, "out of memory");
		goto fail;
	}
	img->holes[0] = (struct qcow2_range){ 1, 1 };
	img->nholes = 1;
	rc = build_header(img, hdr, o->backing_file,
			  o->backing_file ? (o->backing_fmt ? o->backing_fmt : "qcow2") : NULL,
			  err, errlen);
	if (rc)
		goto fail;

	img->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (img->fd < 0) {
		rc = -errno;
		qcow2_seterr(err, errlen, rc, "cannot create %s: %s%s", path,
			     strerror(errno),
			     errno == EEXIST ? " (refusing to overwrite an existing file)" : "");
		goto fail;
	}
	/* reftable (zero) and L1 (zero) are left sparse until close */
	rc = qcow2_pwrite_all(img->fd, hdr, img->cs, 0);
	if (!rc && ftruncate(img->fd, (off_t)(img->end << bits)) < 0)
		rc = -errno;
	if (rc) {
		qcow2_seterr(err, errlen, rc, "cannot write the header of %s: %s",
			     path, strerror(-rc));
		close(img->fd);
		img->fd = -1;
		unlink(path);
		goto fail;
	}
	free(hdr);
	qcow2_open_direct(img);
	*out = img;
	return 0;
fail:
	free(hdr);
	qcow2_image_free(img);
	return rc;
}

/* ------------------------------------------------------------------ */
/* close: L2, L1, refcounts, header                                    */

static bool in_holes(const struct qcow2_image *img, uint64_t c, size_t *hint)
{
	while (*hint < img->nholes &&
	       img->holes[*hint].start + img->holes[*hint].len <= c)
		(*hint)++;
	return *hint < img->nholes && img->holes[*hint].start <= c;
}

/* Take n contiguous clusters: first fit in a hole, else append at end. */
static uint64_t take_clusters(struct qcow2_range *h, size_t *nh, uint64_t *end,
			      uint64_t n)
{
	for (size_t i = 0; i < *nh; i++) {
		if (h[i].len >= n) {
			uint64_t s = h[i].start;

			h[i].start += n;
			h[i].len -= n;
			if (!h[i].len) {
				memmove(&h[i], &h[i + 1], (*nh - i - 1) * sizeof(*h));
				(*nh)--;
			}
			return s;
		}
	}
	*end += n;
	return *end - n;
}

static void set_refcount(uint8_t *blk, unsigned order, uint64_t i)
{
	if (order < 3) {
		unsigned w = 1u << order;

		blk[(i * w) / 8] |= (uint8_t)(1u << ((i * w) % 8));
	} else {
		unsigned bytes = 1u << (order - 3);

		blk[i * bytes + bytes - 1] = 1;
	}
}

/*
 * Place and write the refcount blocks and table.  Sets *rt_off and
 * *rt_clusters for the header.
 */
static int write_refcounts(struct qcow2_image *img, uint64_t *rt_off,
			   uint64_t *rt_clusters)
{
	uint64_t per_blk = (uint64_t)img->cs * 8 >> img->refcount_order;
	uint64_t nrb = (img->end + per_blk - 1) / per_blk, nrt = 1;
	struct qcow2_range *h = NULL;
	uint64_t *blk_at = NULL, rt = 0, end = 0;
	uint8_t *buf = NULL, *table = NULL;
	size_t nh = 0, hint = 0;
	int rc = -ENOMEM;

	for (;;) {
		uint64_t need_rb, need_rt;

		free(h);
		free(blk_at);
		h = malloc((img->nholes + 1) * sizeof(*h));
		blk_at = malloc(nrb * sizeof(*blk_at));
		if (!h || !blk_at)
			goto out;
		memcpy(h, img->holes, img->nholes * sizeof(*h));
		nh = img->nholes;
		end = img->end;
		rt = take_clusters(h, &nh, &end, nrt);
		for (uint64_t i = 0; i < nrb; i++)
			blk_at[i] = take_clusters(h, &nh, &end, 1);
		need_rb = (end + per_blk - 1) / per_blk;
		need_rt = (need_rb * 8 + img->cs - 1) >> img->cluster_bits;
		if (need_rb <= nrb && need_rt <= nrt)
			break;
		nrb = need_rb > nrb ? need_rb : nrb;
		nrt = need_rt > nrt ? need_rt : nrt;
	}
	if (nrt << img->cluster_bits > QCOW2_MAX_RT_BYTES) {
		rc = fail(img, -EFBIG, "refcount table would exceed 8 MiB");
		goto out;
	}
	/* commit the allocation */
	memcpy(img->holes, h, nh * sizeof(*h));
	img->nholes = nh;
	img->end = end;

	buf = malloc(img->cs);
	table = calloc(nrt, img->cs);
	if (!buf || !table)
		goto out;
	for (uint64_t b = 0; b < nrb; b++) {
		uint64_t first = b * per_blk;

		memset(buf, 0, img->cs);
		for (uint64_t i = 0; i < per_blk && first + i < img->end; i++) {
			if (!in_holes(img, first + i, &hint))
				set_refcount(buf, img->refcount_order, i);
		}
		rc = qcow2_pwrite_all(img->fd, buf, img->cs,
				      blk_at[b] << img->cluster_bits);
		if (rc) {
			rc = fail(img, rc, "writing refcount blocks");
			goto out;
		}
		q_put64(table + b * 8, blk_at[b] << img->cluster_bits);
	}
	rc = qcow2_pwrite_all(img->fd, table, nrt << img->cluster_bits,
			      rt << img->cluster_bits);
	if (rc) {
		rc = fail(img, rc, "writing the refcount table");
		goto out;
	}
	*rt_off = rt << img->cluster_bits;
	*rt_clusters = nrt;
out:
	if (rc == -ENOMEM)
		fail(img, rc, "allocating refcount structures");
	free(h);
	free(blk_at);
	free(buf);
	free(table);
	return rc;
}

static int write_l1(struct qcow2_image *img)
{
	size_t chunk = 65536 / 8;
	uint8_t *buf = malloc(chunk * 8);
	int rc = 0;

	if (!buf)
		return fail(img, -ENOMEM, "allocating the L1 buffer");
	for (uint32_t i = 0; i < img->l1_size && !rc; i += (uint32_t)chunk) {
		size_t n = img->l1_size - i < chunk ? img->l1_size - i : chunk;

		for (size_t j = 0; j < n; j++) {
			uint64_t e = img->l1[i + j];

			q_put64(buf + j * 8, e ? e | QCOW2_OFLAG_COPIED : 0);
		}
		rc = qcow2_pwrite_all(img->fd, buf, n * 8, img->l1_off + (uint64_t)i * 8);
	}
	free(buf);
	return rc ? fail(img, rc, "writing the L1 table") : 0;
}

static int sync_fd(struct qcow2_image *img)
{
	return fsync(img->fd) < 0 ? fail(img, -errno, "fsync") : 0;
}

static int finish(struct qcow2_image *img, bool complete)
{
	uint64_t rt_off = 0, rt_clusters = 0, incompat;
	int rc;

	rc = flush_abuf(img);
	for (size_t i = 0; !rc && i < img->ring_n; i++)
		rc = write_l2(img, img->ring[i]);
	if (!rc)
		rc = write_l1(img);
	if (!rc)
		rc = write_refcounts(img, &rt_off, &rt_clusters);
	if (!rc)
		rc = sync_fd(img);
	if (rc)
		return rc;
	/* the record is durable before the image is marked complete */
	if (complete && img->partial) {
		rc = qcow2_put_partial_record(img->fd, img->cs, img->hdr, img->partial);
		if (rc)
			return fail(img, rc, rc == -ENOSPC ?
				    "no room for the partial-backup record in the header cluster" :
				    "writing the partial-backup record");
		rc = sync_fd(img);
		if (rc)
			return rc;
	}
	incompat = q_get64(img->hdr + QH_INCOMPAT) & ~QCOW2_INCOMPAT_CORRUPT;
	if (!complete)
		incompat |= QCOW2_INCOMPAT_CORRUPT;
	q_put64(img->hdr + QH_INCOMPAT, incompat);
	q_put64(img->hdr + QH_AUTOCLEAR, 0);
	q_put64(img->hdr + QH_RT_OFF, rt_off);
	q_put32(img->hdr + QH_RT_CLUSTERS, (uint32_t)rt_clusters);
	rc = qcow2_pwrite_all(img->fd, img->hdr, sizeof(img->hdr), 0);
	if (rc)
		return fail(img, rc, "writing the header");
	return sync_fd(img);
}

int qcow2_set_partial(struct qcow2_image *img, const char *text)
{
	char *t = strndup(text, QCOW2_PARTIAL_MAX);

	if (!t)
		return -ENOMEM;
	free(img->partial);
	img->partial = t;
	return 0;
}

int qcow2_close(struct qcow2_image *img, bool complete, char *err,
		size_t errlen)
{
	int rc;

	if (!img)
		return qcow2_seterr(err, errlen, -EINVAL, "no image");
	rc = img->failed ? img->failed : finish(img, complete);
	close_direct(img);
	if (close(img->fd) < 0 && !rc)
		rc = fail(img, -errno, "close");
	if (rc && !img->err[0])
		fail(img, rc, "closing");
	if (rc)
		qcow2_seterr(err, errlen, rc, "%s", img->err);
	else
		qcow2_seterr(err, errlen, 0, "%s", "");
	qcow2_image_free(img);
	return rc;
}

void qcow2_abort_and_unlink(struct qcow2_image *img)
{
	if (!img)
		return;
	close_direct(img);
	close(img->fd);
	unlink(img->path);
	qcow2_image_free(img);
}
