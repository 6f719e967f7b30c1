// SPDX-License-Identifier: GPL-2.0
/*
 * Jobs: QEMU's state machine, verbs and events.  See job.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"

const char *const job_status_names[JOB_STATUS__MAX] = {
	"undefined", "created", "running", "paused", "ready", "standby",
	"waiting", "pending", "aborting", "concluded", "null",
};

static const char *const verb_names[JOB_VERB__MAX] = {
	"cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss", "change",
};

/* QEMU's JobSTT: allowed[from][to]. */
static const bool transitions[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
	/*               U  C  R  P  Y  S  W  D  X  E  N */
	/* U */        { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	/* C */        { 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1 },
	/* R */        { 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0 },
	/* P */        { 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 },
	/* Y */        { 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0 },
	/* S */        { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
	/* W */        { 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0 },
	/* D */        { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
	/* X */        { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
	/* E */        { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
	/* N */        { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
};

/* QEMU's JobVerbTable: verbs[verb][state]. */
static const bool verbs[JOB_VERB__MAX][JOB_STATUS__MAX] = {
	/*                  U  C  R  P  Y  S  W  D  X  E  N */
	/* cancel */      { 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 },
	/* pause */       { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
	/* resume */      { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
	/* set-speed */   { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
	/* complete */    { 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0 },
	/* finalize */    { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
	/* dismiss */     { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 },
	/* change */      { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
};

static struct job *jobs;
static int nthreads;

struct job *job_first(void)
{
	return jobs;
}

struct job *job_find(const char *id)
{
	struct job *j;

	for (j = jobs; j; j = j->next)
		if (!strcmp(j->id, id))
			return j;
	return NULL;
}

struct job *job_find_device(const char *device)
{
	struct job *j;

	for (j = jobs; j; j = j->next)
		if (!strcmp(j->device, device))
			return j;
	return NULL;
}

int job_threads_running(void)
{
	return nthreads;
}

bool job_id_valid(const char *id)
{
	const char *p;

	if (!isalpha((unsigned char)id[0]))
		return false;
	for (p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-._", *p))
			return false;
	return p - id <= 128;
}

static void transition(struct job *job, enum job_status to)
{
	json_object *d;

	if (!transitions[job->status][to])
		fprintf(stderr, "bsyncd: BUG: job %s: transition %s -> %s is not allowed\n",
			job->id, job_status_names[job->status], job_status_names[to]);
	bsyncd_debug("job %s: %s -> %s", job->id, job_status_names[job->status],
		     job_status_names[to]);
	job->status = to;
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(job->id));
	json_object_object_add(d, "status", json_object_new_string(job_status_names[to]));
	qmp_event("JOB_STATUS_CHANGE", d);
}

static int apply_verb(struct job *job, enum job_verb verb, struct qerr *e)
{
	if (verbs[verb][job->status])
		return 0;
	return qerr_set(e, "Job '%s' in state '%s' cannot accept command verb '%s'",
			job->id, job_status_names[job->status], verb_names[verb]);
}

int job_init(struct job *job, const struct job_driver *drv, const char *id, const char *device,
	     bool auto_finalize, bool auto_dismiss, struct qerr *e)
{
	if (!job_id_valid(id))
		return qerr_set(e, "Invalid job ID '%s'", id);
	if (job_find(id))
		return qerr_set(e, "Job ID '%s' already in use", id);
	job->id = strdup(id);
	job->device = strdup(device);
	if (!job->id || !job->device)
		return qerr_set(e, "out of memory");
	job->drv = drv;
	job->auto_finalize = auto_finalize;
	job->auto_dismiss = auto_dismiss;
	job->status = JOB_STATUS_UNDEFINED;
	job->next = jobs;
	jobs = job;
	transition(job, JOB_STATUS_CREATED);
	return 0;
}

struct job_txn {
	struct job **jobs;
	size_t n, cap;
	int refs;		/* the creator's hold and one per member */
};

struct job_txn *job_txn_new(void)
{
	struct job_txn *txn = calloc(1, sizeof(*txn));

	if (txn)
		txn->refs = 1;
	return txn;
}

int job_txn_add(struct job_txn *txn, struct job *job)
{
	if (txn->n == txn->cap) {
		size_t cap = txn->cap ? 2 * txn->cap : 4;
		struct job **v = realloc(txn->jobs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		txn->jobs = v;
		txn->cap = cap;
	}
	txn->jobs[txn->n++] = job;
	job->txn = txn;
	txn->refs++;
	return 0;
}

void job_txn_put(struct job_txn *txn)
{
	if (txn && --txn->refs == 0) {
		free(txn->jobs);
		free(txn);
	}
}

static void txn_remove(struct job *job)
{
	struct job_txn *txn = job->txn;
	size_t i;

	for (i = 0; i < txn->n; i++)
		if (txn->jobs[i] == job) {
			txn->jobs[i] = txn->jobs[--txn->n];
			break;
		}
	job->txn = NULL;
	job_txn_put(txn);
}

static void job_unlink_free(struct job *job)
{
	struct job **pp;

	if (job->txn)
		txn_remove(job);

	for (pp = &jobs; *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	free(job->id);
	free(job->device);
	free(job->error);
	job->drv->free(job);
}

static json_object *event_base(struct job *job)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "type", json_object_new_string(job->drv->type));
	json_object_object_add(d, "device", json_object_new_string(job->id));
	json_object_object_add(d, "len", json_object_new_int64((int64_t)job->len));
	json_object_object_add(d, "offset", json_object_new_int64((int64_t)job->offset));
	json_object_object_add(d, "speed", json_object_new_int64((int64_t)job->speed));
	return d;
}

void job_event_error(struct job *job, bool is_read)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "device", json_object_new_string(job->id));
	json_object_object_add(d, "operation", json_object_new_string(is_read ? "read" : "write"));
	json_object_object_add(d, "action", json_object_new_string("report"));
	qmp_event("BLOCK_JOB_ERROR", d);
}

/* commit/abort, clean, the completion event, CONCLUDED, maybe NULL. */
static void finalize_single(struct job *job)
{
	json_object *d;

	if (!job->ret)
		job->drv->commit(job);
	else
		job->drv->abort(job);
	job->drv->clean(job);
	d = event_base(job);
	if (job->cancelled) {
		qmp_event("BLOCK_JOB_CANCELLED", d);
	} else {
		if (job->ret)
			json_object_object_add(d, "error", json_object_new_string(job->error));
		qmp_event("BLOCK_JOB_COMPLETED", d);
	}
	transition(job, JOB_STATUS_CONCLUDED);
	if (job->auto_dismiss) {
		transition(job, JOB_STATUS_NULL);
		job_unlink_free(job);
	}
}

static void set_ret(struct job *job, int ret)
{
	if (job->cancelled && !ret)
		ret = -ECANCELED;
	job->ret = ret;
	if (ret && !job->error)
		job->error = strdup(strerror(-ret));
}

static void event_pending(struct job *job)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "type", json_object_new_string(job->drv->type));
	json_object_object_add(d, "id", json_object_new_string(job->id));
	qmp_event("BLOCK_JOB_PENDING", d);
}

/* A member that is done and waits for the group (WAITING or PENDING), if any. */
static struct job *txn_find_done(struct job_txn *txn)
{
	size_t i;

	for (i = 0; i < txn->n; i++)
		if (!txn->jobs[i]->thread_running && (txn->jobs[i]->status == JOB_STATUS_WAITING ||
						      txn->jobs[i]->status == JOB_STATUS_PENDING))
			return txn->jobs[i];
	return NULL;
}

/*
 * A member failed or was cancelled (QEMU's job_completed_txn_abort): the
 * running members are cancelled and abort when their thread ends; the
 * ones that are done abort now.  Finalizing may free members, and with
 * the last the group: it is held meanwhile.
 */
static void txn_abort(struct job_txn *txn)
{
	struct job *j;
	size_t i;

	txn->refs++;
	for (i = 0; i < txn->n; i++) {
		j = txn->jobs[i];
		if (j->status >= JOB_STATUS_ABORTING)
			continue;
		j->cancelled = true;
		j->user_paused = false;
	}
	daemon_broadcast();
	while ((j = txn_find_done(txn))) {
		set_ret(j, -ECANCELED);
		transition(j, JOB_STATUS_ABORTING);
		finalize_single(j);
	}
	job_txn_put(txn);
}

/* Finalize every member in PENDING (job-finalize acts on the whole group). */
static void txn_finalize(struct job_txn *txn)
{
	struct job *j;

	txn->refs++;
	while ((j = txn_find_done(txn)) && j->status == JOB_STATUS_PENDING)
		finalize_single(j);
	job_txn_put(txn);
}

/* job succeeded: once every member has, all go PENDING together. */
static void txn_completed(struct job_txn *txn)
{
	bool auto_finalize = true;
	size_t i;

	for (i = 0; i < txn->n; i++)
		if (txn->jobs[i]->status != JOB_STATUS_WAITING)
			return;
	for (i = 0; i < txn->n; i++) {
		transition(txn->jobs[i], JOB_STATUS_PENDING);
		auto_finalize &= txn->jobs[i]->auto_finalize;
	}
	if (auto_finalize) {
		txn_finalize(txn);
		return;
	}
	for (i = 0; i < txn->n; i++)
		if (!txn->jobs[i]->auto_finalize)
			event_pending(txn->jobs[i]);
}

/* The work is over (lock held). */
static void job_completed(struct job *job, int ret)
{
	set_ret(job, ret);
	if (job->ret) {
		transition(job, JOB_STATUS_ABORTING);
		if (job->txn)
			txn_abort(job->txn);
		finalize_single(job);
		return;
	}
	transition(job, JOB_STATUS_WAITING);
	if (job->txn) {
		txn_completed(job->txn);
		return;
	}
	transition(job, JOB_STATUS_PENDING);
	if (!job->auto_finalize) {
		event_pending(job);
		return;
	}
	finalize_single(job);
}

static void *job_thread(void *arg)
{
	struct job *job = arg;
	int ret = job->drv->run(job);

	daemon_lock();
	job->thread_running = false;
	job->busy = false;
	nthreads--;
	job_completed(job, ret);	/* may free job */
	daemon_broadcast();
	daemon_unlock();
	return NULL;
}

int job_start(struct job *job, struct qerr *e)
{
	pthread_attr_t a;
	int r;

	transition(job, JOB_STATUS_RUNNING);
	job->busy = true;
	job->thread_running = true;
	nthreads++;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&job->thread, &a, job_thread, job);
	pthread_attr_destroy(&a);
	if (r) {
		nthreads--;
		job->thread_running = false;
		job->busy = false;
		job_completed(job, -r);
		return qerr_set(e, "cannot start the job thread: %s", strerror(r));
	}
	return 0;
}

bool job_pause_point(struct job *job)
{
	bool stop;

	daemon_lock();
	if (job->user_paused && !job->cancelled) {
		transition(job, JOB_STATUS_PAUSED);
		job->busy = false;
		while (job->user_paused && !job->cancelled)
			daemon_wait(-1);
		job->busy = true;
		transition(job, JOB_STATUS_RUNNING);
	}
	stop = job->cancelled;
	daemon_unlock();
	return stop;
}

void job_progress(struct job *job, uint64_t done)
{
	job->offset += done;
}

int job_cancel(struct job *job, struct qerr *e)
{
	if (job->status == JOB_STATUS_CONCLUDED)
		return job_dismiss(job, e);
	if (apply_verb(job, JOB_VERB_CANCEL, e))
		return -1;
	job->cancelled = true;
	job->user_paused = false;
	if (job->thread_running) {
		daemon_broadcast();
		return 0;
	}
	/* PENDING (or WAITING): the work is done, abort now. */
	set_ret(job, -ECANCELED);
	transition(job, JOB_STATUS_ABORTING);
	if (job->txn)
		txn_abort(job->txn);
	finalize_single(job);
	return 0;
}

int job_pause(struct job *job, struct qerr *e)
{
	if (apply_verb(job, JOB_VERB_PAUSE, e))
		return -1;
	if (job->user_paused)
		return qerr_set(e, "Job is already paused");
	job->user_paused = true;
	return 0;
}

int job_resume(struct job *job, struct qerr *e)
{
	if (!job->user_paused)
		return qerr_set(e, "Can't resume a job that was not paused");
	if (apply_verb(job, JOB_VERB_RESUME, e))
		return -1;
	job->user_paused = false;
	daemon_broadcast();
	return 0;
}

int job_finalize(struct job *job, struct qerr *e)
{
	if (apply_verb(job, JOB_VERB_FINALIZE, e))
		return -1;
	if (job->txn)
		txn_finalize(job->txn);
	else
		finalize_single(job);
	return 0;
}

int job_dismiss(struct job *job, struct qerr *e)
{
	if (apply_verb(job, JOB_VERB_DISMISS, e))
		return -1;
	transition(job, JOB_STATUS_NULL);
	job_unlink_free(job);
	return 0;
}

int job_set_speed(struct job *job, int64_t speed, struct qerr *e)
{
	if (apply_verb(job, JOB_VERB_SET_SPEED, e))
		return -1;
	if (speed < 0)
		return qerr_set(e, "Parameter 'speed' expects a non-negative value");
	job->speed = (uint64_t)speed;
	daemon_broadcast();
	return 0;
}

json_object *job_query_jobs(void)
{
	json_object *a = json_object_new_array();
	struct job *j;

	for (j = jobs; j; j = j->next) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "id", json_object_new_string(j->id));
		json_object_object_add(o, "type", json_object_new_string(j->drv->type));
		json_object_object_add(o, "status", json_object_new_string(job_status_names[j->status]));
		json_object_object_add(o, "current-progress", json_object_new_int64((int64_t)j->offset));
		json_object_object_add(o, "total-progress", json_object_new_int64((int64_t)j->len));
		if (j->ret && j->error)
			json_object_object_add(o, "error", json_object_new_string(j->error));
		json_object_array_add(a, o);
	}
	return a;
}

json_object *job_query_block_jobs(void)
{
	json_object *a = json_object_new_array();
	struct job *j;

	for (j = jobs; j; j = j->next) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "type", json_object_new_string(j->drv->type));
		json_object_object_add(o, "device", json_object_new_string(j->id));
		json_object_object_add(o, "len", json_object_new_int64((int64_t)j->len));
		json_object_object_add(o, "offset", json_object_new_int64((int64_t)j->offset));
		json_object_object_add(o, "busy", json_object_new_boolean(j->busy));
		json_object_object_add(o, "paused", json_object_new_boolean(j->user_paused));
		json_object_object_add(o, "speed", json_object_new_int64((int64_t)j->speed));
		json_object_object_add(o, "io-status", json_object_new_string("ok"));
		json_object_object_add(o, "ready", json_object_new_boolean(false));
		json_object_object_add(o, "status", json_object_new_string(job_status_names[j->status]));
		json_object_object_add(o, "auto-finalize", json_object_new_boolean(j->auto_finalize));
		json_object_object_add(o, "auto-dismiss", json_object_new_boolean(j->auto_dismiss));
		if (j->ret && j->error)
			json_object_object_add(o, "error", json_object_new_string(j->error));
		json_object_array_add(a, o);
	}
	return a;
}
