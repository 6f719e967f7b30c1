// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: the partial-backup record.
 *
 * A backup job that fails or is cancelled leaves a well-formed image holding
 * what was copied, as QEMU's drive-backup does: with bitmap-mode "always" it
 * is meant to be the next incremental's backing file, and QEMU's tools must
 * open it read/write (qemu-img rebase -u).  That it is partial is recorded in
 * a header extension of our own type, which QEMU keeps as an unknown
 * extension (read, ignored, written back on header updates).  Its data is
 * text, "key=value" lines.  The corrupt bit stays reserved for an image whose
 * writer died before closing it.
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

static uint64_t ext_size(uint32_t len)
{
	return 8 + (((uint64_t)len + 7) & ~7ull);
}

int qcow2_walk_extensions(const uint8_t *h, uint32_t cs,
			  void (*visit)(void *arg, uint32_t type, const uint8_t *data, uint32_t len),
			  void *arg)
{
	uint32_t hlen = q_get32(h + QH_HDR_LEN);
	uint64_t boff = q_get64(h + QH_BACKING_OFF);
	uint64_t end = boff ? boff : cs, pos;

	if (hlen < QCOW2_HDR_V3_LEN || hlen > cs || (hlen & 7) || end > cs)
		return -EINVAL;
	for (pos = hlen; pos + 8 <= end; pos += ext_size(q_get32(h + pos + 4))) {
		uint32_t type = q_get32(h + pos), len = q_get32(h + pos + 4);

		if (len > end - pos - 8)
			return -EINVAL;
		if (type == QCOW2_EXT_END)
			return 0;
		visit(arg, type, h + pos + 8, len);
	}
	return -EINVAL;
}

struct rebuild {
	uint8_t *out;
	uint64_t pos, cap;
	int rc;
};

static void put_ext(struct rebuild *r, uint32_t type, const void *data, uint32_t len)
{
	if (r->rc || r->pos + ext_size(len) > r->cap) {
		r->rc = -ENOSPC;
		return;
	}
	q_put32(r->out + r->pos, type);
	q_put32(r->out + r->pos + 4, len);
	memcpy(r->out + r->pos + 8, data, len);
	r->pos += ext_size(len);
}

static void keep_other(void *arg, uint32_t type, const uint8_t *data, uint32_t len)
{
	if (type != QCOW2_EXT_BSYNC_PARTIAL)
		put_ext(arg, type, data, len);
}

int qcow2_put_partial_record(int fd, uint32_t cs, uint8_t *hdr, const char *text)
{
	uint8_t *h = malloc(cs), *n = calloc(1, cs);
	struct rebuild r = { .out = n, .cap = cs };
	uint64_t boff, bsize, old_end;
	size_t tlen = strlen(text);
	int rc;

	if (!h || !n) {
		rc = -ENOMEM;
		goto out;
	}
	rc = qcow2_pread_all(fd, h, cs, 0);
	if (rc)
		goto out;
	boff = q_get64(h + QH_BACKING_OFF);
	bsize = q_get32(h + QH_BACKING_SIZE);
	old_end = boff ? boff + bsize : cs;
	r.pos = q_get32(h + QH_HDR_LEN);
	memcpy(n, h, r.pos < cs ? r.pos : cs);
	rc = qcow2_walk_extensions(h, cs, keep_other, &r);
	if (rc)
		goto out;
	if (tlen > QCOW2_PARTIAL_MAX)
		tlen = QCOW2_PARTIAL_MAX;
	put_ext(&r, QCOW2_EXT_BSYNC_PARTIAL, text, (uint32_t)tlen);
	r.pos += 8;		/* end marker, zero */
	if (!r.rc && boff && (r.pos + bsize > cs || bsize > QCOW2_MAX_BACKING_NAME))
		r.rc = -ENOSPC;
	rc = r.rc;
	if (rc)
		goto out;
	if (boff) {
		memcpy(n + r.pos, h + boff, bsize);
		q_put64(n + QH_BACKING_OFF, r.pos);
		q_put64(hdr + QH_BACKING_OFF, r.pos);
		r.pos += bsize;
	}
	rc = qcow2_pwrite_all(fd, n, r.pos > old_end ? r.pos : old_end, 0);
out:
	free(h);
	free(n);
	return rc;
}

struct find {
	char *text;
	size_t len;
	bool found;
};

static void find_partial(void *arg, uint32_t type, const uint8_t *data, uint32_t len)
{
	struct find *f = arg;
	size_t n;

	if (type != QCOW2_EXT_BSYNC_PARTIAL)
		return;
	f->found = true;
	if (!f->len)
		return;
	n = len < f->len - 1 ? len : f->len - 1;
	memcpy(f->text, data, n);
	f->text[n] = 0;
	/* the record is text: cut at the first NUL a hostile image may hold */
	f->text[strnlen(f->text, n)] = 0;
}

int qcow2_read_partial(const char *path, char *text, size_t len, char *err, size_t errlen)
{
	struct find f = { .text = text, .len = len };
	uint8_t fixed[QCOW2_HDR_V3_LEN], *h = NULL;
	unsigned bits;
	struct stat st;
	uint32_t cs;
	int fd, rc;

	if (len)
		text[0] = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qcow2_seterr(err, errlen, -errno, "%s: cannot open: %s", path, strerror(errno));
	rc = fstat(fd, &st) < 0 ? -errno : 0;
	if (!rc)
		rc = qcow2_pread_all(fd, fixed, sizeof(fixed), 0);
	if (rc) {
		qcow2_seterr(err, errlen, rc, "%s: cannot read the header: %s", path, strerror(-rc));
		goto out;
	}
	bits = q_get32(fixed + QH_CLUSTER_BITS);
	if (q_get32(fixed + QH_MAGIC) != QCOW2_MAGIC || q_get32(fixed + QH_VERSION) != 3 ||
	    bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS) {
		rc = qcow2_seterr(err, errlen, -EINVAL, "%s: not a qcow2 v3 image", path);
		goto out;
	}
	cs = 1u << bits;
	if ((uint64_t)st.st_size < cs)
		cs = (uint32_t)st.st_size;
	h = malloc(cs);
	rc = h ? qcow2_pread_all(fd, h, cs, 0) : -ENOMEM;
	if (!rc)
		rc = qcow2_walk_extensions(h, cs, find_partial, &f);
	if (rc)
		qcow2_seterr(err, errlen, rc, "%s: malformed header extensions", path);
	else
		rc = f.found;
out:
	free(h);
	close(fd);
	return rc;
}
