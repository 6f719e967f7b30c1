/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The copier's reader pool: a ring of slots, each served by a reader
 * thread of its own that reads the slot's spans of the view (O_DIRECT,
 * native AIO) and marks which clusters read as zeroes.
 *
 * The copier fills slots in copy order and consumes them in the same
 * order, so reads of scattered clusters overlap each other and the image
 * writes, while the image (not thread-safe) is only ever written by the
 * copier's thread.  A slot is one read step: one span of a big run, or the
 * spans of up to SLOT_SPANS small runs, read at once into one buffer and
 * written into the image together.
 */
#ifndef BSYNCD_READERS_H
#define BSYNCD_READERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/aio_abi.h>

#define SLOT_SPANS 64		/* qcow2_write_pieces() takes 64 buffers per write */
#define READERS_MAX 8		/* reads in flight, one reader thread each */

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
	struct slot slot[READERS_MAX];
	int depth, nthreads;
	bool quit;
	uint64_t step;		/* bytes per slot buffer */
	int fd;			/* the view being read */
	uint64_t cluster;	/* the copy unit, for the zero maps */
};

/*
 * A reader pool with step-byte buffers, reading fd in clusters of cluster
 * bytes: the idle one if it fits, else a new one.  NULL with *err = -errno.
 */
struct readers *readers_get(uint64_t step, int fd, uint64_t cluster, int *err);

/* Done with rd: wait for its reads in flight, keep it idle or free it. */
void readers_put(struct readers *rd);

/* Free the idle pool (at exit). */
void readers_drop_idle(void);

/* Hand a filled slot to its reader (or, with nothing to read, mark it done). */
void slot_submit(struct readers *rd, struct slot *s);

/* Wait until slot s is done. */
void slot_wait(struct readers *rd, struct slot *s);

/* Read len bytes at off from fd (O_DIRECT: whole blocks) into buf; 0 or -errno. */
int read_direct(int fd, char *buf, uint64_t off, uint64_t len);

/* Which clusters of buf (len bytes read at a cluster boundary) read as zeroes. */
void zero_map(const char *buf, uint64_t len, uint64_t cluster, bool *zero);

#endif
