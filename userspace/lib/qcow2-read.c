// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 reader: one image's header, L1 and L2 tables (read on demand, one
 * L2 table kept), its structure check, and backing chains (qcow2-read.h).
 *
 * Nothing found in the file is trusted: each L1 and L2 entry is checked
 * (reserved bits, alignment, inside the file) when it is used, so reading
 * a damaged image fails with -EUCLEAN and a message naming the entry
 * rather than returning wrong data silently.  The check reads every table
 * and recomputes the refcounts as qemu-img check does: a cluster used
 * twice or with a refcount below its uses is a corruption, one with a
 * refcount and no use a leak.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "qcow2-read.h"
#include "qcow2-internal.h"

#define L2_RESERVED	(~(QCOW2_OFFSET_MASK | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO | \
			   QCOW2_OFLAG_COMPRESSED))
#define L1_RESERVED	(~(QCOW2_OFFSET_MASK | QCOW2_OFLAG_COPIED))

struct qcow2_reader {
	int fd;
	char *path;
	unsigned bits;
	uint32_t cs;
	uint32_t l1_size;
	uint64_t l1_off, rt_off;
	uint32_t rt_clusters;
	unsigned refcount_order;
	uint64_t *l1;			/* entries as stored, host order */
	uint64_t *l2;			/* the table of l2_index, host order */
	uint32_t l2_index;
	bool l2_loaded;
	struct qcow2_info info;
	char err[320];
};

__attribute__((format(printf, 3, 4)))
static int rerr(struct qcow2_reader *r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rc = qcow2_vseterr_at(r->err, sizeof(r->err), rc, r->path, fmt, ap);
	va_end(ap);
	return rc;
}

const struct qcow2_info *qcow2_reader_info(const struct qcow2_reader *r)
{
	return &r->info;
}

const char *qcow2_reader_errmsg(const struct qcow2_reader *r)
{
	return r->err;
}

void qcow2_reader_close(struct qcow2_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->l1);
	free(r->l2);
	free(r->path);
	free(r);
}

/* The header extensions we read: the backing format and our partial record. */
static void read_ext(void *arg, uint32_t type, const uint8_t *data, uint32_t len)
{
	struct qcow2_info *i = arg;

	if (type == QCOW2_EXT_BACKING_FMT && len < sizeof(i->backing_fmt)) {
		memcpy(i->backing_fmt, data, len);
		i->backing_fmt[len] = 0;
	} else if (type == QCOW2_EXT_BSYNC_PARTIAL) {
		size_t n = len < sizeof(i->partial_text) - 1 ? len : sizeof(i->partial_text) - 1;

		i->partial = true;
		memcpy(i->partial_text, data, n);
		i->partial_text[n] = 0;
		i->partial_text[strnlen(i->partial_text, n)] = 0;
	}
}

