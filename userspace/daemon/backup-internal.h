/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the backup job's files share (backup.c, the job; fleece.c, the
 * fleecing job that copies nothing): the job's state and the steps both
 * kinds take.  Calls go fleece.c -> backup.c, never back.
 */
#ifndef BSYNCD_BACKUP_INTERNAL_H
#define BSYNCD_BACKUP_INTERNAL_H

#include <stdbool.h>

#include "backup.h"
#include "copyset.h"
#include "job.h"
#include "meter.h"
#include "node.h"
#include "qcow2.h"
#include "view.h"

enum bitmap_mode { BM_ON_SUCCESS, BM_NEVER, BM_ALWAYS };

struct backup_job {
	struct job job;		/* first */
	enum sync_mode sync;
	enum bitmap_mode bmode;
	char *bitmap;		/* frozen bitmap or NULL */
	char *node;
	struct view view;	/* the point in time the job copies */
	struct qcow2_image *img;
	char *target;
	struct copyset set;	/* what the job copies */
	int inject_skip, inject_errno;	/* -1: none */
	bool created;		/* the target was made for the job (not mode=existing) */
	/* fleecing: the owner ends the job (backup_fleece_end) or is told of a cancel */
	bool fleece_over, fleece_ok;
	char *fleece_why;
	void (*on_cancel)(void *arg);
	void *cancel_arg;
	/* seconds from the start to the end of each step, for the "started" log line */
	struct meter t0;
	double t_target, t_store, t_session, t_view;
};

/* A job for device, its node's info into info, before the point in time: NULL with e set. */
struct backup_job *backup_new(const char *device, const char *bitmap,
			      enum sync_mode sync, enum bitmap_mode bmode,
			      struct node_info *info, struct qerr *e);
/* No other job on device, and id free: 0 or -1 with e set. */
int backup_check_job_slot(const char *device, const char *id, struct qerr *e);
/* The point in time: store, session (freezes the bitmap), view; then what to copy. */
int backup_take_point_in_time(struct backup_job *b, const struct backup_args *a,
			      const struct node_info *info, struct qerr *e);
/* 0 if the session held to the end; else -EIO or -errno, and *is_read. */
int backup_check_session(struct backup_job *b, bool *is_read);

/* The job driver's steps after the run, alike for both kinds. */
void backup_commit(struct job *job);
void backup_abort(struct job *job);
void backup_clean(struct job *job);
void backup_free(struct job *job);

#endif
