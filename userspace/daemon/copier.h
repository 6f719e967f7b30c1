/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The copier (QEMU's block-copy): copies a copy set's runs from the view
 * into the qcow2 image through the reader pool, writes zero clusters as
 * zero flags, keeps to the job's speed, and tells the kernel what is in
 * the image (session_done, batched) so that the store frees its slots.
 *
 * It works for a job (pause points, cancel, speed and progress are the
 * job's) but knows nothing of the job's kind or lifecycle, nor of the
 * view's: it is given an open view and an open image.
 */
#ifndef BSYNCD_COPIER_H
#define BSYNCD_COPIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "copyset.h"
#include "job.h"
#include "meter.h"
#include "qcow2.h"

/* Where the copy's time went, for the job's log line. */
struct copy_stats {
	int reads;		/* read requests issued */
	int ndone;		/* session_done messages sent */
	double t_wait;		/* seconds waiting for reads */
	double t_put;		/* seconds writing the image */
	double t_done;		/* seconds in session_done messages (within t_put) */
	double t_readers;	/* seconds starting and stopping the readers */
};

struct copier {
	/* set by the caller before copier_init() */
	struct job *job;
	const char *node;		/* the bsync device: session_done goes to it */
	struct qcow2_image *img;
	const struct copyset *set;	/* its cluster is the copy unit */
	int fd;				/* the view, opened O_DIRECT */
	int inject_skip, inject_errno;	/* fail read skip+1 with inject_errno; -1: none */

	/* the copier's own */
	char *buf;
	bool *zero;
	uint64_t step;		/* read request size: max(CHUNK, cluster) */
	bool limited;		/* speed set: one read at a time */
	struct meter rl_start;
	uint64_t rl_bytes;
	/* copied ranges not yet told to the kernel (one message for many) */
	char done_msg[3072];
	size_t done_len;
	uint64_t run_off, run_len, done_bytes;
	struct copy_stats stats;
};

/* Buffers; 0 or -ENOMEM. */
int copier_init(struct copier *c);

/*
 * Copy the runs in order.  A read error stops the copy at that span: what
 * was copied before it is in the image and told to the kernel (once
 * copier_flush() is called).  0 (also when cancelled), or -errno with
 * *is_read telling which side failed.
 */
int copier_copy_runs(struct copier *c, bool *is_read);

/* sync=none: copy what copy-before-write preserved, until cancelled. */
int copier_copy_preserved(struct copier *c, bool *is_read);

/* Tell the kernel what is in the image and not yet told; 0 or -errno. */
int copier_flush(struct copier *c);

void copier_destroy(struct copier *c);

/* At exit: free what copiers keep between jobs. */
void copier_shutdown(void);

#endif