/* The fixed header, the header cluster, L1: everything reading needs. */
static int load(struct qcow2_reader *r)
{
	uint8_t h[QCOW2_HDR_V3_LEN], *hc = NULL;
	struct qcow2_info *i = &r->info;
	uint64_t boff, incompat, need;
	uint32_t bsize;
	char msg[240];
	int rc;

	rc = qcow2_open_file(r->path, O_RDONLY, &r->fd, &i->file_size, r->err, sizeof(r->err));
	if (rc)
		return rc;
	rc = qcow2_pread_all(r->fd, h, sizeof(h), 0);
	if (rc)
		return rerr(r, rc, "cannot read the header: %s", strerror(-rc));
	rc = qcow2_header_problem(h, true, msg, sizeof(msg));
	if (rc)
		return rerr(r, rc, "%s", msg);
	incompat = q_get64(h + QH_INCOMPAT);
	i->incomplete = incompat & QCOW2_INCOMPAT_CORRUPT;
	i->dirty = incompat & QCOW2_INCOMPAT_DIRTY;
	r->bits = q_get32(h + QH_CLUSTER_BITS);
	r->cs = 1u << r->bits;
	i->cluster_size = r->cs;
	i->virtual_size = q_get64(h + QH_SIZE);
	r->refcount_order = q_get32(h + QH_REFCOUNT_ORDER);
	r->l1_size = q_get32(h + QH_L1_SIZE);
	r->l1_off = q_get64(h + QH_L1_OFF);
	r->rt_off = q_get64(h + QH_RT_OFF);
	r->rt_clusters = q_get32(h + QH_RT_CLUSTERS);

	hc = malloc(r->cs);
	if (!hc)
		return rerr(r, -ENOMEM, "out of memory");
	rc = qcow2_pread_all(r->fd, hc, r->cs, 0);
	if (rc) {
		rc = rerr(r, rc, "cannot read the header: %s", strerror(-rc));
		goto out;
	}
	rc = qcow2_header_cluster_problem(hc, r->cs, msg, sizeof(msg));
	if (!rc && qcow2_walk_extensions(hc, r->cs, read_ext, i))
		rc = qcow2_seterr(msg, sizeof(msg), -EINVAL, "malformed header extensions");
	if (rc) {
		rc = rerr(r, rc, "%s", msg);
		goto out;
	}
	boff = q_get64(hc + QH_BACKING_OFF);
	bsize = q_get32(hc + QH_BACKING_SIZE);
	if (boff) {	/* location checked: inside the cluster, < 1024 bytes */
		memcpy(i->backing, hc + boff, bsize);
		i->backing[bsize] = 0;
		if (strlen(i->backing) != bsize || !bsize) {
			rc = rerr(r, -EINVAL, "the backing file name is empty or holds a NUL byte");
			goto out;
		}
	}

	need = qcow2_l1_needed(i->virtual_size, r->bits);
	if ((uint64_t)r->l1_size * 8 > QCOW2_MAX_L1_BYTES || r->l1_size < need) {
		rc = rerr(r, -EINVAL, "L1 table size %u does not fit the virtual size", r->l1_size);
		goto out;
	}
	if (!r->l1_off || (r->l1_off & (r->cs - 1)) || r->l1_off > i->file_size ||
	    (uint64_t)r->l1_size * 8 > i->file_size - r->l1_off) {
		rc = rerr(r, -EINVAL, "L1 table offset 0x%llx is invalid or past the end of the file",
			  (unsigned long long)r->l1_off);
		goto out;
	}
	r->l1 = malloc(r->l1_size ? (size_t)r->l1_size * 8 : 1);
	r->l2 = malloc(r->cs);
	if (!r->l1 || !r->l2) {
		rc = rerr(r, -ENOMEM, "out of memory");
		goto out;
	}
	rc = qcow2_pread_all(r->fd, r->l1, (size_t)r->l1_size * 8, r->l1_off);
	if (rc) {
		rc = rerr(r, rc, "cannot read the L1 table: %s", strerror(-rc));
		goto out;
	}
	for (uint32_t k = 0; k < r->l1_size; k++)
		r->l1[k] = q_get64((const uint8_t *)&r->l1[k]);
out:
	free(hc);
	return rc;
}

