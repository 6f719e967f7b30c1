// SPDX-License-Identifier: GPL-2.0
/*
 * The copier: copy loop, image writes, rate limit and session_done
 * batching.  See copier.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copier.h"
#include "node.h"
#include "qmp-server.h"
#include "readers.h"

#define CHUNK (4u << 20)		/* bytes per read request (at least a cluster) */
#define ZERO_CHUNK (64u << 20)		/* bytes per zero/skip step */

/* Wait as long as speed asks; true if cancelled meanwhile. */
static bool rate_limit(struct copier *c, uint64_t bytes)
{
	struct job *job = c->job;
	bool stop;

	daemon_lock();
	c->rl_bytes += bytes;
	while (job->speed && !job->cancelled) {
		double want = (double)c->rl_bytes / (double)job->speed, have = meter_read(&c->rl_start);

		if (have >= want)
			break;
		daemon_wait((int)((want - have) * 1000) + 1);
	}
	if (!job->speed) {
		meter_start(&c->rl_start);
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
	struct meter m;
	char err[256];
	int r;

	if (c->run_len) {
		c->done_len += (size_t)snprintf(c->done_msg + c->done_len, sizeof(c->done_msg) - c->done_len,
						" %" PRIu64 " %" PRIu64, c->run_off, c->run_len);
		c->run_len = 0;
	}
	if (!c->done_len)
		return 0;
	meter_start(&m);
	r = node_message(c->node, c->done_msg, NULL, err, sizeof(err));
	c->stats.t_done += meter_read(&m);
	c->stats.ndone++;
	if (r)
		fprintf(stderr, "bsyncd: job %s: %s\n", c->job->id, err);
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
	if (c->done_bytes >= (64u << 20) || c->job->speed)
		return done_flush(c);
	return 0;
}

static void progress(struct copier *c, uint64_t n)
{
	daemon_lock();
	job_progress(c->job, n);
	daemon_unlock();
}

/*
 * Write what was read at off: zero clusters as zero flags, the rest as data,
 * in one write from buf (O_DIRECT, no copy) when there is enough of it.
 */
static int write_out(struct copier *c, const char *buf, const bool *zero, uint64_t off,
		     uint64_t len)
{
	uint64_t cluster = c->set->cluster, i = 0, k = 0;

	if (cluster == qcow2_cluster_size(c->img))
		return qcow2_write_sparse(c->img, off, buf, (size_t)len, zero);
	/* zero is per backup cluster, a multiple of the image's: run by run */
	while (i < len) {
		bool z = zero[k];
		uint64_t j = i;
		int r;

		while (j < len && zero[k] == z) {
			j += len - j < cluster ? len - j : cluster;
			k++;
		}
		r = z ? qcow2_write_zero(c->img, off + i, j - i) :
			qcow2_write_cluster(c->img, off + i, buf + i, j - i);
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
	int r;

	r = rd ? write_out(c, buf, zero, off, len) : qcow2_write_zero(c->img, off, len);
	if (r)
		return r;
	r = session_done(c, off, len);
	if (r)
		return r;
	progress(c, len);
	return 0;
}

/* The injected read error, if this is the read it is for (0 otherwise). */
static int injected(struct copier *c)
{
	c->stats.reads++;
	if (c->inject_skip >= 0 && c->stats.reads == c->inject_skip + 1) {
		c->inject_skip = -1;
		return -c->inject_errno;
	}
	return 0;
}

/* Copy one range, synchronously; 0, or -errno with *is_read telling which side failed. */
static int copy_range(struct copier *c, uint64_t off, uint64_t len, bool rd, bool *is_read)
{
	int r = 0;

	*is_read = rd;
	if (rd) {
		r = injected(c);
		if (!r)
			r = read_direct(c->fd, c->buf, off, len);
		if (r)
			return r;
		zero_map(c->buf, len, c->set->cluster, c->zero);
	}
	*is_read = false;
	return put_range(c, off, len, rd, c->buf, c->zero);
}

/*
 * Fill slot s from the runs at (*i, *pos): a known-unallocated run's next
 * ZERO_CHUNK, or read spans up to the buffer's size.  Small runs share a
 * slot; a rate-limited job reads one span per slot (its reads are paced).
 * No span is added after one whose read is to fail (injected).
 */
static void fill_slot(struct copier *c, struct slot *s, size_t *i, uint64_t *pos)
{
	const struct copyset *set = c->set;
	size_t at = 0;

	s->nspan = 0;
	s->read = set->run[*i].read;
	while (*i < set->n && s->nspan < SLOT_SPANS) {
		const struct run *rn = &set->run[*i];
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
		if (*pos == rn->off + rn->len && ++*i < set->n)
			*pos = set->run[*i].off;
		if (!s->read || sp->err || c->limited)
			break;
	}
}

/* The first n spans of slot s are read: into the image together, then told to the kernel. */
static int put_slot(struct copier *c, struct slot *s, int n)
{
	uint64_t cluster = c->set->cluster;
	struct qcow2_piece pc[SLOT_SPANS];
	int k, r = 0;

	if (n < 2 || !s->read || cluster != qcow2_cluster_size(c->img)) {
		for (k = 0; k < n && !r; k++)
			r = put_range(c, s->span[k].off, s->span[k].len, s->read,
				      s->buf + s->span[k].at, s->zero + s->span[k].at / cluster);
		return r;
	}
	for (k = 0; k < n; k++)
		pc[k] = (struct qcow2_piece){ s->span[k].off, s->buf + s->span[k].at,
					      (size_t)s->span[k].len, s->zero + s->span[k].at / cluster };
	r = qcow2_write_pieces(c->img, pc, (size_t)n);
	for (k = 0; k < n && !r; k++) {
		r = session_done(c, s->span[k].off, s->span[k].len);
		if (!r)
			progress(c, s->span[k].len);
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
 * Up to depth reads in flight (one while the job is rate-limited, so that
 * it reads no faster than its speed); reads after a failed one are dropped.
 */
int copier_copy_runs(struct copier *c, bool *is_read)
{
	const struct copyset *set = c->set;
	struct readers *rd;
	size_t i = 0;
	uint64_t pos = set->n ? set->run[0].off : 0;
	int head = 0, inflight = 0, r = 0;
	struct meter m;

	meter_start(&m);
	rd = readers_get(c->step, c->fd, set->cluster, &r);
	c->stats.t_readers += meter_read(&m);
	if (!rd)
		return r;
	for (;;) {
		struct slot *s;

		if (job_pause_point(c->job))
			break;
		/* issue, in copy order, as far as the ring and the rate allow */
		while (i < set->n && inflight < (c->limited ? 1 : rd->depth)) {
			s = &rd->slot[(head + inflight) % rd->depth];
			fill_slot(c, s, &i, &pos);
			slot_submit(rd, s);
			inflight++;
		}
		if (!inflight)
			break;
		/* consume the oldest */
		s = &rd->slot[head];
		meter_start(&m);
		slot_wait(rd, s);
		c->stats.t_wait += meter_read(&m);
		meter_start(&m);
		r = put_slot(c, s, s->nread);
		c->stats.t_put += meter_read(&m);
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
	meter_start(&m);
	readers_put(rd);
	c->stats.t_readers += meter_read(&m);
	return r;
}

int copier_copy_preserved(struct copier *c, bool *is_read)
{
	struct job *job = c->job;
	char err[256];

	for (;;) {
		char msg[64], *reply, *save = NULL, *tok;
		int r = 0;

		if (job_pause_point(job))
			return 0;
		snprintf(msg, sizeof(msg), "preserved_extents 0");
		r = node_message(c->node, msg, &reply, err, sizeof(err));
		if (r) {
			fprintf(stderr, "bsyncd: job %s: %s\n", job->id, err);
			*is_read = true;
			return r;
		}
		for (tok = strtok_r(reply, " \n", &save); tok && !r; tok = strtok_r(NULL, " \n", &save)) {
			uint64_t off, len, p;

			if (sscanf(tok, "%" SCNu64 ":%" SCNu64, &off, &len) != 2)
				continue;
			daemon_lock();
			job->len += len;
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
		if (!job->cancelled)
			daemon_wait(100);
		r = job->cancelled;
		daemon_unlock();
		if (r)
			return 0;
	}
}

int copier_init(struct copier *c)
{
	uint64_t cluster = c->set->cluster;

	meter_start(&c->rl_start);
	c->step = cluster > CHUNK ? cluster : CHUNK;
	c->zero = calloc(c->step / cluster, sizeof(bool));
	if (posix_memalign((void **)&c->buf, 4096, c->step))
		c->buf = NULL;
	if (!c->buf || !c->zero)
		return -ENOMEM;
	daemon_lock();
	c->limited = c->job->speed != 0;
	daemon_unlock();
	return 0;
}

int copier_flush(struct copier *c)
{
	return done_flush(c);
}

void copier_destroy(struct copier *c)
{
	free(c->buf);
	free(c->zero);
	c->buf = NULL;
	c->zero = NULL;
}

void copier_shutdown(void)
{
	readers_drop_idle();
}
