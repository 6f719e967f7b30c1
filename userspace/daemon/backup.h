/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The backup job (QEMU's block/backup.c): argument checks in QEMU's order,
 * the job's lifecycle from its start to its finalize, the bitmap sync rule
 * and recovery after a crash.  The point in time is view.h's, what to copy
 * copyset.h's, the copying copier.h's; a fleecing job (the same job that
 * copies nothing) is fleece.h's.
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
	/* a full backup instead of an incremental: why (BSYNC_BACKUP_FALLBACK) */
	const char *x_fallback_reason, *x_fallback_detail;
	bool auto_finalize, auto_dismiss;
	int64_t speed;
};

/* Whether images get a checksum record, IMAGE.sums (--checksums; default on). */
void backup_set_checksums(bool on);

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

/*
 * backup_prepare() in three steps, for a transaction, so that guest writes
 * wait for the least: backup_stage() before the write gates close (the
 * device, format and mode checks, the target image, the scratch store);
 * backup_stage_instant() while they are closed (the bitmap and job checks,
 * the session: the instant and the frozen bitmap); backup_prepare_view()
 * once they are open (the view and what to copy).  The last two leave b
 * to the caller's backup_discard() on failure.
 */
struct backup_job *backup_stage(const struct backup_args *a, struct qerr *e);
int backup_stage_instant(struct backup_job *b, const struct backup_args *a, struct qerr *e);
int backup_prepare_view(struct backup_job *b, struct qerr *e);

/* backup_launch(), the job joining txn (completion-mode grouped) if not NULL. */
struct job_txn;
int backup_launch_txn(struct backup_job *b, const struct backup_args *a, struct job_txn *txn,
		      struct qerr *e);

/* drive-backup: prepare and launch. */
int backup_start(const struct backup_args *a, struct qerr *e);

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