int qcow2_reader_open(const char *path, struct qcow2_reader **out, char *err, size_t errlen)
{
	struct qcow2_reader *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (!r || !(r->path = strdup(path))) {
		free(r);
		return qcow2_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	r->fd = -1;
	rc = load(r);
	if (rc) {
		qcow2_seterr(err, errlen, rc, "%s", r->err);
		qcow2_reader_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Is a table or data cluster at host offset off inside the file? */
static bool in_file(const struct qcow2_reader *r, uint64_t off, uint64_t len)
{
	return off <= r->info.file_size && len <= r->info.file_size - off;
}

/* Is L1 entry e valid?  0 or -EUCLEAN, described. */
static int check_l1(struct qcow2_reader *r, uint32_t k, uint64_t e)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;

	if ((e & L1_RESERVED) || (e && !off) || (off & (r->cs - 1)) || !in_file(r, off, r->cs))
		return rerr(r, -EUCLEAN,
			    "L1 entry %u (0x%llx) is invalid: reserved bits, unaligned or past the end of the file",
			    k, (unsigned long long)e);
	return 0;
}

/*
 * Is L2 entry e of guest cluster c valid?  0, -ENOTSUP (compressed) or
 * -EUCLEAN, described.  A data cluster may end past the end of the file
 * (it reads as zeroes there, as in QEMU) but must start inside it.
 */
static int check_l2(struct qcow2_reader *r, uint64_t c, uint64_t e)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;

	if (e & QCOW2_OFLAG_COMPRESSED)
		return rerr(r, -ENOTSUP,
			    "guest offset %llu is a compressed cluster, which bsyncctl does not read; "
			    "qemu-img convert makes an image without",
			    (unsigned long long)(c << r->bits));
	if ((e & L2_RESERVED) || (off & (r->cs - 1)) || (off && off >= r->info.file_size))
		return rerr(r, -EUCLEAN,
			    "the L2 entry of guest offset %llu (0x%llx) is invalid: reserved bits, unaligned or past the end of the file",
			    (unsigned long long)(c << r->bits), (unsigned long long)e);
	return 0;
}

static int load_l2(struct qcow2_reader *r, uint32_t k)
{
	uint64_t off = r->l1[k] & QCOW2_OFFSET_MASK;
	int rc;

	if (r->l2_loaded && r->l2_index == k)
		return 0;
	r->l2_loaded = false;
	rc = qcow2_pread_all(r->fd, r->l2, r->cs, off);
	if (rc)
		return rerr(r, rc, "cannot read the L2 table at 0x%llx: %s",
			    (unsigned long long)off, strerror(-rc));
	for (uint32_t j = 0; j < r->cs / 8; j++)
		r->l2[j] = q_get64((const uint8_t *)&r->l2[j]);
	r->l2_index = k;
	r->l2_loaded = true;
	return 0;
}

static enum qcow2_extent kind_of(uint64_t e)
{
	if (e & QCOW2_OFLAG_ZERO)
		return QCOW2_EXT_ZERO;
	return (e & QCOW2_OFFSET_MASK) ? QCOW2_EXT_DATA : QCOW2_EXT_UNALLOCATED;
}

int qcow2_reader_extent(struct qcow2_reader *r, uint64_t off, uint64_t max,
			enum qcow2_extent *kind, uint64_t *len)
{
	uint64_t l2e = r->cs / 8, c = off >> r->bits, end, e;
	uint32_t k = (uint32_t)(c / l2e);
	int rc;

	if (off >= r->info.virtual_size || !max)
		return rerr(r, -EINVAL, "read of %llu bytes at %llu is outside the virtual size",
			    (unsigned long long)max, (unsigned long long)off);
	if (max > r->info.virtual_size - off)
		max = r->info.virtual_size - off;
	/* this L2 table's guest range ends at end */
	end = ((uint64_t)k + 1) * l2e << r->bits;
	if (end - off < max)
		max = end - off;
	rc = check_l1(r, k, r->l1[k]);
	if (rc)
		return rc;
	if (!(r->l1[k] & QCOW2_OFFSET_MASK)) {
		*kind = QCOW2_EXT_UNALLOCATED;
		*len = max;
		return 0;
	}
	rc = load_l2(r, k);
	if (rc)
		return rc;
	e = r->l2[c % l2e];
	rc = check_l2(r, c, e);
	if (rc)
		return rc;
	*kind = kind_of(e);
	*len = ((c + 1) << r->bits) - off;
	if (*kind != QCOW2_EXT_DATA) {
		for (c++; *len < max; c++) {
			e = r->l2[c % l2e];
			rc = check_l2(r, c, e);
			if (rc)
				return rc;
			if (kind_of(e) != *kind)
				break;
			*len += r->cs;
		}
	}
	if (*len > max)
		*len = max;
	return 0;
}

int qcow2_reader_pread(struct qcow2_reader *r, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		enum qcow2_extent kind;
		uint64_t n, host;
		int rc = qcow2_reader_extent(r, off, len, &kind, &n);

		if (rc)
			return rc;
		if (kind == QCOW2_EXT_DATA) {
			host = (r->l2[(off >> r->bits) % (r->cs / 8)] & QCOW2_OFFSET_MASK) +
			       (off & (r->cs - 1));
			rc = qcow2_pread_all(r->fd, p, n, host);
			if (rc)
				return rerr(r, rc, "cannot read guest offset %llu (host 0x%llx): %s",
					    (unsigned long long)off, (unsigned long long)host,
					    strerror(-rc));
		} else {
			memset(p, 0, n);
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* check                                                               */

struct checker {
	struct qcow2_reader *r;
	struct qcow2_check *out;
	uint8_t *uses;		/* per host cluster, saturating */
	uint64_t nclusters;
};

__attribute__((format(printf, 2, 3)))
static void corrupt(struct checker *k, const char *fmt, ...)
{
	va_list ap;

	if (!k->out->corruptions++) {
		va_start(ap, fmt);
		vsnprintf(k->out->first, sizeof(k->out->first), fmt, ap);
		va_end(ap);
	}
}

/* One use of the host clusters of [off, off + len) by what. */
static void use(struct checker *k, uint64_t off, uint64_t len, const char *what)
{
	uint64_t c = off >> k->r->bits, last = (off + len - 1) >> k->r->bits;

	for (; c <= last; c++) {
		if (c >= k->nclusters) {
			corrupt(k, "%s at 0x%llx is past the end of the file", what,
				(unsigned long long)off);
			return;
		}
		if (k->uses[c] < UINT8_MAX)
			k->uses[c]++;
	}
}

static int check_tables(struct checker *k)
{
	struct qcow2_reader *r = k->r;
	uint64_t l2e = r->cs / 8, vsize = r->info.virtual_size;
	int rc;

	use(k, 0, r->cs, "the header");
	use(k, r->l1_off, r->l1_size ? (uint64_t)r->l1_size * 8 : 1, "the L1 table");
	for (uint32_t i = 0; i < r->l1_size; i++) {
		uint64_t e = r->l1[i];

		if (!e)
			continue;
		if (check_l1(r, i, e)) {
			corrupt(k, "%s", strchr(r->err, ':') ? strchr(r->err, ':') + 2 : r->err);
			continue;
		}
		if (!(e & QCOW2_OFFSET_MASK))
			continue;
		use(k, e & QCOW2_OFFSET_MASK, r->cs, "an L2 table");
		rc = load_l2(r, i);
		if (rc)
			return rc;
		for (uint64_t j = 0; j < l2e; j++) {
			uint64_t c = (uint64_t)i * l2e + j, g = c << r->bits, n;

			e = r->l2[j];
			if (!e)
				continue;
			rc = check_l2(r, c, e);
			if (rc == -ENOTSUP)
				return rc;
			if (rc) {
				corrupt(k, "%s", strchr(r->err, ':') ? strchr(r->err, ':') + 2 : r->err);
				continue;
			}
			n = g < vsize ? (vsize - g < r->cs ? vsize - g : r->cs) : 0;
			if (e & QCOW2_OFLAG_ZERO)
				k->out->zero_bytes += n;
			else if (e & QCOW2_OFFSET_MASK)
				k->out->data_bytes += n;
			if (e & QCOW2_OFFSET_MASK)
				use(k, e & QCOW2_OFFSET_MASK, r->cs, "a data cluster");
		}
	}
	return 0;
}

/* Refcount entry i of block b (refcount_order's width). */
static uint64_t refcount_at(const struct qcow2_reader *r, const uint8_t *b, uint64_t i)
{
	unsigned width = 1u << r->refcount_order;
	uint64_t v = 0;

	if (width < 8)
		return (uint64_t)(b[i * width / 8] >> (i * width % 8)) & ((1u << width) - 1);
	for (unsigned n = 0; n < width / 8; n++)
		v = v << 8 | b[i * (width / 8) + n];
	return v;
}

static int check_refcounts(struct checker *k)
{
	struct qcow2_reader *r = k->r;
	uint64_t rt_bytes = (uint64_t)r->rt_clusters * r->cs;
	uint64_t per_block = (uint64_t)r->cs * 8 >> r->refcount_order, nblocks;
	uint8_t *rt = NULL, *blk = NULL;
	int rc = 0;

	if (!r->rt_clusters || rt_bytes > QCOW2_MAX_RT_BYTES || !r->rt_off ||
	    (r->rt_off & (r->cs - 1)) || !in_file(r, r->rt_off, rt_bytes)) {
		corrupt(k, "the refcount table (0x%llx, %u clusters) is invalid or past the end of the file",
			(unsigned long long)r->rt_off, r->rt_clusters);
		return 0;
	}
	use(k, r->rt_off, rt_bytes, "the refcount table");
	rt = malloc(rt_bytes);
	blk = malloc(r->cs);
	if (!rt || !blk) {
		rc = rerr(r, -ENOMEM, "out of memory");
		goto out;
	}
	rc = qcow2_pread_all(r->fd, rt, rt_bytes, r->rt_off);
	if (rc) {
		rc = rerr(r, rc, "cannot read the refcount table: %s", strerror(-rc));
		goto out;
	}
	nblocks = rt_bytes / 8;
	/* first the uses the blocks make, then the counts they hold */
	for (uint64_t b = 0; b < nblocks; b++) {
		uint64_t e = q_get64(rt + b * 8), off = e & QCOW2_OFFSET_MASK;

		if (!e)
			continue;
		if ((e & ~QCOW2_OFFSET_MASK) || (off & (r->cs - 1)) || !in_file(r, off, r->cs)) {
			corrupt(k, "refcount table entry %llu (0x%llx) is invalid or past the end of the file",
				(unsigned long long)b, (unsigned long long)e);
			q_put64(rt + b * 8, 0);
			continue;
		}
		use(k, off, r->cs, "a refcount block");
	}
	for (uint64_t c = 0; c < k->nclusters; c++) {
		uint64_t b = c / per_block, e = b < nblocks ? q_get64(rt + b * 8) : 0, refcount = 0;

		if (e && c % per_block == 0) {
			rc = qcow2_pread_all(r->fd, blk, r->cs, e);
			if (rc) {
				rc = rerr(r, rc, "cannot read a refcount block: %s", strerror(-rc));
				goto out;
			}
		}
		if (e)
			refcount = refcount_at(r, blk, c % per_block);
		if (k->uses[c] > 1)
			corrupt(k, "host cluster %llu (0x%llx) is used %u times",
				(unsigned long long)c, (unsigned long long)(c << r->bits), k->uses[c]);
		else if (refcount < k->uses[c])
			corrupt(k, "host cluster %llu (0x%llx) is used but its refcount is 0",
				(unsigned long long)c, (unsigned long long)(c << r->bits));
		else if (refcount > k->uses[c])
			k->out->leaks++;
	}
	k->out->refcounts_checked = true;
out:
	free(rt);
	free(blk);
	return rc;
}

int qcow2_reader_check(struct qcow2_reader *r, struct qcow2_check *out)
{
	struct checker k = { .r = r, .out = out };
	int rc;

	memset(out, 0, sizeof(*out));
	k.nclusters = (r->info.file_size + r->cs - 1) >> r->bits;
	k.uses = calloc(k.nclusters ? k.nclusters : 1, 1);
	if (!k.uses)
		return rerr(r, -ENOMEM, "out of memory for %llu clusters",
			    (unsigned long long)k.nclusters);
	rc = check_tables(&k);
	/* an unfinished image has no refcounts yet: nothing to compare */
	if (!rc && !r->info.incomplete && !r->info.dirty)
		rc = check_refcounts(&k);
	free(k.uses);
	return rc;
}

/* ------------------------------------------------------------------ */
/* chains                                                              */

void qcow2_backing_path(const char *image_path, const char *backing, char *buf, size_t len)
{
	const char *slash = strrchr(image_path, '/');

	if (backing[0] == '/' || !slash)
		snprintf(buf, len, "%s", backing);
	else
		snprintf(buf, len, "%.*s/%s", (int)(slash - image_path), image_path, backing);
}

void qcow2_chain_close(struct qcow2_chain *c)
{
	for (size_t i = 0; i < c->n; i++) {
		qcow2_reader_close(c->level[i].r);
		if (c->level[i].raw_fd >= 0 && !c->level[i].r)
			close(c->level[i].raw_fd);
		free(c->level[i].path);
	}
	free(c->level);
	memset(c, 0, sizeof(*c));
}

/* Is the file at fd one the chain has opened already? */
static bool seen(const struct qcow2_chain *c, const struct stat *st)
{
	for (size_t i = 0; i < c->n; i++) {
		struct stat o;
		int fd = c->level[i].r ? -1 : c->level[i].raw_fd;

		if (fd < 0 && stat(c->level[i].path, &o))
			continue;
		if (fd >= 0 && fstat(fd, &o))
			continue;
		if (o.st_dev == st->st_dev && o.st_ino == st->st_ino)
			return true;
	}
	return false;
}

static int open_raw(struct qcow2_chain_level *l, char *err, size_t errlen)
{
	struct stat st;
	uint64_t size;

	l->raw_fd = open(l->path, O_RDONLY | O_CLOEXEC);
	if (l->raw_fd < 0)
		return qcow2_seterr(err, errlen, -errno, "%s: cannot open: %s", l->path,
				    strerror(errno));
	if (fstat(l->raw_fd, &st) < 0)
		return qcow2_seterr(err, errlen, -errno, "%s: cannot stat: %s", l->path,
				    strerror(errno));
	size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(l->raw_fd, BLKGETSIZE64, &size) < 0)
		return qcow2_seterr(err, errlen, -errno, "%s: cannot get its size: %s", l->path,
				    strerror(errno));
	l->size = size;
	return 0;
}

int qcow2_chain_open(const char *tip, struct qcow2_chain *c, char *failed, size_t plen,
		     char *err, size_t errlen)
{
	char path[PATH_MAX], next[PATH_MAX], fmt[16] = "qcow2";
	int rc = 0;

	memset(c, 0, sizeof(*c));
	snprintf(path, sizeof(path), "%s", tip);
	for (;;) {
		struct qcow2_chain_level *l, *v;
		struct stat st;

		snprintf(failed, plen, "%s", path);
		if (c->n >= QCOW2_CHAIN_MAX)
			return qcow2_seterr(err, errlen, -ELOOP, "%s: the chain is more than %d images deep",
					    tip, QCOW2_CHAIN_MAX);
		if (stat(path, &st) < 0)
			return qcow2_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
		if (seen(c, &st))
			return qcow2_seterr(err, errlen, -ELOOP,
					    "%s: the chain loops: this image is already one of its links", path);
		v = realloc(c->level, (c->n + 1) * sizeof(*v));
		if (!v)
			return qcow2_seterr(err, errlen, -ENOMEM, "out of memory");
		c->level = v;
		l = &c->level[c->n];
		memset(l, 0, sizeof(*l));
		l->raw_fd = -1;
		l->path = strdup(path);
		if (!l->path)
			return qcow2_seterr(err, errlen, -ENOMEM, "out of memory");
		c->n++;
		if (!strcmp(fmt, "raw")) {
			rc = open_raw(l, err, errlen);
			break;
		}
		if (strcmp(fmt, "qcow2")) {
			rc = qcow2_seterr(err, errlen, -ENOTSUP,
					  "%s: backing format '%s' is not supported (qcow2 or raw)", path, fmt);
			break;
		}
		rc = qcow2_reader_open(path, &l->r, err, errlen);
		if (rc)
			break;
		l->size = l->r->info.virtual_size;
		if (!l->r->info.backing[0])
			break;
		qcow2_backing_path(path, l->r->info.backing, next, sizeof(next));
		memcpy(path, next, sizeof(path));
		snprintf(fmt, sizeof(fmt), "%s", l->r->info.backing_fmt[0] ? l->r->info.backing_fmt
									: "qcow2");
	}
	if (!rc)
		failed[0] = 0;
	return rc;
}

bool qcow2_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len && ((uintptr_t)p & 7)) {
		if (*p++)
			return false;
		len--;
	}
	for (; len >= 8; p += 8, len -= 8)
		if (*(const uint64_t *)(const void *)p)
			return false;
	for (; len; len--)
		if (*p++)
			return false;
	return true;
}

