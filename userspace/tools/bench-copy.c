// SPDX-License-Identifier: GPL-2.0
/*
 * The best plain copy of a full backup's work: the bound make bench
 * measures bsyncd's full backup against (scripts/bench-bsyncd).
 *
 *   bench-copy SOURCE TARGET [CHUNK_KIB]
 *
 * Reads SOURCE whole with O_DIRECT in 4 MiB requests and writes only its
 * non-zero chunks (64 KiB by default, the unit a backup skips zeroes in),
 * a run of them per write, at the same offsets into TARGET: a raw file
 * preallocated to SOURCE's size, written with O_DIRECT and fsynced at the
 * end. A reader thread and the writer overlap through a ring of buffers.
 * Prints "SECONDS BYTES-WRITTEN".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REQ (4u << 20)
#define DEPTH 4

struct slot {
	unsigned char *buf;
	off_t off;
	size_t len;		/* 0: the reader is done */
	bool full;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slot ring[DEPTH];
	int src, dst;
	off_t size;
	int err;		/* first errno, reader or writer */
} c = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static bool all_zero(const unsigned char *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

static int full_io(bool write, int fd, unsigned char *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* err: a positive errno */
static void fail(int err)
{
	pthread_mutex_lock(&c.lock);
	if (!c.err)
		c.err = err;
	pthread_cond_broadcast(&c.cond);
	pthread_mutex_unlock(&c.lock);
}

static void *reader(void *arg)
{
	off_t off = 0;

	(void)arg;
	for (unsigned int i = 0;; i = (i + 1) % DEPTH) {
		struct slot *s = &c.ring[i];
		size_t len = off < c.size ? (size_t)(c.size - off < REQ ? c.size - off : REQ) : 0;
		int r = 0;

		pthread_mutex_lock(&c.lock);
		while (s->full && !c.err)
			pthread_cond_wait(&c.cond, &c.lock);
		r = c.err;
		pthread_mutex_unlock(&c.lock);
		if (r)
			return NULL;
		if (len)
			r = full_io(false, c.src, s->buf, len, off);
		if (r) {
			fail(-r);
			return NULL;
		}
		pthread_mutex_lock(&c.lock);
		s->off = off;
		s->len = len;
		s->full = true;
		pthread_cond_broadcast(&c.cond);
		pthread_mutex_unlock(&c.lock);
		if (!len)
			return NULL;
		off += (off_t)len;
	}
}

/* Writes the non-zero chunk runs of each buffer; the bytes written. */
static long long writer(size_t chunk)
{
	long long written = 0;

	for (unsigned int i = 0;; i = (i + 1) % DEPTH) {
		struct slot *s = &c.ring[i];
		size_t pos = 0, run;
		int r;

		pthread_mutex_lock(&c.lock);
		while (!s->full && !c.err)
			pthread_cond_wait(&c.cond, &c.lock);
		r = c.err;
		pthread_mutex_unlock(&c.lock);
		if (r)
			return -1;
		if (!s->len)
			return written;
		while (pos < s->len) {
			for (run = pos; run < s->len && !all_zero(s->buf + run, chunk); run += chunk)
				;
			if (run > pos) {
				r = full_io(true, c.dst, s->buf + pos, run - pos, s->off + (off_t)pos);
				if (r) {
					fail(-r);
					return -1;
				}
				written += (long long)(run - pos);
				pos = run;
			} else {
				pos += chunk;
			}
		}
		pthread_mutex_lock(&c.lock);
		s->full = false;
		pthread_cond_broadcast(&c.cond);
		pthread_mutex_unlock(&c.lock);
	}
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t rt;
	size_t chunk;
	long long written;
	int r;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: bench-copy SOURCE TARGET [CHUNK_KIB]\n");
		return 2;
	}
	chunk = (argc == 4 ? strtoul(argv[3], NULL, 10) : 64) << 10;
	if (!chunk || REQ % chunk) {
		fprintf(stderr, "bench-copy: the chunk must divide 4 MiB\n");
		return 2;
	}
	c.src = open(argv[1], O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (c.src < 0 || (c.size = lseek(c.src, 0, SEEK_END)) < 0) {
		fprintf(stderr, "bench-copy: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	c.dst = open(argv[2], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c.dst < 0 || (r = posix_fallocate(c.dst, 0, c.size)) || fsync(c.dst)) {
		fprintf(stderr, "bench-copy: %s: cannot preallocate it\n", argv[2]);
		return 1;
	}
	close(c.dst);
	c.dst = open(argv[2], O_RDWR | O_DIRECT | O_CLOEXEC);
	if (c.dst < 0) {
		fprintf(stderr, "bench-copy: %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	for (int i = 0; i < DEPTH; i++)
		if (posix_memalign((void **)&c.ring[i].buf, 4096, REQ)) {
			fprintf(stderr, "bench-copy: out of memory\n");
			return 1;
		}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pthread_create(&rt, NULL, reader, NULL)) {
		fprintf(stderr, "bench-copy: cannot start the reader\n");
		return 1;
	}
	written = writer(chunk);
	pthread_join(rt, NULL);
	if (written >= 0 && fsync(c.dst))
		fail(errno);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (c.err) {
		fprintf(stderr, "bench-copy: %s\n", strerror(c.err));
		return 1;
	}
	printf("%.6f %lld\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       written);
	return 0;
}
