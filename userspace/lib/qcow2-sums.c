// SPDX-License-Identifier: GPL-2.0
/*
 * The per-cluster checksum record beside an image (format and rules in
 * qcow2-sums.h): the writer's side, fed by qcow2-cluster.c as clusters are
 * written and finished by qcow2.c's close before the image is marked
 * complete, and the reader's, for chain verify.  Entries are appended in
 * write order through a buffer: one pwrite per 4096 clusters (256 MiB of
 * 64 KiB clusters), so the record costs a hash per cluster and little I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2-internal.h"
#include "qcow2-sums.h"
#include "xxh64.h"

#define SUMS_MAGIC	"BSYNCSUM"
#define SUMS_VERSION	1
#define SUMS_HDR_LEN	64u
#define SUMS_ENTRY_LEN	16u
#define SUMS_XXH64	1
#define SUMS_BUF_ENTRIES 4096

struct qcow2_sums_writer {
	int fd;
	char *path;
	uint64_t n;		/* entries, written and buffered */
	size_t blen;		/* buffered entries */
	uint8_t buf[SUMS_BUF_ENTRIES * SUMS_ENTRY_LEN];
};

void qcow2_sums_path(const char *image, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", image, QCOW2_SUMS_SUFFIX);
}

uint64_t qcow2_sum_of(const void *buf, size_t len)
{
	return xxh64(buf, len, 0);
}

static void put_header(uint8_t *h, const struct qcow2_image *img, bool complete, uint64_t n,
		       uint64_t fsize)
{
	memset(h, 0, SUMS_HDR_LEN);
	memcpy(h, SUMS_MAGIC, 8);
	q_put32(h + 8, SUMS_VERSION);
	q_put32(h + 12, SUMS_HDR_LEN);
	q_put32(h + 16, SUMS_XXH64);
	q_put32(h + 20, img->cs);
	q_put64(h + 24, img->size);
	q_put32(h + 32, complete);
	q_put64(h + 40, n);
	q_put64(h + 48, fsize);
	q_put64(h + 56, xxh64(h, 56, 0));
}

int qcow2_sync_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (slash == path ? 1 : (int)(slash - path)) : 1,
		 slash ? path : ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

static void writer_free(struct qcow2_sums_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w);
}

int qcow2_enable_sums(struct qcow2_image *img, char *err, size_t errlen)
{
	struct qcow2_sums_writer *w;
	uint8_t h[SUMS_HDR_LEN];
	size_t len = strlen(img->path) + sizeof(QCOW2_SUMS_SUFFIX);
	int rc;

	if (img->sums)
		return 0;
	w = calloc(1, sizeof(*w));
	if (!w || !(w->path = malloc(len))) {
		free(w);
		return qcow2_seterr(err, errlen, -ENOMEM, "out of memory");
	}
	qcow2_sums_path(img->path, w->path, len);
	/* O_TRUNC: a record left by an earlier image of this name is stale */
	w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		rc = -errno;
		qcow2_seterr(err, errlen, rc, "cannot create the checksum record %s: %s",
			     w->path, strerror(-rc));
		writer_free(w);
		return rc;
	}
	put_header(h, img, false, 0, 0);
	rc = qcow2_pwrite_all(w->fd, h, sizeof(h), 0);
	if (rc) {
		qcow2_seterr(err, errlen, rc, "cannot write the checksum record %s: %s",
			     w->path, strerror(-rc));
		unlink(w->path);
		writer_free(w);
		return rc;
	}
	img->sums = w;
	return 0;
}

static int flush_entries(struct qcow2_image *img)
{
	struct qcow2_sums_writer *w = img->sums;
	uint64_t at = SUMS_HDR_LEN + (w->n - w->blen) * SUMS_ENTRY_LEN;
	int rc;

	if (!w->blen)
		return 0;
	rc = qcow2_pwrite_all(w->fd, w->buf, w->blen * SUMS_ENTRY_LEN, at);
	if (rc)
		return qcow2_fail(img, rc, "writing the checksum record");
	w->blen = 0;
	return 0;
}

int qcow2_sums_add(struct qcow2_image *img, uint64_t off, const uint8_t *p, uint64_t len)
{
	struct qcow2_sums_writer *w = img->sums;

	if (!w)
		return 0;
	for (uint64_t at = 0; at < len; at += img->cs) {
		uint64_t n = len - at < img->cs ? len - at : img->cs;
		uint8_t *e;

		if (w->blen == SUMS_BUF_ENTRIES && flush_entries(img))
			return img->failed;
		e = w->buf + w->blen * SUMS_ENTRY_LEN;
		q_put64(e, off + at);
		q_put64(e + 8, xxh64(p + at, n, 0));
		w->blen++;
		w->n++;
	}
	return 0;
}

