// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2-bench: benchmark helper for scripts/bench-qcow2.
 *
 *   qcow2-bench gen RAW SIZE PERCENT [CLUSTER]
 *       write a sparse raw file of SIZE bytes in which PERCENT % of the
 *       clusters, at random positions, hold random data (the rest are holes)
 *   qcow2-bench write RAW OUT.qcow2 [CLUSTER]
 *       convert RAW to a new qcow2 image with the dm-bsync writer, the way
 *       `qemu-img convert` does it: a reader thread finds the data extents
 *       of RAW with SEEK_DATA/SEEK_HOLE and reads only those (holes are not
 *       read), packed into 16 MiB buffers, while the writer skips all-zero
 *       clusters; prints "seconds=S data_bytes=N" (close, including fsync,
 *       is timed)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qcow2.h"

#define CHUNK	(16u << 20)
#define MAXSEG	4096u		/* extents per buffer */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_rand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int gen(const char *path, uint64_t size, unsigned pct, uint32_t cs)
{
	uint64_t nc = size / cs, want = nc * pct / 100;
	uint8_t *map = calloc(nc, 1), *buf = malloc(CHUNK);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (!map || !buf || fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror(path);
		return 1;
	}
	/* choose exactly `want` clusters at random positions */
	for (uint64_t n = 0; n < want;) {
		uint64_t c = next_rand() % nc;

		if (!map[c]) {
			map[c] = 1;
			n++;
		}
	}
	for (uint64_t c = 0; c < nc;) {
		uint64_t run = 0;

		while (c + run < nc && map[c + run] && (run + 1) * cs <= CHUNK)
			run++;
		if (!run) {
			c++;
			continue;
		}
		for (size_t i = 0; i < run * cs; i += 8) {
			uint64_t v = next_rand() | 1;

			memcpy(buf + i, &v, 8);
		}
		if (pwrite(fd, buf, run * cs, (off_t)(c * cs)) != (ssize_t)(run * cs)) {
			perror("pwrite");
			return 1;
		}
		c += run;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		perror(path);
		return 1;
	}
	free(map);
	free(buf);
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	static const uint8_t z[4096];

	for (size_t i = 0; i < len; i += sizeof(z)) {
		size_t n = len - i < sizeof(z) ? len - i : sizeof(z);

		if (memcmp(p + i, z, n))
			return false;
	}
	return true;
}

/* Write [off, off+len) of buf, skipping all-zero clusters. */
static int put_extent(struct qcow2_image *img, const uint8_t *buf, uint64_t off,
		      size_t len, uint32_t cs, uint64_t *data)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && !all_zero(buf + j, len - j < cs ? len - j : cs))
			j += cs;
		if (j > i) {
			size_t n = (j > len ? len : j) - i;
			int rc = qcow2_write_cluster(img, off + i, buf + i, n);

			if (rc) {
				fprintf(stderr, "write: %s\n", qcow2_errmsg(img));
				return rc;
			}
			*data += n;
		}
		i = j + cs;
	}
	return 0;
}

/* Extent [pos, pos+len) of RAW, at off in its buffer. */
struct seg {
	uint64_t pos;
	size_t off, len;
};

