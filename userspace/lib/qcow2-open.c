// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: open an existing empty image (QEMU's mode=existing) and
 * check whether an image is marked complete.
 *
 * The header is distrusted: every size and offset is checked against the
 * file size before anything is allocated or read, so a hostile image costs
 * at most memory proportional to the file.  The image's refcount structures
 * are not read at all: the writer recomputes every refcount when it closes
 * the image, from what the header, L1 and L2 tables reference.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "qcow2-internal.h"

struct parse {
	const char *path;
	char *err;
	size_t errlen;
	int fd;
	uint64_t fsize;
	uint8_t *hc;		/* header cluster */
	uint64_t rt_off;
	uint32_t rt_clusters;
};

static int refuse(struct parse *p, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct parse *p, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc = qcow2_vseterr_at(p->err, p->errlen, rc, p->path, fmt, ap);
	va_end(ap);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#define PROBLEM(rc, ...) qcow2_seterr(msg, len, (rc), __VA_ARGS__)

int qcow2_header_problem(const uint8_t *h, bool incomplete_ok, char *msg, size_t len)
{
	uint32_t version = q_get32(h + QH_VERSION);
	unsigned bits = q_get32(h + QH_CLUSTER_BITS);
	uint64_t incompat = q_get64(h + QH_INCOMPAT);
	uint64_t size = q_get64(h + QH_SIZE);
	uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT |
			 QCOW2_INCOMPAT_DATAFILE | QCOW2_INCOMPAT_COMPR |
			 QCOW2_INCOMPAT_EXTL2;

	if (q_get32(h + QH_MAGIC) != QCOW2_MAGIC)
		return PROBLEM(-EINVAL, "not a qcow2 image (bad magic)");
	if (version == 2)
		return PROBLEM(-ENOTSUP,
			    "qcow2 version 2 (compat=0.10) is not supported; create it with -o compat=1.1");
	if (version != 3)
		return PROBLEM(-ENOTSUP, "unsupported qcow2 version %u", version);
	if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS)
		return PROBLEM(-EINVAL, "unsupported cluster size 2^%u", bits);
	if ((incompat & QCOW2_INCOMPAT_CORRUPT) && !incomplete_ok)
		return PROBLEM(-EUCLEAN,
			    "image is marked corrupt or incomplete (a writer did not finish it)");
	if ((incompat & QCOW2_INCOMPAT_DIRTY) && !incomplete_ok)
		return PROBLEM(-EUCLEAN,
			    "image is marked dirty (refcounts not written back); run qemu-img check -r all first");
	if (incompat & QCOW2_INCOMPAT_DATAFILE)
		return PROBLEM(-ENOTSUP, "images with an external data file are not supported");
	if (incompat & QCOW2_INCOMPAT_COMPR)
		return PROBLEM(-ENOTSUP,
			    "compression type other than zlib is not supported");
	if (incompat & QCOW2_INCOMPAT_EXTL2)
		return PROBLEM(-ENOTSUP, "extended L2 entries are not supported");
	if (incompat & ~known)
		return PROBLEM(-ENOTSUP, "unknown incompatible features 0x%llx",
			    (unsigned long long)(incompat & ~known));
	if (q_get32(h + QH_CRYPT))
		return PROBLEM(-ENOTSUP, "encrypted images are not supported");
	if (q_get32(h + QH_NB_SNAP) || q_get64(h + QH_SNAP_OFF))
		return PROBLEM(-ENOTSUP, "images with internal snapshots are not supported");
	if (q_get32(h + QH_REFCOUNT_ORDER) > 6)
		return PROBLEM(-EINVAL, "refcount order %u is invalid",
			    q_get32(h + QH_REFCOUNT_ORDER));
	if (!size || (size & 511) || size > (1ull << 56))
		return PROBLEM(-EINVAL, "virtual size %llu is not usable",
			    (unsigned long long)size);
	return 0;
}

