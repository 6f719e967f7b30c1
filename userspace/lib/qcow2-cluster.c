// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: guest clusters to host clusters (QEMU's qcow2-cluster.c).
 *
 * The one place that decides where a guest write lands and records it in
 * the L2 tables.  Every range is checked whole (alignment, size, each
 * cluster written at most once) before anything changes, so a refused
 * write leaves the image as it was.  Data is appended in the order it is
 * given, not guest order: large aligned ranges go to the disk from the
 * caller's buffer (O_DIRECT, no copy), gathered across pieces into one
 * pwritev; small ones are copied through the append buffer.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>

#include "qcow2.h"
#include "qcow2-internal.h"

/* data writes at least this big go from the caller's buffer to the disk */
#ifndef QCOW2_DIRECT_MIN
#define QCOW2_DIRECT_MIN (256u << 10)
#endif

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
		rc = qcow2_get_l2(img, l1i, false, &t);
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

	if (img->dfd < 0 || (((uintptr_t)p | n | img->cs) & (QCOW2_DIO_ALIGN - 1)))
		return 1;
	rc = qcow2_append_direct(img, &iov, 1, &host);
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

		rc = qcow2_get_l2(img, (uint32_t)(c / l2e), true, &t);
		if (rc)
			break;
		/* the whole clusters of this L2 table's part, without a copy */
		if (direct && len >= img->cs) {
			uint64_t room = (l2e - c % l2e) << img->cluster_bits;
			size_t m = len & ~(size_t)(img->cs - 1);

			if (m > room)
				m = (size_t)room;
			rc = write_direct_from(img, p, m, t, c % l2e);
			if (rc == 0)
				rc = qcow2_sums_add(img, off, p, m);
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
		rc = qcow2_append_cluster(img, p, n, &host);
		if (!rc)
			rc = qcow2_sums_add(img, off, p, n);
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

/* Can piece q go to the disk with O_DIRECT: an aligned buffer, whole clusters? */
static bool piece_direct(const struct qcow2_image *img, const struct qcow2_piece *q)
{
	return !((q->len | (uintptr_t)q->buf) & (QCOW2_DIO_ALIGN - 1)) && !(q->len & (img->cs - 1));
}

/*
 * The data clusters of pieces [from, np) gathered into one pwritev of at most
 * IOV_BATCH buffers at the end of the file: *next is the first piece not
 * taken, *clusters how many data clusters were written.
 */
static int append_pieces(struct qcow2_image *img, const struct qcow2_piece *pc, size_t from,
			 size_t np, size_t *next, uint64_t *clusters)
{
	struct iovec iov[IOV_BATCH];
	uint64_t host, cl = 0;
	size_t i;
	int cnt = 0, rc;

	for (i = from; i < np; i++) {
		const struct qcow2_piece *q = &pc[i];
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
	rc = qcow2_append_direct(img, iov, cnt, &host);
	if (!rc)
		img->end += cl;
	return rc;
}

/* Map the data clusters of pieces [from, to), written from host on. */
static int map_pieces(struct qcow2_image *img, const struct qcow2_piece *pc, size_t from,
		      size_t to, uint64_t host)
{
	uint64_t l2e = qcow2_l2_entries(img);
	size_t i;

	for (i = from; i < to; i++) {
		uint64_t c = pc[i].off >> img->cluster_bits, k, nk = pc[i].len >> img->cluster_bits;
		uint64_t *t = NULL;

		for (k = 0; k < nk; k++, c++) {
			uint64_t e = QCOW2_OFLAG_ZERO;
			int rc;

			if (!t || c % l2e == 0) {
				rc = qcow2_get_l2(img, (uint32_t)(c / l2e), true, &t);
				if (rc)
					return rc;
			}
			if (!sparse_zero(pc[i].zero, k)) {
				e = host | QCOW2_OFLAG_COPIED;
				host += img->cs;
				rc = qcow2_sums_add(img, c << img->cluster_bits,
						    (const uint8_t *)pc[i].buf + (k << img->cluster_bits),
						    img->cs);
				if (rc)
					return rc;
			}
			t[c % l2e] = htobe64(e);
		}
	}
	return 0;
}

int qcow2_write_pieces(struct qcow2_image *img, const struct qcow2_piece *pc, size_t np)
{
	uint64_t data = 0;
	bool direct = img->dfd >= 0;
	size_t i;
	int rc;

	for (i = 0; i < np; i++) {
		uint64_t pos, k = 0, runs = 0;

		if (i && pc[i].off < pc[i - 1].off + pc[i - 1].len)
			return qcow2_seterr(img->err, sizeof(img->err), -EINVAL,
					    "pieces must be in increasing order without overlap (%llu after %llu+%llu)",
					    (unsigned long long)pc[i].off, (unsigned long long)pc[i - 1].off,
					    (unsigned long long)pc[i - 1].len);
		rc = check_range(img, pc[i].off, pc[i].len);
		if (!rc)
			rc = check_unwritten(img, pc[i].off, pc[i].len);
		if (rc)
			return rc;
		direct = direct && piece_direct(img, &pc[i]);
		for (pos = 0; pos < pc[i].len; pos += img->cs, k++) {
			if (sparse_zero(pc[i].zero, k))
				continue;
			data += pc[i].len - pos < img->cs ? pc[i].len - pos : img->cs;
			runs += k == 0 || sparse_zero(pc[i].zero, k - 1);
		}
		/* one piece must fit one pwritev */
		direct = direct && runs <= IOV_BATCH;
	}
	if (!direct || data < QCOW2_DIRECT_MIN) {
		for (i = 0, rc = 0; i < np && !rc; i++)
			rc = write_sparse_runs(img, pc[i].off, pc[i].buf, pc[i].len, pc[i].zero);
		return rc;
	}
	/*
	 * L2 tables are fetched only after the data is written: a table
	 * allocated now goes after the data in the file, and an evicted one
	 * cannot be held across pieces.
	 */
	for (i = 0; i < np;) {
		uint64_t host = img->end << img->cluster_bits, cl;
		size_t next;

		rc = append_pieces(img, pc, i, np, &next, &cl);
		if (rc == 1)	/* the file refused O_DIRECT: copy the rest */
			return qcow2_write_pieces(img, pc + i, np - i);
		if (!rc)
			rc = map_pieces(img, pc, i, next, host);
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

		rc = qcow2_get_l2(img, l1i, true, &t);
		if (rc)
			return rc;
		for (; c <= last && c / l2e == l1i; c++)
			t[c % l2e] = htobe64(QCOW2_OFLAG_ZERO);
	}
	return 0;
}
