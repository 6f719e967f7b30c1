// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2-bench: benchmark helper for scripts/bench-qcow2.
 *
 *   qcow2-bench gen RAW SIZE PERCENT [CLUSTER]
 *       write a sparse raw file of SIZE bytes in which PERCENT % of the
 *       clusters, at random positions, hold random data (the rest are holes)
 *   qcow2-bench write RAW OUT.qcow2 [CLUSTER]
 *       convert RAW to a new qcow2 image with the dm-bsync writer: a reader
 *       thread reads RAW in 16 MiB chunks (holes cost no disk I/O) while
 *       the writer skips all-zero clusters, as `qemu-img convert` does;
 *       prints
 *       "seconds=S data_bytes=N" (close, including fsync, is timed)
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

/* A reader thread fills one buffer while the writer empties the other. */
struct reader {
	int fd;
	off_t end;
	uint8_t *buf[2];
	size_t len[2];
	int full[2];		/* 1 = data ready, -1 = EOF/error */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void *read_thread(void *arg)
{
	struct reader *r = arg;
	off_t pos = 0;

	for (int i = 0;; i ^= 1) {
		ssize_t n = 0;

		pthread_mutex_lock(&r->mu);
		while (r->full[i])
			pthread_cond_wait(&r->cv, &r->mu);
		pthread_mutex_unlock(&r->mu);
		if (pos < r->end) {
			size_t want = r->end - pos < CHUNK ? (size_t)(r->end - pos) : CHUNK;

			n = pread(r->fd, r->buf[i], want, pos);
			if (n != (ssize_t)want)
				n = -1;
		}
		pthread_mutex_lock(&r->mu);
		r->len[i] = n > 0 ? (size_t)n : 0;
		r->full[i] = n > 0 ? 1 : -1;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		if (n <= 0)
			return NULL;
		pos += n;
	}
}

static int convert(const char *raw, const char *out, uint32_t cs)
{
	struct qcow2_create_opts o = { .cluster_size = cs };
	struct reader r = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct qcow2_image *img;
	pthread_t th;
	char err[512];
	uint64_t data = 0, pos = 0;
	double t0 = now();
	int rc = 0;

	r.fd = open(raw, O_RDONLY);
	r.buf[0] = aligned_alloc(4096, CHUNK);
	r.buf[1] = aligned_alloc(4096, CHUNK);
	if (r.fd < 0 || !r.buf[0] || !r.buf[1] || (r.end = lseek(r.fd, 0, SEEK_END)) < 0) {
		perror(raw);
		return 1;
	}
	posix_fadvise(r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	o.virtual_size = (uint64_t)r.end;
	rc = qcow2_create(out, &o, &img, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	cs = qcow2_cluster_size(img);
	pthread_create(&th, NULL, read_thread, &r);
	for (int i = 0; !rc; i ^= 1) {
		int full;

		pthread_mutex_lock(&r.mu);
		while (!r.full[i])
			pthread_cond_wait(&r.cv, &r.mu);
		full = r.full[i];
		pthread_mutex_unlock(&r.mu);
		if (full < 0)
			break;
		rc = put_extent(img, r.buf[i], pos, r.len[i], cs, &data);
		pos += r.len[i];
		pthread_mutex_lock(&r.mu);
		r.full[i] = 0;
		pthread_cond_broadcast(&r.cv);
		pthread_mutex_unlock(&r.mu);
	}
	if (rc || pos != (uint64_t)r.end) {
		fprintf(stderr, "conversion failed at %" PRIu64 "\n", pos);
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
