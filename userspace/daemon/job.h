/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Jobs: QEMU's job state machine (qapi/job.json, job.c), its verbs and
 * events.  A job driver (backup.c) supplies the work thread and the
 * commit/abort/clean steps run at finalize.
 *
 * Everything here is called with the daemon lock held, except the driver's
 * run(), which runs in the job's own thread without it.
 */
#ifndef BSYNCD_JOB_H
#define BSYNCD_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "qmp-server.h"

enum job_status {
	JOB_STATUS_UNDEFINED, JOB_STATUS_CREATED, JOB_STATUS_RUNNING, JOB_STATUS_PAUSED,
	JOB_STATUS_READY, JOB_STATUS_STANDBY, JOB_STATUS_WAITING, JOB_STATUS_PENDING,
	JOB_STATUS_ABORTING, JOB_STATUS_CONCLUDED, JOB_STATUS_NULL, JOB_STATUS__MAX
};

enum job_verb {
	JOB_VERB_CANCEL, JOB_VERB_PAUSE, JOB_VERB_RESUME, JOB_VERB_SET_SPEED,
	JOB_VERB_COMPLETE, JOB_VERB_FINALIZE, JOB_VERB_DISMISS, JOB_VERB_CHANGE, JOB_VERB__MAX
};

struct job;
struct job_txn;

struct job_driver {
	const char *type;		/* "backup" */
	/* The work, in the job's thread, without the daemon lock; 0 or -errno. */
	int (*run)(struct job *job);
	/* At finalize (lock held): commit on success, abort otherwise; then clean. */
	void (*commit)(struct job *job);
	void (*abort)(struct job *job);
	void (*clean)(struct job *job);
	void (*free)(struct job *job);
};

struct job {
	char *id;
	char *device;			/* node the job works on */
	const struct job_driver *drv;
	enum job_status status;
	bool auto_finalize, auto_dismiss;
	bool cancelled;			/* job-cancel was requested */
	bool user_paused;
	bool busy;
	int ret;			/* 0, -errno, -ECANCELED */
	char *error;			/* set on failure */
	uint64_t len, offset, speed;
	bool thread_running;
	pthread_t thread;
	struct job_txn *txn;		/* completion-mode grouped, or NULL */
	struct job *next;
};

extern const char *const job_status_names[JOB_STATUS__MAX];

/* Lookup by id / by device (the job using a node, if any). */
struct job *job_find(const char *id);
struct job *job_find_device(const char *device);
struct job *job_first(void);

/* QEMU's job id rule: a letter first, then letters, digits, '-', '.', '_'. */
bool job_id_valid(const char *id);

/*
 * Set up a job in CREATED (driver fills the rest of its struct, which must
 * begin with struct job); emits JOB_STATUS_CHANGE.
 */
int job_init(struct job *job, const struct job_driver *drv, const char *id, const char *device,
	     bool auto_finalize, bool auto_dismiss, struct qerr *e);
/*
 * A group of jobs that complete together (QEMU's JobTxn, completion-mode
 * grouped): if one fails or is cancelled, the others are cancelled and all
 * take the abort path; they are finalized only once all succeeded.  Add
 * jobs in CREATED, before job_start(); the group goes with its last job.
 * NULL if out of memory.
 */
struct job_txn *job_txn_new(void);
int job_txn_add(struct job_txn *txn, struct job *job);
/* Drop the creator's hold: a group no job joined is freed. */
void job_txn_put(struct job_txn *txn);

/* CREATED -> RUNNING, start the thread. */
int job_start(struct job *job, struct qerr *e);

/* Verbs from QMP (lock held); 0 or -1 with e set. */
int job_cancel(struct job *job, struct qerr *e);
int job_pause(struct job *job, struct qerr *e);
int job_resume(struct job *job, struct qerr *e);
int job_finalize(struct job *job, struct qerr *e);
int job_dismiss(struct job *job, struct qerr *e);
int job_set_speed(struct job *job, int64_t speed, struct qerr *e);

/* For the driver's thread: wait while paused; true if it must stop (cancelled). */
bool job_pause_point(struct job *job);
/* Progress, lock held. */
void job_progress(struct job *job, uint64_t done);

/* Number of live job threads (for shutdown). */
int job_threads_running(void);

json_object *job_query_jobs(void);
json_object *job_query_block_jobs(void);

/* Emit BLOCK_JOB_ERROR (report) for a failed background read or write. */
void job_event_error(struct job *job, bool is_read);

#endif
