// SPDX-License-Identifier: GPL-2.0
/*
 * The backup job.  See backup.h and Documentation/bsyncd.rst.
 *
 * At drive-backup (daemon lock held) the arguments are checked in QEMU's
 * order, the target image is made, a scratch store provisioned and the
 * kernel session started: that instant is the backup's point in time, and
 * the bitmap (if any) is frozen at it.  A read-only snapshot view is made
 * and the copy set computed.  The job thread then reads the view with
 * O_DIRECT in large requests, writes data and zero clusters into the image
 * and tells the kernel what it copied (session_done).  At the end the
 * session is ended and, at finalize, the bitmap sync rule applied with
 * unfreeze abdicate|reclaim|always.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "dmctl.h"
#include "inflight.h"
#include "job.h"
#include "node.h"
#include "qcow2.h"
#include "store.h"
#include "view.h"

#define CHUNK (4u << 20)		/* bytes per read request (at least a cluster) */
#define ZERO_CHUNK (64u << 20)		/* bytes per zero/skip step */
#define QDEPTH 8			/* reads in flight, one reader thread each */
#define QBYTES (32u << 20)		/* at most this much read ahead */
#define BACKUP_CLUSTER_MIN (64u << 10)	/* QEMU's BACKUP_CLUSTER_SIZE_DEFAULT */

enum sync_mode { SYNC_FULL, SYNC_TOP, SYNC_BITMAP, SYNC_NONE };
enum bitmap_mode { BM_ON_SUCCESS, BM_NEVER, BM_ALWAYS };

struct run {
	uint64_t off, len;
	bool read;		/* false: known unallocated, written as zeroes */
};

struct backup_job {
	struct job job;		/* first */
	enum sync_mode sync;
	enum bitmap_mode bmode;
	char *bitmap;		/* frozen bitmap or NULL */
	char *node;
	struct view view;	/* the point in time the job copies */
	uint64_t size, cluster;
	struct qcow2_image *img;
	char *target;
	struct run *runs;
	size_t nruns;
	int inject_skip, inject_errno;	/* -1: none */
};

struct inject {
	char device[NODE_NAME_MAX + 1];
	int skip, err;
	struct inject *next;
};

static const char *store_dir = "/var/lib/bsyncd";
static struct inject *injects;

void backup_set_store_dir(const char *dir)
{
	store_dir = dir;
}

static const char *const sync_names[] = { "full", "top", "bitmap", "none" };
static const char *const session_modes[] = { "full", "allocated", "bitmap", "none" };

/*
 * Argument checks: blockdev.c do_backup_common() order and texts.
 */
static int check_sync_args(const struct backup_args *a, const char *device,
			   enum sync_mode *sync, enum bitmap_mode *bmode, struct qerr *e)
{
	const char *s = a->sync, *mode = a->bitmap_mode;
	struct node_bitmap bm;
	int r;

	if (!strcmp(s, "full"))
		*sync = SYNC_FULL;
	else if (!strcmp(s, "top"))
		*sync = SYNC_TOP;
	else if (!strcmp(s, "bitmap") || !strcmp(s, "incremental"))
		*sync = SYNC_BITMAP;
	else if (!strcmp(s, "none"))
		*sync = SYNC_NONE;
	else
		return qerr_set(e, "Parameter 'sync' does not accept value '%s'", s);
	if (mode && strcmp(mode, "on-success") && strcmp(mode, "never") && strcmp(mode, "always"))
		return qerr_set(e, "Parameter 'bitmap-mode' does not accept value '%s'", mode);

	if (*sync == SYNC_BITMAP && !a->bitmap)
		return qerr_set(e, "must provide a valid bitmap name for '%s' sync mode", s);
	if (!strcmp(s, "incremental")) {
		if (mode && strcmp(mode, "on-success"))
			return qerr_set(e, "Bitmap sync mode must be 'on-success' when using sync mode '%s'",
					s);
		mode = "on-success";
	}
	if (a->bitmap) {
		r = node_find_bitmap(device, a->bitmap, &bm);
		if (r == -ENOENT)
			return qerr_set(e, "Bitmap '%s' could not be found", a->bitmap);
		if (r)
			return qerr_set(e, "cannot list the bitmaps of '%s': %s", device, strerror(-r));
		if (!mode)
			return qerr_set(e, "Bitmap sync mode must be given when providing a bitmap");
		if (bm.busy)
			return qerr_set(e, "Bitmap '%s' is currently in use by another operation and cannot be used",
					a->bitmap);
		if (*sync == SYNC_NONE)
			return qerr_set(e, "sync mode '%s' does not produce meaningful bitmap outputs",
					sync_names[*sync]);
		if (!strcmp(mode, "never") && *sync != SYNC_BITMAP)
			return qerr_set(e, "Bitmap sync mode '%s' has no meaningful effect when combined with sync mode '%s'",
					mode, sync_names[*sync]);
	} else if (mode) {
		return qerr_set(e, "Cannot specify bitmap sync mode without a bitmap");
	}
	*bmode = !mode || !strcmp(mode, "on-success") ? BM_ON_SUCCESS :
		 !strcmp(mode, "never") ? BM_NEVER : BM_ALWAYS;
	return 0;
}

