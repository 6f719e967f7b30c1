/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The backup job (QEMU's block/backup.c): argument checks in QEMU's order,
 * the job's lifecycle from its start to its finalize, the bitmap sync rule
 * and recovery after a crash.  The point in time is view.h's, what to copy
 * copyset.h's, the copying copier.h's.
 */
#ifndef BSYNCD_BACKUP_H
#define BSYNCD_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmp-server.h"

struct backup_args {
	const char *job_id;		/* NULL: the device name */
	const char *device;
	const char *target;
	const char *format;		/* NULL or "qcow2" */
	const char *sync;		/* full top bitmap incremental none */
	const char *mode;		/* NULL, "absolute-paths" or "existing" */
	const char *bitmap;		/* NULL: none */
	const char *bitmap_mode;	/* NULL: absent; on-success never always */
	const char *backing_file;
	const char *backing_fmt;
	const char *x_store;
	bool auto_finalize, auto_dismiss;
	int64_t speed;
};

/* Where default stores are made (--store-dir). */
void backup_set_store_dir(const char *dir);

struct backup_job;

/*
 * drive-backup in two steps, so that several backups can take their point
 * in time first and then all start (a group): backup_prepare() checks the
 * arguments, makes the target and takes the point in time (the job is not
 * yet known to QMP); backup_launch() makes it a job and starts its thread,
 * or backup_discard() undoes the prepare.  Lock held; a is the same for
 * both steps.  NULL or -1 with e set (a failed launch has discarded b).
 */
struct backup_job *backup_prepare(const struct backup_args *a, struct qerr *e);
int backup_launch(struct backup_job *b, const struct backup_args *a, struct qerr *e);
void backup_discard(struct backup_job *b);

/* drive-backup: prepare and launch. */
int backup_start(const struct backup_args *a, struct qerr *e);

/*
 * Fleecing (QEMU's image fleecing: a sync=none backup job whose
 * copy-before-write preserves what the guest overwrites while clients read
 * the point-in-time view).  backup_fleece() takes the point in time on
 * device, freezing bitmap (NULL: none), and starts a job of type "backup"
 * that copies nothing.  Its owner reads the view and ends the job with
 * backup_fleece_end(): ok is the job's success (the bitmap's frozen bits
 * are cleared, QEMU's on-success rule), !ok its failure (they are kept;
 * why is the job's error).  A job-cancel calls on_cancel(arg) first (lock
 * held), which must stop reading the view and call backup_fleece_end().
 * Lock held; NULL with e set.
 */
struct run;
struct backup_job *backup_fleece(const char *job_id, const char *device, const char *bitmap,
				 void (*on_cancel)(void *arg), void *arg, struct qerr *e);
/* The view's path, its size and the bitmap's granularity (0 without one). */
void backup_fleece_view(const struct backup_job *b, char *path, size_t len, uint64_t *size,
			uint64_t *granularity);
/* The frozen bitmap's dirty runs at its granularity (NULL, 0 without one). */
const struct run *backup_fleece_dirty(const struct backup_job *b, size_t *n);
void backup_fleece_end(struct backup_job *b, bool ok, const char *why);

/* x-debug-inject-error: the next job on device fails its (skip+1)-th read with err. */
int backup_inject_error(const char *device, int64_t skip, int64_t err, struct qerr *e);

/*
 * At daemon start: for every bsync device, drop snapshot views and sessions
 * left by a daemon that died, and reclaim frozen bitmaps (bitmap := bitmap
 * | successor) so that no dirty bit is lost.  Returns how many were reclaimed.
 */
int backup_recover(void);

/* Wait until the snapshot views of device's finished jobs are removed. */
void backup_views_settle(const char *device);

/* At exit: wait for views being removed, free what is left. */
void backup_shutdown(void);

#endif
