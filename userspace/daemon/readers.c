// SPDX-License-Identifier: GPL-2.0
/*
 * The reader pool: slots, reader threads, native AIO and zero detection.
 * See readers.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "copyset.h"
#include "readers.h"

#define READ_AHEAD_MAX (32u << 20)	/* at most this much read ahead */

static bool all_zero(const char *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	size_t i;

	/*
	 * Eight words per test, scalar: faster than one word per test, and,
	 * in a TCG guest, than SSE2/AVX2 or memcmp (emulated vector loads are
	 * slower than scalar ones).
	 */
	for (i = 0; i + 8 <= n / 8; i += 8)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7])
			return false;
	for (i = i * 8; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Which clusters of buf (len bytes read at a cluster boundary) read as zeroes. */
void zero_map(const char *buf, uint64_t len, uint64_t cluster, bool *zero)
{
	uint64_t i;

	for (i = 0; i < len; i += cluster)
		*zero++ = all_zero(buf + i, len - i < cluster ? len - i : cluster);
}

int read_direct(int fd, char *buf, uint64_t off, uint64_t len)
{
	uint64_t alen = (len + 4095) & ~4095ull;
	ssize_t n = pread(fd, buf, alen, (off_t)off);

	if (n < 0)
		return -errno;
	return (uint64_t)n < len ? -EIO : 0;
}

/*
 * Read spans [0, n) of s at once with native AIO: *res is 0 or -errno per
 * span.  Returns false if AIO failed before any read was in flight (the
 * caller reads them one by one instead).
 */
static bool aio_read_spans(struct slot *s, int n, int *res)
{
	struct readers *rd = s->rd;
	struct iocb cb[SLOT_SPANS], *cbp[SLOT_SPANS];
	struct io_event ev[SLOT_SPANS];
	int k, sub = 0, done = 0;

	for (k = 0; k < n; k++) {
		memset(&cb[k], 0, sizeof(cb[k]));
		cb[k].aio_fildes = (uint32_t)rd->fd;
		cb[k].aio_lio_opcode = IOCB_CMD_PREAD;
		cb[k].aio_buf = (uint64_t)(uintptr_t)(s->buf + s->span[k].at);
		cb[k].aio_nbytes = (s->span[k].len + 4095) & ~4095ull;
		cb[k].aio_offset = (int64_t)s->span[k].off;
		cb[k].aio_data = (uint64_t)k;
		cbp[k] = &cb[k];
		res[k] = -EIO;
	}
	while (sub < n) {
		long r = syscall(SYS_io_submit, s->aio, (long)(n - sub), cbp + sub);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (!sub)
				return false;
			for (k = sub; k < n; k++)
				res[k] = r < 0 ? -errno : -EIO;
			break;
		}
		sub += (int)r;
	}
	while (done < sub) {
		long r = syscall(SYS_io_getevents, s->aio, 1L, (long)(sub - done), ev, NULL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* cannot happen with a valid context; io_destroy waits for the reads */
			syscall(SYS_io_destroy, s->aio);
			s->aio = 0;
			break;
		}
		for (k = 0; k < r; k++) {
			const struct span *sp = &s->span[ev[k].data];

			res[ev[k].data] = ev[k].res < 0 ? (int)ev[k].res :
					  (uint64_t)ev[k].res < sp->len ? -EIO : 0;
		}
		done += (int)r;
	}
	return true;
}

/*
 * Read a slot's spans: all at once (AIO), or one by one; what counts is
 * the first that failed, and the spans before it.  An injected failure is
 * always the last span and is not read.
 */
static void read_slot(struct slot *s)
{
	struct readers *rd = s->rd;
	int res[SLOT_SPANS], n = s->nspan, k;

	if (n && s->span[n - 1].err) {
		res[n - 1] = s->span[n - 1].err;
		n--;
	}
	if (n < 2 || !s->aio || !aio_read_spans(s, n, res)) {
		for (k = 0; k < n; k++) {
			res[k] = read_direct(rd->fd, s->buf + s->span[k].at, s->span[k].off,
					   s->span[k].len);
			if (res[k])
				break;
		}
	}
	s->err = 0;
	for (s->nread = 0; s->nread < s->nspan; s->nread++) {
		const struct span *sp = &s->span[s->nread];

		s->err = res[s->nread];
		if (s->err)
			break;
		zero_map(s->buf + sp->at, sp->len, rd->cluster, s->zero + sp->at / rd->cluster);
	}
}

static void *reader_thread(void *arg)
{
	struct slot *s = arg;
	struct readers *rd = s->rd;

	pthread_mutex_lock(&rd->mu);
	for (;;) {
		while (!rd->quit && s->state != SLOT_QUEUED)
			pthread_cond_wait(&s->work, &rd->mu);
		if (s->state != SLOT_QUEUED)	/* quit */
			break;
		pthread_mutex_unlock(&rd->mu);
		read_slot(s);
		pthread_mutex_lock(&rd->mu);
		s->state = SLOT_DONE;
		pthread_cond_signal(&rd->done);
	}
	pthread_mutex_unlock(&rd->mu);
	return NULL;
}