static int read_level(struct qcow2_chain *c, size_t lvl, uint8_t *p, uint64_t len, uint64_t off,
		      char *err, size_t errlen)
{
	struct qcow2_chain_level *l;
	uint64_t in;
	int rc;

	if (lvl >= c->n || off >= c->level[lvl].size) {
		memset(p, 0, len);
		return 0;
	}
	l = &c->level[lvl];
	in = l->size - off < len ? l->size - off : len;
	if (in < len)
		memset(p + in, 0, len - in);
	if (!l->r) {
		rc = qcow2_pread_all(l->raw_fd, p, in, off);
		return rc ? qcow2_seterr(err, errlen, rc, "%s: cannot read offset %llu: %s", l->path,
					 (unsigned long long)off, strerror(-rc)) : 0;
	}
	while (in) {
		enum qcow2_extent kind;
		uint64_t n;

		rc = qcow2_reader_extent(l->r, off, in, &kind, &n);
		if (!rc && kind == QCOW2_EXT_DATA)
			rc = qcow2_reader_pread(l->r, p, n, off);
		if (rc)
			return qcow2_seterr(err, errlen, rc, "%s", l->r->err);
		if (kind == QCOW2_EXT_ZERO)
			memset(p, 0, n);
		else if (kind == QCOW2_EXT_UNALLOCATED) {
			rc = read_level(c, lvl + 1, p, n, off, err, errlen);
			if (rc)
				return rc;
		}
		p += n;
		off += n;
		in -= n;
	}
	return 0;
}

int qcow2_chain_pread(struct qcow2_chain *c, void *buf, uint64_t len, uint64_t off,
		      bool *all_zero, char *err, size_t errlen)
{
	int rc;

	if (!c->n)
		return qcow2_seterr(err, errlen, -EINVAL, "empty chain");
	rc = read_level(c, 0, buf, len, off, err, errlen);
	if (!rc && all_zero)
		*all_zero = qcow2_is_zero(buf, len);
	return rc;
}