/*
 * Extents from the kernel ("off:len ... next|end" replies), appended as runs
 * rounded out to the cluster size and merged.
 */
static int add_run(struct backup_job *b, size_t *cap, uint64_t off, uint64_t len, bool rd)
{
	uint64_t end = off + len;
	struct run *last;

	off -= off % b->cluster;
	end = (end + b->cluster - 1) / b->cluster * b->cluster;
	if (end > b->size)
		end = b->size;
	if (off >= end)
		return 0;
	last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	if (last && last->read == rd && off <= last->off + last->len) {
		if (end > last->off + last->len)
			last->len = end - last->off;
		return 0;
	}
	if (last && off < last->off + last->len)	/* overlap with a run of the other kind */
		off = last->off + last->len;
	if (off >= end)
		return 0;
	if (b->nruns == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct run *p = realloc(b->runs, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		b->runs = p;
		*cap = ncap;
	}
	b->runs[b->nruns++] = (struct run){ off, end - off, rd };
	return 0;
}

/*
 * Walk "extents <bitmap>", or what (bitmap NULL): "alloc_extents" or
 * "session_extents"; cb per extent.
 */
static int walk_extents(struct backup_job *b, const char *bitmap, const char *what,
			int (*cb)(struct backup_job *, size_t *, uint64_t, uint64_t, void *),
			size_t *cap, void *arg, char *err, size_t errlen)
{
	uint64_t from = 0;

	for (;;) {
		char msg[BITMAP_NAME_MAX + 64], *reply, *save = NULL, *tok;
		bool end = false, next = false;
		int r;

		if (bitmap)
			snprintf(msg, sizeof(msg), "extents %s %" PRIu64, bitmap, from);
		else
			snprintf(msg, sizeof(msg), "%s %" PRIu64, what, from);
		r = node_message(b->node, msg, &reply, err, errlen);
		if (r)
			return r;
		for (tok = strtok_r(reply, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			uint64_t off, len;

			if (sscanf(tok, "%" SCNu64 ":%" SCNu64, &off, &len) == 2) {
				r = cb(b, cap, off, len, arg);
				if (r) {
					free(reply);
					return r;
				}
			} else if (!strcmp(tok, "end")) {
				end = true;
			} else {
				from = strtoull(tok, NULL, 10);
				next = true;
			}
		}
		free(reply);
		if (end || !next)
			return 0;
	}
}

static int cb_read_run(struct backup_job *b, size_t *cap, uint64_t off, uint64_t len, void *arg)
{
	(void)arg;
	return add_run(b, cap, off, len, true);
}

/* For full: fill the gap before each allocated extent with a zero run. */
static int cb_full(struct backup_job *b, size_t *cap, uint64_t off, uint64_t len, void *arg)
{
	uint64_t *pos = arg;
	int r = 0;

	if (off > *pos)
		r = add_run(b, cap, *pos, off - *pos, false);
	if (!r)
		r = add_run(b, cap, off, len, true);
	*pos = off + len;
	return r;
}

static int compute_runs(struct backup_job *b, char *err, size_t errlen)
{
	size_t cap = 0;
	uint64_t pos = 0;
	int r = 0;

	switch (b->sync) {
	case SYNC_FULL:
		/* after the instant: a superset of what was allocated at it */
		r = walk_extents(b, NULL, "alloc_extents", cb_full, &cap, &pos, err, errlen);
		if (!r && pos < b->size)
			r = add_run(b, &cap, pos, b->size - pos, false);
		break;
	case SYNC_TOP:
		/* exactly the allocation map at the instant */
		r = walk_extents(b, NULL, "session_extents", cb_read_run, &cap, NULL, err, errlen);
		break;
	case SYNC_BITMAP:
		r = walk_extents(b, b->bitmap, NULL, cb_read_run, &cap, NULL, err, errlen);
		break;
	case SYNC_NONE:
		break;
	}
	return r;
}

static uint64_t runs_bytes(const struct backup_job *b)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < b->nruns; i++)
		n += b->runs[i].len;
	return n;
}