/* Stop and free the readers; waits for reads in flight. */
static void readers_stop(struct readers *rd)
{
	int i;

	pthread_mutex_lock(&rd->mu);
	rd->quit = true;
	for (i = 0; i < rd->depth; i++)
		pthread_cond_signal(&rd->slot[i].work);
	pthread_mutex_unlock(&rd->mu);
	for (i = 0; i < rd->nthreads; i++)
		pthread_join(rd->slot[i].thread, NULL);
	for (i = 0; i < rd->depth; i++) {
		if (rd->slot[i].aio)
			syscall(SYS_io_destroy, rd->slot[i].aio);
		free(rd->slot[i].buf);
		free(rd->slot[i].zero);
		pthread_cond_destroy(&rd->slot[i].work);
	}
	pthread_cond_destroy(&rd->done);
	pthread_mutex_destroy(&rd->mu);
}

static int readers_start(struct readers *rd, uint64_t step)
{
	int i, r = 0;

	memset(rd, 0, sizeof(*rd));
	rd->step = step;
	rd->fd = -1;
	rd->depth = (int)(READ_AHEAD_MAX / step);
	if (rd->depth > READERS_MAX)
		rd->depth = READERS_MAX;
	if (rd->depth < 2)
		rd->depth = 2;
	pthread_mutex_init(&rd->mu, NULL);
	pthread_cond_init(&rd->done, NULL);
	for (i = 0; i < rd->depth; i++) {
		struct slot *s = &rd->slot[i];

		s->rd = rd;
		pthread_cond_init(&s->work, NULL);
		if (syscall(SYS_io_setup, SLOT_SPANS, &s->aio))
			s->aio = 0;	/* no AIO (aio-max-nr reached): one read at a time */
		if (posix_memalign((void **)&s->buf, 4096, step))
			s->buf = NULL;
		/* for any job's cluster size: it is at least BACKUP_CLUSTER_MIN */
		s->zero = calloc(step / BACKUP_CLUSTER_MIN, sizeof(bool));
		if (!s->buf || !s->zero)
			r = -ENOMEM;
	}
	for (i = 0; !r && i < rd->depth; i++) {
		r = -pthread_create(&rd->slot[i].thread, NULL, reader_thread, &rd->slot[i]);
		if (!r)
			rd->nthreads++;
	}
	if (r)
		readers_stop(rd);
	return r;
}

/*
 * Reader sets outlive their job: starting eight threads and mapping 32 MiB
 * of buffers cost a small backup (an incremental) about as much as its
 * copy.  One idle set is kept, its buffers' pages given back lazily
 * (MADV_FREE: the kernel takes them only if it needs memory).
 */
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static struct readers *idle_readers;

struct readers *readers_get(uint64_t step, int fd, uint64_t cluster, int *err)
{
	struct readers *rd = NULL;

	pthread_mutex_lock(&idle_mu);
	if (idle_readers && idle_readers->step == step) {
		rd = idle_readers;
		idle_readers = NULL;
	}
	pthread_mutex_unlock(&idle_mu);
	if (!rd) {
		rd = malloc(sizeof(*rd));
		*err = rd ? readers_start(rd, step) : -ENOMEM;
		if (*err) {
			free(rd);
			return NULL;
		}
	}
	pthread_mutex_lock(&rd->mu);
	rd->fd = fd;
	rd->cluster = cluster;
	pthread_mutex_unlock(&rd->mu);
	return rd;
}

static void readers_free(struct readers *rd)
{
	if (rd) {
		readers_stop(rd);
		free(rd);
	}
}

void readers_put(struct readers *rd)
{
	int i;

	pthread_mutex_lock(&rd->mu);
	for (i = 0; i < rd->depth; i++) {
		while (rd->slot[i].state == SLOT_QUEUED)
			pthread_cond_wait(&rd->done, &rd->mu);
		rd->slot[i].state = SLOT_IDLE;
	}
	rd->fd = -1;
	pthread_mutex_unlock(&rd->mu);
	pthread_mutex_lock(&idle_mu);
	if (!idle_readers) {
		for (i = 0; i < rd->depth; i++)
			madvise(rd->slot[i].buf, rd->step, MADV_FREE);
		idle_readers = rd;
		rd = NULL;
	}
	pthread_mutex_unlock(&idle_mu);
	readers_free(rd);
}

void readers_drop_idle(void)
{
	struct readers *rd;

	pthread_mutex_lock(&idle_mu);
	rd = idle_readers;
	idle_readers = NULL;
	pthread_mutex_unlock(&idle_mu);
	readers_free(rd);
}

void slot_submit(struct readers *rd, struct slot *s)
{
	pthread_mutex_lock(&rd->mu);
	if (s->read) {
		s->state = SLOT_QUEUED;
	} else {
		s->state = SLOT_DONE;
		s->nread = s->nspan;
		s->err = 0;
	}
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&rd->mu);
}

void slot_wait(struct readers *rd, struct slot *s)
{
	pthread_mutex_lock(&rd->mu);
	while (s->state != SLOT_DONE)
		pthread_cond_wait(&rd->done, &rd->mu);
	pthread_mutex_unlock(&rd->mu);
}