int qcow2_header_cluster_problem(const uint8_t *h, uint32_t cs, char *msg, size_t len)
{
	uint32_t hlen = q_get32(h + QH_HDR_LEN);
	uint64_t boff = q_get64(h + QH_BACKING_OFF);
	uint32_t bsize = q_get32(h + QH_BACKING_SIZE);
	uint64_t pos, end;

	if (hlen < QCOW2_HDR_V3_LEN || hlen > cs || (hlen & 7))
		return PROBLEM(-EINVAL, "invalid header length %u", hlen);
	if (hlen > QCOW2_HDR_V3_LEN && h[QH_COMPRESSION] != 0)
		return PROBLEM(-ENOTSUP, "compression type %u is not supported",
			    h[QH_COMPRESSION]);
	if (boff && (boff > cs || bsize > QCOW2_MAX_BACKING_NAME ||
		     bsize > cs - boff))
		return PROBLEM(-EINVAL, "invalid backing file name location");
	if (q_get64(h + QH_AUTOCLEAR) & 1)
		return PROBLEM(-ENOTSUP,
			    "images with persistent bitmaps are not supported");
	/* as in QEMU, extensions end where the backing file name starts */
	end = boff ? boff : cs;
	for (pos = hlen; pos + 8 <= end;) {
		uint32_t type = q_get32(h + pos), elen = q_get32(h + pos + 4);

		/* like QEMU, the length is checked even for the end marker */
		if (elen > end - pos - 8)
			return PROBLEM(-EINVAL, "header extension 0x%08x overruns the header cluster",
				    type);
		if (type == QCOW2_EXT_END)
			return 0;
		switch (type) {
		case QCOW2_EXT_BACKING_FMT:
			if (elen > QCOW2_MAX_BACKING_FMT)
				return PROBLEM(-EINVAL, "backing format name of %u bytes is too long",
					    elen);
			break;
		case QCOW2_EXT_BITMAPS:
			return PROBLEM(-ENOTSUP,
				    "images with persistent bitmaps are not supported");
		case QCOW2_EXT_CRYPTO:
			return PROBLEM(-ENOTSUP, "encrypted images are not supported");
		case QCOW2_EXT_DATAFILE:
			return PROBLEM(-ENOTSUP,
				    "images with an external data file are not supported");
		default:
			break;	/* kept as they are */
		}
		pos += 8 + (((uint64_t)elen + 7) & ~7ull);
	}
	return PROBLEM(-EINVAL, "header extensions are not terminated");
}

#undef PROBLEM

/* Checks on the fixed header fields that need no other reads. */
static int check_header(struct parse *p, const uint8_t *h, uint64_t expect)
{
	uint64_t size = q_get64(h + QH_SIZE);
	char msg[240];
	int rc = qcow2_header_problem(h, false, msg, sizeof(msg));

	if (rc)
		return refuse(p, rc, "%s", msg);
	if (expect && size != expect)
		return refuse(p, -EINVAL,
			      "virtual size %llu differs from the expected %llu",
			      (unsigned long long)size, (unsigned long long)expect);
	return 0;
}

/* Header length, backing name, extensions: all inside cluster 0. */
static int check_header_cluster(struct parse *p, uint32_t cs)
{
	char msg[240];
	int rc = qcow2_header_cluster_problem(p->hc, cs, msg, sizeof(msg));

	return rc ? refuse(p, rc, "%s", msg) : 0;
}

/* Add a free range [s, e) to img->holes (allocated for the worst case). */
static void add_hole(struct qcow2_image *img, uint64_t s, uint64_t e)
{
	if (e > s)
		img->holes[img->nholes++] = (struct qcow2_range){ s, e - s };
}

/*
 * Validate L1 and the L2 tables it references (they must hold no entry),
 * and derive the clusters in use.
 */