static double elapsed(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * The copy loop.
 */
static bool all_zero(const char *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	size_t i;

	/*
	 * Eight words per test: in a TCG guest this scans zeroes at 7.6 GB/s
	 * against 4.4 for one word per test and 1.9-3.5 for SSE2/AVX2 or
	 * memcmp (emulated vector loads are slower than scalar ones).
	 */
	for (i = 0; i + 8 <= n / 8; i += 8)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7])
			return false;
	for (i = i * 8; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Reads in flight: slot i of the ring is served by reader thread i.  The
 * job thread fills slots in copy order and consumes them in the same order,
 * so reads of scattered clusters overlap each other and the image writes,
 * while the image (not thread-safe) is only ever written by the job thread.
 * A slot is one read step: one span of a big run, or the spans of up to
 * SLOT_SPANS small runs, read at once (native AIO) into one buffer and
 * written into the image together.
 */
#define SLOT_SPANS 64		/* qcow2_write_pieces() takes 64 buffers per write */

enum slot_state { SLOT_IDLE, SLOT_QUEUED, SLOT_DONE };

struct span {
	uint64_t off, len;
	size_t at;		/* where in the slot's buffer */
	int err;		/* injected read error, or 0 */
};

struct slot {
	struct span span[SLOT_SPANS];
	int nspan;
	int nread;		/* spans read when done (the rest failed or were dropped) */
	bool read;		/* false: one span known unallocated, nothing to read */
	enum slot_state state;
	int err;		/* 0 or -errno of span nread's read */
	char *buf;		/* step bytes, 4 KiB aligned */
	bool *zero;		/* per cluster of buf: reads as zeroes */
	pthread_cond_t work;	/* wakes this slot's reader only */
	struct readers *rd;
	pthread_t thread;
	aio_context_t aio;	/* reads the spans at once; 0: one by one */
};

struct readers {
	pthread_mutex_t mu;
	pthread_cond_t done;
	struct slot slot[QDEPTH];
	int depth, nthreads;
	bool quit;
	uint64_t step;		/* bytes per slot buffer */
	int fd;			/* the job's view */
	uint64_t cluster;	/* the job's cluster size */
};

struct copier {
	struct backup_job *b;
	int fd;
	char *buf;
	bool *zero;
	uint64_t step;		/* read request size: max(CHUNK, cluster) */
	int reads;
	bool limited;		/* speed set: one read at a time */
	struct timespec rl_start;
	uint64_t rl_bytes;
	/* copied ranges not yet told to the kernel (one message for many) */
	char done_msg[3072];
	size_t done_len;
	uint64_t run_off, run_len, done_bytes;
	struct timespec t0;
	double t_wait, t_put;	/* seconds waiting for reads, writing the image */
	double t_done;		/* seconds in session_done messages (within t_put) */
	double t_readers;	/* seconds starting and stopping the readers */
	int ndone;
};

/* Wait as long as speed asks; true if cancelled meanwhile. */
static bool rate_limit(struct copier *c, uint64_t bytes)
{
	struct job *job = &c->b->job;
	bool stop;

	daemon_lock();
	c->rl_bytes += bytes;
	while (job->speed && !job->cancelled) {
		double want = (double)c->rl_bytes / (double)job->speed, have = elapsed(&c->rl_start);

		if (have >= want)
			break;
		daemon_wait((int)((want - have) * 1000) + 1);
	}
	if (!job->speed) {
		clock_gettime(CLOCK_MONOTONIC, &c->rl_start);
		c->rl_bytes = 0;
	}
	c->limited = job->speed != 0;
	stop = job->cancelled;
	daemon_unlock();
	return stop;
}

/* Tell the kernel what was copied: session_done with every pending range. */
static int done_flush(struct copier *c)
{
	struct timespec t;
	char err[256];
	int r;

	if (c->run_len) {
		c->done_len += (size_t)snprintf(c->done_msg + c->done_len, sizeof(c->done_msg) - c->done_len,
						" %" PRIu64 " %" PRIu64, c->run_off, c->run_len);
		c->run_len = 0;
	}
	if (!c->done_len)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t);
	r = node_message(c->b->node, c->done_msg, NULL, err, sizeof(err));
	c->t_done += elapsed(&t);
	c->ndone++;
	if (r)
		fprintf(stderr, "bsyncd: job %s: %s\n", c->b->job.id, err);
	c->done_len = 0;
	c->done_bytes = 0;
	return r;
}

/*
 * A range is in the image: queue it for session_done (adjacent ranges
 * merge).  Sent when the message is full, every 64 MiB (so the store frees
 * slots), for rate-limited jobs at once, and at the end.
 */
static int session_done(struct copier *c, uint64_t off, uint64_t len)
{
	if (!c->done_len)
		c->done_len = (size_t)snprintf(c->done_msg, sizeof(c->done_msg), "session_done");
	if (c->run_len && c->run_off + c->run_len == off) {
		c->run_len += len;
	} else {
		if (c->run_len) {
			if (c->done_len + 48 > sizeof(c->done_msg)) {
				int r = done_flush(c);

				if (r)
					return r;
				c->done_len = (size_t)snprintf(c->done_msg, sizeof(c->done_msg),
								"session_done");
				c->run_off = off;
				c->run_len = len;
				c->done_bytes += len;
				return 0;
			}
			c->done_len += (size_t)snprintf(c->done_msg + c->done_len,
							sizeof(c->done_msg) - c->done_len,
							" %" PRIu64 " %" PRIu64, c->run_off, c->run_len);
		}
		c->run_off = off;
		c->run_len = len;
	}
	c->done_bytes += len;
	if (c->done_bytes >= (64u << 20) || c->b->job.speed)
		return done_flush(c);
	return 0;
}

static void progress(struct backup_job *b, uint64_t n)
{
	daemon_lock();
	job_progress(&b->job, n);
	daemon_unlock();
}

/* Which clusters of buf (len bytes read at a cluster boundary) read as zeroes. */
static void zero_map(const char *buf, uint64_t len, uint64_t cluster, bool *zero)
{
	uint64_t i;

	for (i = 0; i < len; i += cluster)
		*zero++ = all_zero(buf + i, len - i < cluster ? len - i : cluster);
}

/*
 * Write what was read at off: zero clusters as zero flags, the rest as data,
 * in one write from buf (O_DIRECT, no copy) when there is enough of it.
 */