/* A reader thread fills one buffer while the writer empties the other. */
struct reader {
	int fd;
	uint64_t end;
	uint32_t cs;
	uint8_t *buf[2];
	struct seg *seg[2];
	size_t nseg[2];
	int full[2];		/* 1 = data ready, -1 = EOF, -2 = error */
	uint64_t hint;		/* data up to here was announced (WILLNEED) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/*
 * Next data extent at or after *pos, widened to whole clusters (a cluster
 * is read once even if two extents share it).  0 at the end of the data.
 */
static int next_extent(struct reader *r, uint64_t *pos, uint64_t *len)
{
	off_t d, h;

	if (*pos >= r->end)
		return 0;
	d = lseek(r->fd, (off_t)*pos, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? 0 : -errno;
	h = lseek(r->fd, d, SEEK_HOLE);
	if (h < 0)
		return -errno;
	d &= ~(off_t)(r->cs - 1);
	h = (h + r->cs - 1) & ~(off_t)(r->cs - 1);
	if ((uint64_t)d < *pos)
		d = (off_t)*pos;
	if ((uint64_t)h > r->end)
		h = (off_t)r->end;
	*pos = (uint64_t)d;
	*len = (uint64_t)(h - d);
	return 1;
}

/* Fill buffer i with up to CHUNK bytes of extents from *ext on. */
static int fill(struct reader *r, int i, uint64_t *ext, uint64_t *left)
{
	size_t used = 0;

	r->nseg[i] = 0;
	while (used < CHUNK && r->nseg[i] < MAXSEG) {
		size_t n;
		ssize_t got;

		if (!*left) {
			int rc = next_extent(r, ext, left);

			if (rc <= 0)
				return rc < 0 ? rc : (r->nseg[i] ? 1 : 0);
		}
		n = *left < CHUNK - used ? (size_t)*left : CHUNK - used;
		got = pread(r->fd, r->buf[i] + used, n, (off_t)*ext);
		if (got != (ssize_t)n)
			return got < 0 ? -errno : -EIO;
		r->seg[i][r->nseg[i]++] = (struct seg){ *ext, used, n };
		used += n;
		*ext += n;
		*left -= n;
	}
	return 1;
}

/*
 * Announce the next `bytes` of data extents with POSIX_FADV_WILLNEED: the
 * kernel starts reading them at once, so many reads are in flight as with
 * qemu-img's parallel requests, instead of one 128 KiB pread at a time.
 */
static void prefetch(struct reader *r, uint64_t bytes)
{
	uint64_t len = 0;

	while (bytes && next_extent(r, &r->hint, &len) > 0) {
		if (len > bytes)
			len = bytes;
		posix_fadvise(r->fd, (off_t)r->hint, (off_t)len, POSIX_FADV_WILLNEED);
		r->hint += len;
		bytes -= len;
	}
}

static void *read_thread(void *arg)
{
	struct reader *r = arg;
	uint64_t ext = 0, left = 0;

	prefetch(r, CHUNK);
	for (int i = 0;; i ^= 1) {
		int rc;

		prefetch(r, CHUNK);

		pthread_mutex_lock(&r->mu);
		while (r->full[i])
			pthread_cond_wait(&r->cv, &r->mu);
		pthread_mutex_unlock(&r->mu);
		rc = fill(r, i, &ext, &left);
		pthread_mutex_lock(&r->mu);
		r->full[i] = rc > 0 ? 1 : rc == 0 ? -1 : -2;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		if (rc <= 0)
			return NULL;
	}
}

static int convert(const char *raw, const char *out, uint32_t cs)
{
	struct qcow2_create_opts o = { .cluster_size = cs };
	struct reader r = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct qcow2_image *img;
	pthread_t th;
	char err[512];
	uint64_t data = 0;
	double t0 = now();
	int rc = 0;

	off_t end;

	r.fd = open(raw, O_RDONLY);
	r.buf[0] = aligned_alloc(4096, CHUNK);
	r.buf[1] = aligned_alloc(4096, CHUNK);
	r.seg[0] = malloc(MAXSEG * sizeof(struct seg));
	r.seg[1] = malloc(MAXSEG * sizeof(struct seg));
	if (r.fd < 0 || !r.buf[0] || !r.buf[1] || !r.seg[0] || !r.seg[1] ||
	    (end = lseek(r.fd, 0, SEEK_END)) < 0) {
		perror(raw);
		return 1;
	}
	r.end = (uint64_t)end;
	posix_fadvise(r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	o.virtual_size = r.end;
	rc = qcow2_create(out, &o, &img, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	cs = qcow2_cluster_size(img);
	r.cs = cs;
	pthread_create(&th, NULL, read_thread, &r);
	for (int i = 0; !rc; i ^= 1) {
		int full;

		pthread_mutex_lock(&r.mu);
		while (!r.full[i])
			pthread_cond_wait(&r.cv, &r.mu);
		full = r.full[i];
		pthread_mutex_unlock(&r.mu);
		if (full < 0) {
			rc = full == -1 ? 0 : -EIO;
			break;
		}
		for (size_t k = 0; !rc && k < r.nseg[i]; k++) {
			const struct seg *sg = &r.seg[i][k];

			rc = put_extent(img, r.buf[i] + sg->off, sg->pos, sg->len, cs, &data);
		}
		pthread_mutex_lock(&r.mu);
		r.full[i] = 0;
		pthread_cond_broadcast(&r.cv);
		pthread_mutex_unlock(&r.mu);
	}
	if (rc) {
		fprintf(stderr, "conversion failed: %s\n", strerror(-rc));
		exit(1);	/* the reader thread may still be blocked */
	}
	pthread_join(th, NULL);
	rc = qcow2_close(img, true, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "close: %s\n", err);
		return 1;
	}
	printf("seconds=%.3f data_bytes=%" PRIu64 "\n", now() - t0, data);
	close(r.fd);
	free(r.buf[0]);
	free(r.buf[1]);
	free(r.seg[0]);
	free(r.seg[1]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "gen"))
		return gen(argv[2], strtoull(argv[3], NULL, 0),
			   (unsigned)atoi(argv[4]),
			   argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 0) : 65536);
	if (argc >= 4 && !strcmp(argv[1], "write"))
		return convert(argv[2], argv[3],
			       argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 0) : 0);
	fprintf(stderr,
		"usage: %s gen RAW SIZE PERCENT [CLUSTER]\n"
		"       %s write RAW OUT.qcow2 [CLUSTER]\n", argv[0], argv[0]);
	return 2;
}