static int load_tables(struct parse *p, struct qcow2_image *img)
{
	uint32_t cs = img->cs;
	uint64_t l1_bytes = (uint64_t)img->l1_size * 8;
	uint64_t l1_first = img->l1_off >> img->cluster_bits;
	uint64_t l1_end = (img->l1_off + l1_bytes + cs - 1) >> img->cluster_bits;
	uint64_t rt_first = p->rt_off >> img->cluster_bits;
	uint64_t rt_end = rt_first + p->rt_clusters;
	uint64_t *used = NULL, nused = 0, nl2 = 0;
	uint8_t *raw = NULL, *l2 = NULL;
	int rc;

	raw = malloc(l1_bytes ? l1_bytes : 1);
	used = malloc((1 + (l1_end - l1_first) + img->l1_size) * sizeof(*used));
	l2 = malloc(cs);
	if (!raw || !used || !l2) {
		rc = refuse(p, -ENOMEM, "out of memory reading the L1 table");
		goto out;
	}
	rc = qcow2_pread_all(p->fd, raw, l1_bytes, img->l1_off);
	if (rc) {
		rc = refuse(p, rc, "cannot read the L1 table: %s", strerror(-rc));
		goto out;
	}
	used[nused++] = 0;
	for (uint64_t c = l1_first; c < l1_end; c++)
		used[nused++] = c;
	for (uint32_t i = 0; i < img->l1_size; i++) {
		uint64_t e = q_get64(raw + (uint64_t)i * 8);
		uint64_t off = e & QCOW2_OFFSET_MASK;

		if (!e)
			continue;
		if ((e & ~(QCOW2_OFFSET_MASK | QCOW2_OFLAG_COPIED)) || !off ||
		    off >= p->fsize) {
			rc = refuse(p, -EINVAL, "L1 entry %u (0x%llx) is invalid or points past the end of the file",
				    i, (unsigned long long)e);
			goto out;
		}
		if (off & (cs - 1)) {
			rc = refuse(p, -EINVAL, "L1 entry %u points to an unaligned L2 table", i);
			goto out;
		}
		img->l1[i] = off;
		used[nused++] = off >> img->cluster_bits;
		nl2++;
	}
	qsort(used, nused, sizeof(*used), cmp_u64);
	for (uint64_t i = 0; i < nused; i++) {
		if (i && used[i] == used[i - 1]) {
			rc = refuse(p, -EINVAL, "cluster %llu is referenced twice by the header, L1 or L2 tables",
				    (unsigned long long)used[i]);
			goto out;
		}
		if (used[i] >= rt_first && used[i] < rt_end) {
			rc = refuse(p, -EINVAL, "the refcount table overlaps the header, L1 or an L2 table");
			goto out;
		}
	}
	/* every L2 table must be empty: the image must hold no data */
	for (uint32_t i = 0; nl2 && i < img->l1_size; i++) {
		if (!img->l1[i])
			continue;
		rc = qcow2_pread_all(p->fd, l2, cs, img->l1[i]);
		if (rc) {
			rc = refuse(p, rc, "cannot read an L2 table: %s", strerror(-rc));
			goto out;
		}
		for (uint32_t j = 0; j < cs / 8; j++) {
			if (q_get64(l2 + (uint64_t)j * 8)) {
				rc = refuse(p, -EINVAL,
					    "image is not empty (guest offset %llu is allocated); it must be freshly created",
					    (unsigned long long)(((uint64_t)i * (cs / 8) + j) << img->cluster_bits));
				goto out;
			}
		}
	}
	/* clusters in use: `used`; everything else below end is free */
	img->end = (p->fsize + cs - 1) >> img->cluster_bits;
	if (used[nused - 1] >= img->end)
		img->end = used[nused - 1] + 1;
	img->holes = malloc((nused + 1) * sizeof(*img->holes));
	if (!img->holes) {
		rc = refuse(p, -ENOMEM, "out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < nused; i++)
		add_hole(img, i ? used[i - 1] + 1 : 0, used[i]);
	add_hole(img, used[nused - 1] + 1, img->end);
	rc = 0;
out:
	free(raw);
	free(used);
	free(l2);
	return rc;
}

/* Check the table locations against the geometry and the file size. */
static int check_tables(struct parse *p, struct qcow2_image *img)
{
	uint32_t cs = img->cs;
	uint64_t fsize_r = (p->fsize + cs - 1) & ~(uint64_t)(cs - 1);
	uint64_t need = qcow2_l1_needed(img->size, img->cluster_bits);

	if ((uint64_t)img->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return refuse(p, -EINVAL, "L1 table size %u is too big", img->l1_size);
	if (img->l1_size < need)
		return refuse(p, -EINVAL, "L1 table is too small for the virtual size");
	if (!img->l1_off || (img->l1_off & (cs - 1)) || img->l1_off > p->fsize ||
	    (uint64_t)img->l1_size * 8 > p->fsize - img->l1_off)
		return refuse(p, -EINVAL, "L1 table offset 0x%llx is invalid or past the end of the file",
			      (unsigned long long)img->l1_off);
	if (!p->rt_clusters || (uint64_t)p->rt_clusters * cs > QCOW2_MAX_RT_BYTES)
		return refuse(p, -EINVAL, "refcount table size of %u clusters is invalid",
			      p->rt_clusters);
	if (!p->rt_off || (p->rt_off & (cs - 1)) || p->rt_off > fsize_r ||
	    (uint64_t)p->rt_clusters * cs > fsize_r - p->rt_off)
		return refuse(p, -EINVAL, "refcount table offset 0x%llx is invalid or past the end of the file",
			      (unsigned long long)p->rt_off);
	return 0;
}

/* Mark incomplete: corrupt bit, empty refcount table, synced. */
static int mark_incomplete(struct parse *p, struct qcow2_image *img)
{
	uint8_t *zero = calloc(1, img->cs);
	int rc = zero ? 0 : -ENOMEM;

	q_put64(img->hdr + QH_INCOMPAT,
		q_get64(img->hdr + QH_INCOMPAT) | QCOW2_INCOMPAT_CORRUPT);
	if (!rc)
		rc = qcow2_pwrite_all(p->fd, img->hdr, sizeof(img->hdr), 0);
	for (uint32_t i = 0; !rc && i < p->rt_clusters; i++)
		rc = qcow2_pwrite_all(p->fd, zero, img->cs,
				      p->rt_off + ((uint64_t)i << img->cluster_bits));
	if (!rc && fdatasync(p->fd) < 0)
		rc = -errno;
	free(zero);
	return rc ? refuse(p, rc, "cannot mark the image as being written: %s",
			   strerror(-rc)) : 0;
}

int qcow2_open_file(const char *path, int flags, int *fd, uint64_t *fsize, char *err,
		    size_t errlen)
{
	struct stat st;
	int rc = 0;

	*fd = open(path, flags | O_CLOEXEC);
	if (*fd < 0)
		return qcow2_seterr(err, errlen, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(*fd, &st) < 0)
		rc = qcow2_seterr(err, errlen, -errno, "%s: cannot stat: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = qcow2_seterr(err, errlen, -EINVAL, "%s: not a regular file", path);
	else if ((uint64_t)st.st_size < QCOW2_HDR_V3_LEN)
		rc = qcow2_seterr(err, errlen, -EINVAL, "%s: not a qcow2 v3 image (file too short)",
				  path);
	if (rc) {
		close(*fd);
		*fd = -1;
		return rc;
	}
	*fsize = (uint64_t)st.st_size;
	return 0;
}

static int read_header(struct parse *p, int flags)
{
	int rc = qcow2_open_file(p->path, flags, &p->fd, &p->fsize, p->err, p->errlen);

	if (rc)
		return rc;
	p->hc = malloc(QCOW2_HDR_V3_LEN);
	if (!p->hc)
		return refuse(p, -ENOMEM, "out of memory");
	rc = qcow2_pread_all(p->fd, p->hc, QCOW2_HDR_V3_LEN, 0);
	return rc ? refuse(p, rc, "cannot read the header: %s", strerror(-rc)) : 0;
}

int qcow2_open_existing(const char *path, uint64_t expect,
			struct qcow2_image **out, char *err, size_t errlen)
{
	struct parse p = { .path = path, .err = err, .errlen = errlen, .fd = -1 };
	struct qcow2_image *img = NULL;
	uint8_t *hc;
	int rc;

	*out = NULL;
	rc = read_header(&p, O_RDWR);
	if (!rc)
		rc = check_header(&p, p.hc, expect);
	if (rc)
		goto fail;
	img = calloc(1, sizeof(*img));
	if (!img || !(img->path = strdup(path))) {
		rc = refuse(&p, -ENOMEM, "out of memory");
		goto fail;
	}
	img->fd = -1;
	img->dfd = -1;
	memcpy(img->hdr, p.hc, sizeof(img->hdr));
	img->cluster_bits = q_get32(p.hc + QH_CLUSTER_BITS);
	img->cs = 1u << img->cluster_bits;
	img->size = q_get64(p.hc + QH_SIZE);
	img->refcount_order = q_get32(p.hc + QH_REFCOUNT_ORDER);
	img->l1_size = q_get32(p.hc + QH_L1_SIZE);
	img->l1_off = q_get64(p.hc + QH_L1_OFF);
	p.rt_off = q_get64(p.hc + QH_RT_OFF);
	p.rt_clusters = q_get32(p.hc + QH_RT_CLUSTERS);

	hc = realloc(p.hc, img->cs);
	if (!hc) {
		rc = refuse(&p, -ENOMEM, "out of memory");
		goto fail;
	}
	p.hc = hc;
	rc = qcow2_pread_all(p.fd, p.hc, img->cs, 0);
	if (rc) {
		rc = refuse(&p, rc, "cannot read the header: %s", strerror(-rc));
		goto fail;
	}
	rc = check_header_cluster(&p, img->cs);
	if (!rc)
		rc = check_tables(&p, img);
	if (rc)
		goto fail;
	rc = qcow2_image_alloc_tables(img);
	if (rc) {
		rc = refuse(&p, rc, "out of memory");
		goto fail;
	}
	rc = load_tables(&p, img);
	if (!rc)
		rc = mark_incomplete(&p, img);
	if (rc)
		goto fail;
	img->fd = p.fd;
	qcow2_open_direct(img);
	free(p.hc);
	*out = img;
	return 0;
fail:
	if (p.fd >= 0)
		close(p.fd);
	free(p.hc);
	qcow2_image_free(img);
	return rc;
}

int qcow2_check_complete(const char *path, char *err, size_t errlen)
{
	struct parse p = { .path = path, .err = err, .errlen = errlen, .fd = -1 };
	int rc = read_header(&p, O_RDONLY);

	if (!rc && q_get32(p.hc + QH_MAGIC) != QCOW2_MAGIC)
		rc = refuse(&p, -EINVAL, "not a qcow2 image (bad magic)");
	if (!rc && q_get32(p.hc + QH_VERSION) < 2)
		rc = refuse(&p, -EINVAL, "not a qcow2 image (version %u)",
			    q_get32(p.hc + QH_VERSION));
	if (!rc && q_get32(p.hc + QH_VERSION) >= 3 &&
	    (q_get64(p.hc + QH_INCOMPAT) & QCOW2_INCOMPAT_CORRUPT))
		rc = refuse(&p, -EUCLEAN,
			    "image is marked corrupt or incomplete (a writer did not finish it)");
	if (!rc && q_get32(p.hc + QH_VERSION) >= 3 &&
	    (q_get64(p.hc + QH_INCOMPAT) & QCOW2_INCOMPAT_DIRTY))
		rc = refuse(&p, -EUCLEAN,
			    "image is marked dirty (refcounts not written back)");
	if (!rc)
		qcow2_seterr(err, errlen, 0, "%s", "");
	if (p.fd >= 0)
		close(p.fd);
	free(p.hc);
	return rc;
}