static int write_out(struct backup_job *b, const char *buf, const bool *zero, uint64_t off,
		     uint64_t len)
{
	uint64_t i = 0, k = 0;

	if (b->cluster == qcow2_cluster_size(b->img))
		return qcow2_write_sparse(b->img, off, buf, (size_t)len, zero);
	/* zero is per backup cluster, a multiple of the image's: run by run */
	while (i < len) {
		bool z = zero[k];
		uint64_t j = i;
		int r;

		while (j < len && zero[k] == z) {
			j += len - j < b->cluster ? len - j : b->cluster;
			k++;
		}
		r = z ? qcow2_write_zero(b->img, off + i, j - i) :
			qcow2_write_cluster(b->img, off + i, buf + i, j - i);
		if (r)
			return r;
		i = j;
	}
	return 0;
}

/* A range is read (or known unallocated): into the image, tell the kernel. */
static int put_range(struct copier *c, uint64_t off, uint64_t len, bool rd, const char *buf,
		     const bool *zero)
{
	struct backup_job *b = c->b;
	int r;

	r = rd ? write_out(b, buf, zero, off, len) : qcow2_write_zero(b->img, off, len);
	if (r)
		return r;
	r = session_done(c, off, len);
	if (r)
		return r;
	progress(b, len);
	return 0;
}

/* The injected read error, if this is the read it is for (0 otherwise). */
static int injected(struct copier *c)
{
	struct backup_job *b = c->b;

	c->reads++;
	if (b->inject_skip >= 0 && c->reads == b->inject_skip + 1) {
		b->inject_skip = -1;
		return -b->inject_errno;
	}
	return 0;
}

/* Read len bytes at off from the view into buf (O_DIRECT: whole blocks). */
static int read_view(int fd, char *buf, uint64_t off, uint64_t len)
{
	uint64_t alen = (len + 4095) & ~4095ull;
	ssize_t n = pread(fd, buf, alen, (off_t)off);

	if (n < 0)
		return -errno;
	return (uint64_t)n < len ? -EIO : 0;
}

