// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 v3 image writer: the image's life, from create to close.
 *
 * An image is marked incomplete on disk from its creation until the close
 * that says it is complete (see qcow2.h), so that a writer that dies leaves
 * an image QEMU refuses to use rather than one that silently lacks data:
 * this file writes the header with the mark, and at close writes the
 * metadata in the order that makes clearing the mark the last step.
 *
 * Host layout of an image we create (cluster numbers):
 *   0       header, extensions, backing file name
 *   1       refcount table while writing (all zero: marks the image
 *           incomplete); reused for the final table if it fits
 *   2..     L1 table
 *   then    data clusters and L2 tables, appended in the order written
 *           (qcow2-cluster.c, qcow2-cache.c, through qcow2-io.c)
 *   last    refcount blocks and table, written by qcow2_close()
 *           (qcow2-refcount.c)
 *
 * Opening an image qemu-img made is qcow2-open.c; the partial-backup
 * record, qcow2-partial.c; the checksum record beside the image,
 * qcow2-sums.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"
#include "qcow2-internal.h"

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

int qcow2_vseterr_at(char *err, size_t errlen, int rc, const char *path, const char *fmt,
		     va_list ap)
{
	char msg[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	return qcow2_seterr(err, errlen, rc, "%s: %s", path, msg);
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
	if (!img->l1 || qcow2_l2_cache_alloc(img) || qcow2_abuf_alloc(img))
		return -ENOMEM;
	return 0;
}

void qcow2_image_free(struct qcow2_image *img)
{
	if (!img)
		return;
	qcow2_sums_close(img, false);
	qcow2_l2_cache_free(img);
	free(img->l1);
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
int qcow2_fail(struct qcow2_image *img, int rc, const char *what)
{
	if (!img->failed) {
		img->failed = rc;
		qcow2_seterr(img->err, sizeof(img->err), rc, "%s: %s: %s%s",
			     img->path, what, strerror(-rc),
			     rc == -ENOSPC ? " (free space on the backup target)" : "");
	}
	return img->failed;
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
			const char *backing, const char *backing_fmt,
			char *err, size_t errlen)
{
	size_t blen = backing ? strlen(backing) : 0;
	size_t flen = backing_fmt ? strlen(backing_fmt) : 0;
	size_t need = QCOW2_HDR_LEN + (backing_fmt ? ext_len(flen) : 0) + 8 + blen;
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
	if (backing_fmt) {
		q_put32(buf + pos, QCOW2_EXT_BACKING_FMT);
		q_put32(buf + pos + 4, (uint32_t)flen);
		memcpy(buf + pos + 8, backing_fmt, flen);
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
/* close: data, L2, L1, refcounts, then the header                     */

static int write_l1(struct qcow2_image *img)
{
	size_t chunk = 65536 / 8;
	uint8_t *buf = malloc(chunk * 8);
	int rc = 0;

	if (!buf)
		return qcow2_fail(img, -ENOMEM, "allocating the L1 buffer");
	for (uint32_t i = 0; i < img->l1_size && !rc; i += (uint32_t)chunk) {
		size_t n = img->l1_size - i < chunk ? img->l1_size - i : chunk;

		for (size_t j = 0; j < n; j++) {
			uint64_t e = img->l1[i + j];

			q_put64(buf + j * 8, e ? e | QCOW2_OFLAG_COPIED : 0);
		}
		rc = qcow2_pwrite_all(img->fd, buf, n * 8, img->l1_off + (uint64_t)i * 8);
	}
	free(buf);
	return rc ? qcow2_fail(img, rc, "writing the L1 table") : 0;
}

static int sync_fd(struct qcow2_image *img)
{
	return fsync(img->fd) < 0 ? qcow2_fail(img, -errno, "fsync") : 0;
}

static int finish(struct qcow2_image *img, bool complete)
{
	uint64_t rt_off = 0, rt_clusters = 0, incompat;
	int rc;

	rc = qcow2_flush_abuf(img);
	if (!rc)
		rc = qcow2_l2_cache_flush(img);
	if (!rc)
		rc = write_l1(img);
	if (!rc)
		rc = qcow2_write_refcounts(img, &rt_off, &rt_clusters);
	if (!rc)
		rc = sync_fd(img);
	/* the checksums are durable before the image is marked complete */
	if (!rc)
		rc = qcow2_sums_finish(img, complete);
	if (rc)
		return rc;
	/* the record is durable before the image is marked complete */
	if (complete && img->partial) {
		rc = qcow2_put_partial_record(img->fd, img->cs, img->hdr, img->partial);
		if (rc)
			return qcow2_fail(img, rc, rc == -ENOSPC ?
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
		return qcow2_fail(img, rc, "writing the header");
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
	qcow2_close_direct(img);
	if (close(img->fd) < 0 && !rc)
		rc = qcow2_fail(img, -errno, "close");
	if (rc && !img->err[0])
		qcow2_fail(img, rc, "closing");
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
	qcow2_close_direct(img);
	close(img->fd);
	unlink(img->path);
	qcow2_sums_close(img, true);
	qcow2_image_free(img);
}