int qcow2_sums_finish(struct qcow2_image *img, bool complete)
{
	struct qcow2_sums_writer *w = img->sums;
	uint8_t h[SUMS_HDR_LEN];
	struct stat st;
	int rc;

	if (!w)
		return 0;
	rc = flush_entries(img);
	if (rc)
		return rc;
	/* the entries are durable before the header says they are all there */
	if (fsync(w->fd) < 0)
		return qcow2_fail(img, -errno, "fsync of the checksum record");
	if (fstat(img->fd, &st) < 0)
		return qcow2_fail(img, -errno, "fstat");
	put_header(h, img, complete, w->n, (uint64_t)st.st_size);
	rc = qcow2_pwrite_all(w->fd, h, sizeof(h), 0);
	if (!rc && fsync(w->fd) < 0)
		rc = -errno;
	if (!rc)
		rc = qcow2_sync_dir(w->path);
	return rc ? qcow2_fail(img, rc, "finishing the checksum record") : 0;
}

void qcow2_sums_close(struct qcow2_image *img, bool remove)
{
	if (!img->sums)
		return;
	if (remove)
		unlink(img->sums->path);
	writer_free(img->sums);
	img->sums = NULL;
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

static int cmp_off(const void *a, const void *b)
{
	const struct qcow2_sum *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static int bad(char *err, size_t errlen, const char *path, const char *what)
{
	return qcow2_seterr(err, errlen, -EUCLEAN, "%s: not a valid checksum record: %s", path, what);
}

int qcow2_sums_load(const char *image, struct qcow2_sums *s, char *err, size_t errlen)
{
	char path[4096];
	uint8_t h[SUMS_HDR_LEN] = { 0 }, *raw = NULL;
	struct stat st;
	uint64_t n;
	int fd, rc;

	memset(s, 0, sizeof(*s));
	qcow2_sums_path(image, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return qcow2_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) < 0)
		rc = qcow2_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
	else if ((uint64_t)st.st_size < SUMS_HDR_LEN)
		rc = bad(err, errlen, path, "shorter than its header");
	else if ((rc = qcow2_pread_all(fd, h, sizeof(h), 0)))
		qcow2_seterr(err, errlen, rc, "%s: %s", path, strerror(-rc));
	if (!rc && (memcmp(h, SUMS_MAGIC, 8) || q_get64(h + 56) != xxh64(h, 56, 0)))
		rc = bad(err, errlen, path, "bad magic or header checksum");
	if (!rc && (q_get32(h + 8) != SUMS_VERSION || q_get32(h + 16) != SUMS_XXH64))
		rc = qcow2_seterr(err, errlen, -ENOTSUP, "%s: checksum record version %u, algorithm "
				  "%u: this bsyncctl reads version 1, XXH64", path, q_get32(h + 8),
				  q_get32(h + 16));
	if (rc)
		goto out;
	s->cluster_size = q_get32(h + 20);
	s->virtual_size = q_get64(h + 24);
	s->complete = q_get32(h + 32) == 1;
	s->image_file_size = q_get64(h + 48);
	/* an unfinished record's count is not kept: its entries are what the file holds */
	n = s->complete ? q_get64(h + 40) : ((uint64_t)st.st_size - SUMS_HDR_LEN) / SUMS_ENTRY_LEN;
	if (n > ((uint64_t)st.st_size - SUMS_HDR_LEN) / SUMS_ENTRY_LEN) {
		rc = bad(err, errlen, path, "shorter than its entries");
		goto out;
	}
	raw = malloc(n ? n * SUMS_ENTRY_LEN : 1);
	s->e = calloc(n ? n : 1, sizeof(*s->e));
	if (!raw || !s->e) {
		rc = qcow2_seterr(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	rc = qcow2_pread_all(fd, raw, n * SUMS_ENTRY_LEN, SUMS_HDR_LEN);
	if (rc) {
		qcow2_seterr(err, errlen, rc, "%s: %s", path, strerror(-rc));
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		s->e[i].off = q_get64(raw + i * SUMS_ENTRY_LEN);
		s->e[i].hash = q_get64(raw + i * SUMS_ENTRY_LEN + 8);
	}
	s->n = n;
	qsort(s->e, n, sizeof(*s->e), cmp_off);
	for (uint64_t i = 1; i < n; i++)
		if (s->e[i].off == s->e[i - 1].off) {
			rc = bad(err, errlen, path, "a cluster recorded twice");
			goto out;
		}
	rc = 1;
out:
	free(raw);
	close(fd);
	if (rc < 0)
		qcow2_sums_free(s);
	return rc;
}

void qcow2_sums_free(struct qcow2_sums *s)
{
	free(s->e);
	memset(s, 0, sizeof(*s));
}

struct qcow2_sum *qcow2_sums_find(const struct qcow2_sums *s, uint64_t off)
{
	struct qcow2_sum key = { .off = off };

	return s->n ? bsearch(&key, s->e, s->n, sizeof(*s->e), cmp_off) : NULL;
}