/* Copy one range, synchronously; 0, or -errno with *is_read telling which side failed. */
static int copy_range(struct copier *c, uint64_t off, uint64_t len, bool rd, bool *is_read)
{
	int r = 0;

	*is_read = rd;
	if (rd) {
		r = injected(c);
		if (!r)
			r = read_view(c->fd, c->buf, off, len);
		if (r)
			return r;
		zero_map(c->buf, len, c->b->cluster, c->zero);
	}
	*is_read = false;
	return put_range(c, off, len, rd, c->buf, c->zero);
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
			res[k] = read_view(rd->fd, s->buf + s->span[k].at, s->span[k].off,
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
	rd->depth = (int)(QBYTES / step);
	if (rd->depth > QDEPTH)
		rd->depth = QDEPTH;
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

static struct readers *readers_get(const struct copier *c, int *err)
{
	struct readers *rd = NULL;

	pthread_mutex_lock(&idle_mu);
	if (idle_readers && idle_readers->step == c->step) {
		rd = idle_readers;
		idle_readers = NULL;
	}
	pthread_mutex_unlock(&idle_mu);
	if (!rd) {
		rd = malloc(sizeof(*rd));
		*err = rd ? readers_start(rd, c->step) : -ENOMEM;
		if (*err) {
			free(rd);
			return NULL;
		}
	}
	pthread_mutex_lock(&rd->mu);
	rd->fd = c->fd;
	rd->cluster = c->b->cluster;
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

/* The job is done with rd: wait for its reads in flight, keep rd idle or free it. */
static void readers_put(struct readers *rd)
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

static void readers_drop_idle(void)
{
	struct readers *rd;

	pthread_mutex_lock(&idle_mu);
	rd = idle_readers;
	idle_readers = NULL;
	pthread_mutex_unlock(&idle_mu);
	readers_free(rd);
}

/*
 * Fill slot s from the runs at (*i, *pos): a known-unallocated run's next
 * ZERO_CHUNK, or read spans up to the buffer's size.  Small runs share a
 * slot; a rate-limited job reads one span per slot (its reads are paced).
 * No span is added after one whose read is to fail (injected).
 */
static void fill_slot(struct copier *c, struct slot *s, size_t *i, uint64_t *pos)
{
	struct backup_job *b = c->b;
	size_t at = 0;

	s->nspan = 0;
	s->read = b->runs[*i].read;
	while (*i < b->nruns && s->nspan < SLOT_SPANS) {
		const struct run *rn = &b->runs[*i];
		uint64_t room = (s->read ? c->step : ZERO_CHUNK) - at, n = rn->off + rn->len - *pos;
		struct span *sp = &s->span[s->nspan];

		if (rn->read != s->read || !room)
			break;
		if (n > room)
			n = room;
		*sp = (struct span){ *pos, n, at, s->read ? injected(c) : 0 };
		s->nspan++;
		at += (n + 4095) & ~4095ull;	/* O_DIRECT: each span's buffer aligned */
		*pos += n;
		if (*pos == rn->off + rn->len && ++*i < b->nruns)
			*pos = b->runs[*i].off;
		if (!s->read || sp->err || c->limited)
			break;
	}
}

/* The first n spans of slot s are read: into the image together, then told to the kernel. */
static int put_slot(struct copier *c, struct slot *s, int n)
{
	struct backup_job *b = c->b;
	struct qcow2_piece pc[SLOT_SPANS];
	int k, r = 0;

	if (n < 2 || !s->read || b->cluster != qcow2_cluster_size(b->img)) {
		for (k = 0; k < n && !r; k++)
			r = put_range(c, s->span[k].off, s->span[k].len, s->read,
				      s->buf + s->span[k].at, s->zero + s->span[k].at / b->cluster);
		return r;
	}
	for (k = 0; k < n; k++)
		pc[k] = (struct qcow2_piece){ s->span[k].off, s->buf + s->span[k].at,
					      (size_t)s->span[k].len, s->zero + s->span[k].at / b->cluster };
	r = qcow2_write_pieces(b->img, pc, (size_t)n);
	for (k = 0; k < n && !r; k++) {
		r = session_done(c, s->span[k].off, s->span[k].len);
		if (!r)
			progress(b, s->span[k].len);
	}
	return r;
}

static uint64_t slot_read_bytes(const struct slot *s)
{
	uint64_t n = 0;
	int k;

	for (k = 0; s->read && k < s->nspan; k++)
		n += s->span[k].len;
	return n;
}

/*
 * Copy the runs in order, up to depth reads in flight (one while the job
 * is rate-limited, so that it reads no faster than its speed).  A read
 * error stops the copy at that span: what was copied before it is in the
 * image and told to the kernel; reads after it are dropped.
 */
static int copy_runs(struct copier *c, bool *is_read)
{
	struct backup_job *b = c->b;
	struct readers *rd;
	size_t i = 0;
	uint64_t pos = b->nruns ? b->runs[0].off : 0;
	int head = 0, inflight = 0, r = 0;
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	rd = readers_get(c, &r);
	c->t_readers += elapsed(&t);
	if (!rd)
		return r;
	for (;;) {
		struct slot *s;

		if (job_pause_point(&b->job))
			break;
		/* issue, in copy order, as far as the ring and the rate allow */
		while (i < b->nruns && inflight < (c->limited ? 1 : rd->depth)) {
			s = &rd->slot[(head + inflight) % rd->depth];
			fill_slot(c, s, &i, &pos);
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
			inflight++;
		}
		if (!inflight)
			break;
		/* consume the oldest */
		s = &rd->slot[head];
		clock_gettime(CLOCK_MONOTONIC, &t);
		pthread_mutex_lock(&rd->mu);
		while (s->state != SLOT_DONE)
			pthread_cond_wait(&rd->done, &rd->mu);
		pthread_mutex_unlock(&rd->mu);
		c->t_wait += elapsed(&t);
		clock_gettime(CLOCK_MONOTONIC, &t);
		r = put_slot(c, s, s->nread);
		c->t_put += elapsed(&t);
		if (r) {
			*is_read = false;
			break;
		}
		if (s->err) {
			*is_read = true;
			r = s->err;
			break;
		}
		s->state = SLOT_IDLE;
		head = (head + 1) % rd->depth;
		inflight--;
		if (rate_limit(c, slot_read_bytes(s)))
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t);
	readers_put(rd);
	c->t_readers += elapsed(&t);
	return r;
}

/* sync=none: copy what copy-before-write preserved, until cancelled. */
static int copy_preserved(struct copier *c, bool *is_read)
{
	struct backup_job *b = c->b;
	char err[256];

	for (;;) {
		char msg[64], *reply, *save = NULL, *tok;
		int r = 0;

		if (job_pause_point(&b->job))
			return 0;
		snprintf(msg, sizeof(msg), "preserved_extents 0");
		r = node_message(b->node, msg, &reply, err, sizeof(err));
		if (r) {
			fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
			*is_read = true;
			return r;
		}
		for (tok = strtok_r(reply, " \n", &save); tok && !r; tok = strtok_r(NULL, " \n", &save)) {
			uint64_t off, len, p;

			if (sscanf(tok, "%" SCNu64 ":%" SCNu64, &off, &len) != 2)
				continue;
			daemon_lock();
			b->job.len += len;
			daemon_unlock();
			for (p = off; p < off + len && !r; p += c->step) {
				uint64_t n = off + len - p < c->step ? off + len - p : c->step;

				r = copy_range(c, p, n, true, is_read);
			}
		}
		free(reply);
		if (!r)
			r = done_flush(c);
		if (r)
			return r;
		daemon_lock();
		if (!b->job.cancelled)
			daemon_wait(100);
		r = b->job.cancelled;
		daemon_unlock();
		if (r)
			return 0;
	}
}

/*
 * A view read racing the moment a session broke may have returned data
 * from after the start: the image is only good if the session is still
 * active once everything was read.
 */
static int check_session(struct backup_job *b, bool *is_read)
{
	char err[256], *reply = NULL;
	int r;

	r = node_message(b->node, "session_status", &reply, err, sizeof(err));
	if (r) {
		fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
	} else if (strncmp(reply, "state=active", 12)) {
		fprintf(stderr, "bsyncd: job %s: the backup session broke: %s\n", b->job.id, reply);
		r = -EIO;
	}
	free(reply);
	if (r)
		*is_read = true;
	return r;
}

static void *end_session_thread(void *arg)
{
	view_end_session(arg);
	return NULL;
}

/*
 * What a partial image holds, for bsyncctl and chain checks: QEMU keeps such
 * an image as a valid backing file when bitmap-mode is "always".
 */
static void mark_partial(struct backup_job *b, int r)
{
	static const char *const bmode_names[] = { "on-success", "never", "always" };
	char text[QCOW2_TEXT_MAX];

	daemon_lock();
	snprintf(text, sizeof(text),
		 "job=%s\nresult=%s\nerror=%s\ndevice=%s\nsync=%s\nbitmap=%s\nbitmap-mode=%s\n"
		 "copied=%" PRIu64 "\nlen=%" PRIu64 "\n",
		 b->job.id, r == -ECANCELED ? "cancelled" : "failed",
		 r == -ECANCELED ? "" : strerror(-r), b->node, sync_names[b->sync],
		 b->bitmap ? b->bitmap : "", b->bitmap ? bmode_names[b->bmode] : "",
		 b->job.offset, b->job.len);
	daemon_unlock();
	if (qcow2_set_partial(b->img, text))
		fprintf(stderr, "bsyncd: job %s: out of memory for the partial-image record\n", b->job.id);
}

void backup_views_settle(const char *device)
{
	view_settle(device);
}

static int backup_run(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;
	struct copier c = { .b = b, .fd = -1 };
	char path[256], err[512] = "";
	bool is_read = false;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &c.rl_start);
	c.t0 = c.rl_start;
	view_path(&b->view, path, sizeof(path));
	c.fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (c.fd < 0) {
		r = -errno;
		fprintf(stderr, "bsyncd: job %s: cannot open the snapshot view %s: %s\n",
			job->id, path, strerror(-r));
		is_read = true;
		goto out;
	}
	c.step = b->cluster > CHUNK ? b->cluster : CHUNK;
	c.zero = calloc(c.step / b->cluster, sizeof(bool));
	if (posix_memalign((void **)&c.buf, 4096, c.step) || !c.zero) {
		r = -ENOMEM;
		goto out;
	}
	daemon_lock();
	c.limited = job->speed != 0;
	daemon_unlock();
	r = b->sync == SYNC_NONE ? copy_preserved(&c, &is_read) : copy_runs(&c, &is_read);
	{
		/* what reached the image counts, even when the job failed */
		int rf = done_flush(&c);

		if (rf && !r) {
			r = rf;
			is_read = true;
		}
	}
	if (!r)
		r = check_session(b, &is_read);
	fprintf(stderr, "bsyncd: job %s: %s after %.3f s, %" PRIu64 " of %" PRIu64
		" bytes, %d reads (%.3f s waiting for reads, %.3f s writing the image, of which %.3f s in %d session_done; %.3f s starting and stopping readers)\n",
		job->id, r ? strerror(-r) : "copied", elapsed(&c.t0), job->offset, job->len, c.reads,
		c.t_wait, c.t_put, c.t_done, c.ndone, c.t_readers);
out:
	if (c.fd >= 0)
		close(c.fd);
	free(c.buf);
	free(c.zero);
	daemon_lock();
	if (!r && job->cancelled)
		r = -ECANCELED;
	daemon_unlock();
	if (r && r != -ECANCELED) {
		if (!is_read && qcow2_errmsg(b->img)[0])
			fprintf(stderr, "bsyncd: job %s: %s\n", job->id, qcow2_errmsg(b->img));
		job_event_error(job, is_read);
	}
	/*
	 * Everything was read (the view is closed): the session ends in a
	 * thread of its own while the image is closed, as both mostly wait
	 * (for the kernel, for the disk).  The view goes at clean.
	 */
	{
		struct timespec t1;
		pthread_t ender;
		bool ending;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		ending = pthread_create(&ender, NULL, end_session_thread, &b->view) == 0;
		if (!ending)
			view_end_session(&b->view);
		/* A failed or cancelled job's image is well-formed, marked partial. */
		if (r)
			mark_partial(b, r);
		rc = qcow2_close(b->img, true, err, sizeof(err));
		inflight_remove(job->id);
		fprintf(stderr, "bsyncd: job %s: image closed in %.3f s\n", job->id, elapsed(&t1));
		b->img = NULL;
		if (rc && !r) {
			fprintf(stderr, "bsyncd: job %s: %s\n", job->id, err);
			job_event_error(job, false);
			r = rc;
		}
		if (ending)
			pthread_join(ender, NULL);
		fprintf(stderr, "bsyncd: job %s: session ended in %.3f s\n", job->id, elapsed(&t1));
	}
	return r == -ECANCELED ? 0 : r;
}

/* The bitmap sync rule (block/backup.c backup_cleanup_sync_bitmap). */
static void sync_bitmap(struct backup_job *b, int ret)
{
	const char *how;
	char msg[BITMAP_NAME_MAX + 32], err[256];

	if (!b->bitmap)
		return;
	if (b->bmode == BM_NEVER)
		how = "reclaim";
	else if (b->bmode == BM_ALWAYS)
		how = "always";		/* successor | what was not copied */
	else
		how = ret == 0 ? "abdicate" : "reclaim";
	snprintf(msg, sizeof(msg), "unfreeze %s %s", b->bitmap, how);
	if (node_message(b->node, msg, NULL, err, sizeof(err)))
		fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
}

static void backup_commit(struct job *job)
{
	sync_bitmap((struct backup_job *)job, 0);
}

static void backup_abort(struct job *job)
{
	sync_bitmap((struct backup_job *)job, -1);
}

static void backup_clean(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;

	view_release(&b->view);
	free(b->runs);
	b->runs = NULL;
	b->nruns = 0;
}

static void backup_free(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;

	view_release(&b->view);	/* a job that never got to clean */
	free(b->bitmap);
	free(b->node);
	free(b->target);
	free(b->runs);
	free(b);
}

static const struct job_driver backup_driver = {
	.type = "backup",
	.run = backup_run,
	.commit = backup_commit,
	.abort = backup_abort,
	.clean = backup_clean,
	.free = backup_free,
};

static int open_target(struct backup_job *b, const struct backup_args *a, struct qerr *e)
{
	char err[512] = "";
	int r;

	if (a->mode && !strcmp(a->mode, "existing")) {
		if (a->backing_file)
			return qerr_set(e, "'backing-file' cannot be used with mode 'existing'");
		r = qcow2_open_existing(a->target, 0, &b->img, err, sizeof(err));
		if (r)
			return qerr_set(e, "Could not open '%s': %s", a->target, err);
		if (qcow2_virtual_size(b->img) != b->size) {
			qcow2_close(b->img, true, NULL, 0);	/* as it was: empty */
			b->img = NULL;
			return qerr_set(e, "Source and target image have different sizes");
		}
	} else {
		struct qcow2_create_opts o = {
			.virtual_size = b->size,
			.cluster_size = 0,
			.backing_file = a->backing_file,
			.backing_fmt = a->backing_fmt,
		};

		if (a->backing_fmt && !a->backing_file)
			return qerr_set(e, "'backing-fmt' requires 'backing-file'");
		if (a->backing_fmt && strcmp(a->backing_fmt, "qcow2") && strcmp(a->backing_fmt, "raw"))
			return qerr_set(e, "Parameter 'backing-fmt' does not accept value '%s'",
					a->backing_fmt);
		r = qcow2_create(a->target, &o, &b->img, err, sizeof(err));
		if (r)
			return qerr_set(e, "Could not create '%s': %s", a->target, err);
	}
	return 0;
}

static void discard_target(struct backup_job *b, bool created)
{
	if (!b->img)
		return;
	if (created)
		qcow2_abort_and_unlink(b->img);
	else
		qcow2_close(b->img, true, NULL, 0);	/* nothing written: as it was */
	b->img = NULL;
}

static int take_inject(const char *device, int *skip, int *err)
{
	struct inject **pp, *p;

	for (pp = &injects; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->device, device)) {
			p = *pp;
			*pp = p->next;
			*skip = p->skip;
			*err = p->err;
			free(p);
			return 1;
		}
	return 0;
}

int backup_inject_error(const char *device, int64_t skip, int64_t err, struct qerr *e)
{
	struct inject *p;
	int r = node_exists(device);

	if (r <= 0)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", device, device);
	if (skip < 0 || skip > 1000000)
		return qerr_set(e, "Parameter 'skip' expects a value from 0 to 1000000");
	if (err <= 0 || err > 4095)
		return qerr_set(e, "Parameter 'errno' expects a positive errno value");
	p = calloc(1, sizeof(*p));
	if (!p)
		return qerr_set(e, "out of memory");
	snprintf(p->device, sizeof(p->device), "%s", device);
	p->skip = (int)skip;
	p->err = (int)err;
	p->next = injects;
	injects = p;
	return 0;
}

int backup_start(const struct backup_args *a, struct qerr *e)
{
	const char *id = a->job_id ? a->job_id : a->device;
	struct backup_job *b;
	struct node_bitmap bm;
	struct node_info info;
	enum sync_mode sync = SYNC_FULL;
	enum bitmap_mode bmode = BM_ON_SUCCESS;
	struct view_opts vo;
	dev_t protect[2];
	char err[512] = "", msg[BITMAP_NAME_MAX + 256];
	struct timespec t0;
	double t_target = 0, t_store = 0, t_session = 0, t_view = 0;
	bool created;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = node_exists(a->device);
	if (r < 0)
		return qerr_set(e, "cannot look up '%s': %s", a->device, strerror(-r));
	if (!r)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", a->device, a->device);
	if (a->format && strcmp(a->format, "qcow2"))
		return qerr_set(e, "Format '%s' is not supported for the target: bsyncd writes qcow2",
				a->format);
	if (a->mode && strcmp(a->mode, "existing") && strcmp(a->mode, "absolute-paths"))
		return qerr_set(e, "Parameter 'mode' does not accept value '%s'", a->mode);
	if (check_sync_args(a, a->device, &sync, &bmode, e))
		return -1;
	if (a->speed < 0)
		return qerr_set(e, "Parameter 'speed' expects a non-negative value");
	if (job_find_device(a->device))
		return qerr_set(e, "Node '%s' is busy: block device is in use by block job: backup",
				a->device);
	if (!job_id_valid(id))
		return qerr_set(e, "Invalid job ID '%s'", id);
	if (job_find(id))
		return qerr_set(e, "Job ID '%s' already in use", id);
	if (node_get_info(a->device, &info, err, sizeof(err)))
		return qerr_set(e, "%s", err);

	b = calloc(1, sizeof(*b));
	if (!b)
		return qerr_set(e, "out of memory");
	b->sync = sync;
	b->bmode = bmode;
	b->node = strdup(a->device);
	b->target = strdup(a->target);
	b->size = info.size;
	b->inject_skip = -1;
	b->cluster = BACKUP_CLUSTER_MIN;
	if (a->bitmap) {
		b->bitmap = strdup(a->bitmap);
		if (!node_find_bitmap(a->device, a->bitmap, &bm) && bm.granularity > b->cluster)
			b->cluster = bm.granularity;
	}
	if (!b->node || !b->target || (a->bitmap && !b->bitmap)) {
		backup_free(&b->job);
		return qerr_set(e, "out of memory");
	}
	created = !(a->mode && !strcmp(a->mode, "existing"));
	if (open_target(b, a, e)) {
		backup_free(&b->job);
		return -1;
	}
	t_target = elapsed(&t0);
	if (qcow2_cluster_size(b->img) > b->cluster)
		b->cluster = qcow2_cluster_size(b->img);
	if (b->cluster > (64u << 20)) {
		qerr_set(e, "backup cluster size %" PRIu64 " is above 64 MiB", b->cluster);
		goto bad;
	}

	/* The point in time: store, session (freezes the bitmap), view. */
	protect[0] = info.dev;
	protect[1] = info.origin;
	vo = (struct view_opts){
		.store_dir = store_dir, .x_store = a->x_store,
		.protect = protect, .nprotect = 2,
		.size = b->size, .cluster = b->cluster,
		.mode = session_modes[sync], .bitmap = b->bitmap,
	};
	r = view_begin(&b->view, a->device, &vo, err, sizeof(err));
	t_store = t_target + b->view.took_store;
	t_session = t_store + b->view.took_session;
	if (r) {
		qerr_set(e, "%s", err);
		goto bad;
	}
	if (view_create(&b->view, err, sizeof(err))) {
		qerr_set(e, "%s", err);
		goto bad_session;
	}
	t_view = elapsed(&t0);
	if (compute_runs(b, err, sizeof(err))) {
		qerr_set(e, "%s", err);
		goto bad_session;
	}
	if (take_inject(a->device, &b->inject_skip, &b->inject_errno) == 0)
		b->inject_skip = -1;

	r = job_init(&b->job, &backup_driver, id, a->device, a->auto_finalize, a->auto_dismiss, e);
	if (r)
		goto bad_session;
	b->job.speed = (uint64_t)a->speed;
	b->job.len = runs_bytes(b);
	if (sync == SYNC_NONE)
		b->job.len = 0;
	fprintf(stderr, "bsyncd: job %s: %s backup of %s started in %.3f s (target %.3f, store %.3f, "
		"session %.3f, view %.3f): %zu runs, %" PRIu64 " bytes, cluster %" PRIu64 ", store %s\n",
		id, a->sync, a->device, elapsed(&t0), t_target, t_store, t_session, t_view,
		b->nruns, b->job.len, b->cluster, b->view.store);
	inflight_add(id, a->target);
	if (job_start(&b->job, e)) {
		inflight_remove(id);
		return -1;
	}
	return 0;

bad_session:
	view_end_session(&b->view);
	view_release(&b->view);
	if (b->bitmap) {
		snprintf(msg, sizeof(msg), "unfreeze %s reclaim", b->bitmap);
		node_message(a->device, msg, NULL, NULL, 0);
	}
bad:
	discard_target(b, created);
	backup_free(&b->job);
	return -1;
}

int backup_recover(void)
{
	char **names = NULL, err[256];
	int i, n = 0;

	view_remove_leftovers();
	if (node_list(&names))
		return 0;
	for (i = 0; names[i]; i++) {
		struct node_bitmap *v;
		size_t nb, j;

		view_end_stale_session(names[i]);
		if (node_bitmaps(names[i], &v, &nb))
			continue;
		for (j = 0; j < nb; j++) {
			char msg[BITMAP_NAME_MAX + 32];

			if (v[j].anonymous || !v[j].busy)
				continue;
			snprintf(msg, sizeof(msg), "unfreeze %s reclaim", v[j].name);
			if (node_message(names[i], msg, NULL, err, sizeof(err)))
				fprintf(stderr, "bsyncd: recovery: %s\n", err);
			else {
				fprintf(stderr, "bsyncd: recovery: %s: bitmap %s was frozen by a daemon that died; "
					"reclaimed (bitmap | successor)\n", names[i], v[j].name);
				n++;
			}
		}
		free(v);
	}
	node_names_free(names);
	return n;
}

void backup_shutdown(void)
{
	struct inject *p;

	view_settle(NULL);
	readers_drop_idle();
	while ((p = injects)) {
		injects = p->next;
		free(p);
	}
}
