// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's job state machine (daemon/job.c) with a scripted driver: the
 * JOB_STATUS_CHANGE sequences and completion events of QEMU's job.c for
 * success (auto and manual finalize), failure, cancel while running, while
 * paused and while pending, auto-dismiss off, the verb refusals with
 * QEMU's texts, and groups (completion-mode grouped): all commit once all
 * succeeded; one failing or cancelled cancels the others, all abort.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../daemon/job.c"
#include "../daemon/log.c"
#include "../daemon/qmp-server.c"
#include "tap.h"

struct tjob {
	struct job job;
	int result;		/* what run() returns */
	volatile bool go;	/* run() waits for this */
	int commits, aborts, cleans;
};

static int freed;

static int t_run(struct job *job)
{
	struct tjob *t = (struct tjob *)job;

	while (!t->go) {
		if (job_pause_point(job))
			return 0;
		usleep(1000);
	}
	return t->result;
}

static void t_commit(struct job *job) { ((struct tjob *)job)->commits++; }
static void t_abort(struct job *job) { ((struct tjob *)job)->aborts++; }
static void t_clean(struct job *job) { ((struct tjob *)job)->cleans++; }
static void t_free(struct job *job) { freed++; free(job); }

static const struct job_driver tdrv = {
	.type = "backup", .run = t_run, .commit = t_commit, .abort = t_abort,
	.clean = t_clean, .free = t_free,
};

/* Drain the event queue into a compact string: "created,running,...,COMPLETED(err)". */
static void events(char *out, size_t len)
{
	size_t i;

	out[0] = 0;
	pthread_mutex_lock(&srv.ev_lock);
	for (i = 0; i < srv.nev; i++) {
		json_object *ev = srv.evq[i], *d = json_object_object_get(ev, "data"), *v;
		const char *name = json_object_get_string(json_object_object_get(ev, "event"));
		char item[128];

		if (!strcmp(name, "JOB_STATUS_CHANGE"))
			snprintf(item, sizeof(item), "%s",
				 json_object_get_string(json_object_object_get(d, "status")));
		else if (json_object_object_get_ex(d, "error", &v))
			snprintf(item, sizeof(item), "%s(%s)", name, json_object_get_string(v));
		else
			snprintf(item, sizeof(item), "%s", name);
		if (out[0])
			strncat(out, ",", len - strlen(out) - 1);
		strncat(out, item, len - strlen(out) - 1);
		json_object_put(ev);
	}
	srv.nev = 0;
	pthread_mutex_unlock(&srv.ev_lock);
}

static struct tjob *mk(const char *id, bool af, bool ad, int result)
{
	struct tjob *t = calloc(1, sizeof(*t));
	struct qerr e;

	t->result = result;
	daemon_lock();
	if (job_init(&t->job, &tdrv, id, "dev0", af, ad, &e) || job_start(&t->job, &e)) {
		daemon_unlock();
		tap_diag("job setup failed: %s", e.desc);
		return NULL;
	}
	daemon_unlock();
	return t;
}

/* A group of n jobs g<base>..: all created, joined, then started. */
static void mk_group(struct tjob **t, int n, int base, bool af, const int *results)
{
	struct job_txn *txn;
	struct qerr e;
	char id[16];
	int i;

	daemon_lock();
	txn = job_txn_new();
	for (i = 0; i < n; i++) {
		t[i] = calloc(1, sizeof(**t));
		t[i]->result = results[i];
		snprintf(id, sizeof(id), "g%d", base + i);
		if (job_init(&t[i]->job, &tdrv, id, id, af, true, &e) || job_txn_add(txn, &t[i]->job))
			tap_diag("group setup failed: %s", e.desc);
	}
	for (i = 0; i < n; i++)
		job_start(&t[i]->job, &e);
	job_txn_put(txn);
	daemon_unlock();
}

static int count(const char *s, const char *what)
{
	int n = 0;

	while ((s = strstr(s, what))) {
		n++;
		s += strlen(what);
	}
	return n;
}

/* Wait until job is in status (lock not held). */
static void wait_status(struct tjob *t, enum job_status st)
{
	daemon_lock();
	while (t->job.status != st)
		daemon_wait(10);
	daemon_unlock();
}

static void wait_threads(void)
{
	daemon_lock();
	while (job_threads_running())
		daemon_wait(50);
	daemon_unlock();
}

int main(void)
{
	char ev[1024];
	struct qerr e;
	struct tjob *t;
	int r;

	/* success, auto-finalize, auto-dismiss */
	t = mk("j1", true, true, 0);
	t->go = true;
	wait_threads();
	events(ev, sizeof(ev));
	tap_ok(!strcmp(ev, "created,running,waiting,pending,BLOCK_JOB_COMPLETED,concluded,null"),
	       "success: %s", ev);
	tap_ok(freed == 1 && !job_find("j1"), "auto-dismissed job is gone");

	/* success, manual finalize, no auto-dismiss */
	t = mk("j2", false, false, 0);
	t->go = true;
	wait_threads();
	events(ev, sizeof(ev));
	tap_ok(!strcmp(ev, "created,running,waiting,pending,BLOCK_JOB_PENDING"),
	       "auto-finalize=false stops in pending: %s", ev);
	tap_ok(t->commits == 0 && t->aborts == 0, "nothing committed before finalize");
	daemon_lock();
	r = job_dismiss(&t->job, &e);
	tap_ok(r && !strcmp(e.desc, "Job 'j2' in state 'pending' cannot accept command verb 'dismiss'"),
	       "dismiss in pending refused: %s", e.desc);
	r = job_pause(&t->job, &e);
	tap_ok(r && !strcmp(e.desc, "Job 'j2' in state 'pending' cannot accept command verb 'pause'"),
	       "pause in pending refused");
	r = job_finalize(&t->job, &e);
	daemon_unlock();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "BLOCK_JOB_COMPLETED,concluded") && t->commits == 1 && t->cleans == 1,
	       "finalize commits: %s", ev);
	daemon_lock();
	r = job_finalize(&t->job, &e);
	tap_ok(r && strstr(e.desc, "in state 'concluded' cannot accept command verb 'finalize'"),
	       "second finalize refused");
	r = job_dismiss(&t->job, &e);
	daemon_unlock();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "null") && freed == 2, "dismiss: %s", ev);

	/* failure: aborting, COMPLETED with error, never stops in pending */
	t = mk("j3", false, true, -EIO);
	t->go = true;
	wait_threads();
	events(ev, sizeof(ev));
	tap_ok(!strcmp(ev, "created,running,aborting,BLOCK_JOB_COMPLETED(Input/output error),concluded,null"),
	       "failure: %s", ev);

	/* cancel while running */
	t = mk("j4", false, true, 0);
	daemon_lock();
	r = job_cancel(&t->job, &e);
	daemon_unlock();
	wait_threads();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "created,running,aborting,BLOCK_JOB_CANCELLED,concluded,null"),
	       "cancel while running: %s", ev);

	/* pause, resume errors, cancel while paused (QEMU resumes to running first) */
	t = mk("j5", true, false, 0);
	daemon_lock();
	r = job_resume(&t->job, &e);
	tap_ok(r && !strcmp(e.desc, "Can't resume a job that was not paused"), "resume unpaused refused");
	r = job_pause(&t->job, &e);
	tap_ok(!r, "pause");
	r = job_pause(&t->job, &e);
	tap_ok(r && !strcmp(e.desc, "Job is already paused"), "second pause refused");
	while (t->job.status != JOB_STATUS_PAUSED)
		daemon_wait(10);
	r = job_resume(&t->job, &e);
	tap_ok(!r, "resume");
	while (t->job.status != JOB_STATUS_RUNNING)
		daemon_wait(10);
	job_pause(&t->job, &e);
	while (t->job.status != JOB_STATUS_PAUSED)
		daemon_wait(10);
	r = job_cancel(&t->job, &e);
	daemon_unlock();
	wait_threads();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "created,running,paused,running,paused,running,aborting,BLOCK_JOB_CANCELLED,concluded"),
	       "pause/resume/cancel while paused: %s", ev);
	tap_ok(t->aborts == 1 && t->commits == 0, "cancel takes the abort path");
	daemon_lock();
	r = job_cancel(&t->job, &e);	/* concluded: cancel dismisses, as QEMU */
	daemon_unlock();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "null"), "cancel of a concluded job dismisses it: %s", ev);

	/* cancel while pending: aborts (the seed's simulated failure) */
	t = mk("j6", false, true, 0);
	t->go = true;
	wait_threads();
	events(ev, sizeof(ev));
	daemon_lock();
	r = job_cancel(&t->job, &e);
	daemon_unlock();
	events(ev, sizeof(ev));
	tap_ok(!r && !strcmp(ev, "aborting,BLOCK_JOB_CANCELLED,concluded,null"),
	       "cancel while pending: %s", ev);

	/* groups: the first to succeed waits for the others, and commits with them */
	{
		static const int ok3[3] = { 0, 0, 0 }, fail2[2] = { 0, -EIO }, run2[2] = { 0, 0 };
		struct tjob *g[3];
		int f0 = freed;

		mk_group(g, 3, 0, true, ok3);
		g[1]->go = true;
		wait_status(g[1], JOB_STATUS_WAITING);
		g[0]->go = true;
		wait_status(g[0], JOB_STATUS_WAITING);
		tap_ok(g[0]->commits + g[1]->commits == 0, "grouped: no commit while a member runs");
		g[2]->go = true;
		wait_threads();
		events(ev, sizeof(ev));
		tap_ok(freed == f0 + 3 && !job_first() && count(ev, "BLOCK_JOB_COMPLETED") == 3 &&
		       !strstr(ev, "CANCELLED") && !strstr(ev, "aborting"),
		       "grouped: all succeed, all complete: %s", ev);

		/* a member fails after the other succeeded: that one is cancelled, both abort */
		mk_group(g, 2, 3, true, fail2);
		g[0]->go = true;
		wait_status(g[0], JOB_STATUS_WAITING);
		daemon_lock();
		tap_ok(g[0]->commits == 0 && g[0]->aborts == 0, "grouped: the succeeded job waits");
		daemon_unlock();
		events(ev, sizeof(ev));
		g[1]->go = true;
		wait_threads();
		events(ev, sizeof(ev));
		tap_ok(freed == f0 + 5 && !job_first() && count(ev, "BLOCK_JOB_CANCELLED") == 1 &&
		       strstr(ev, "BLOCK_JOB_COMPLETED(Input/output error)") && !strstr(ev, "pending"),
		       "grouped: one fails, the waiting one is cancelled: %s", ev);

		/* cancelling one running member cancels the other running one */
		mk_group(g, 2, 5, true, run2);
		daemon_lock();
		r = job_cancel(&g[1]->job, &e);
		daemon_unlock();
		wait_threads();
		events(ev, sizeof(ev));
		tap_ok(!r && freed == f0 + 7 && !job_first() && !strstr(ev, "BLOCK_JOB_COMPLETED") &&
		       count(ev, "BLOCK_JOB_CANCELLED") == 2, "grouped: cancel one, both cancelled: %s", ev);

		/* manual finalize: all pending together, one job-finalize finalizes the group */
		mk_group(g, 2, 7, false, run2);
		g[0]->go = g[1]->go = true;
		wait_threads();
		events(ev, sizeof(ev));
		daemon_lock();
		tap_ok(g[0]->job.status == JOB_STATUS_PENDING && g[1]->job.status == JOB_STATUS_PENDING,
		       "grouped, auto-finalize off: both pending: %s", ev);
		r = job_finalize(&g[1]->job, &e);
		daemon_unlock();
		events(ev, sizeof(ev));
		tap_ok(!r && freed == f0 + 9 && !job_first(), "grouped: one finalize finalizes both: %s", ev);
	}

	/* ids */
	t = mk("j7", false, false, 0);
	daemon_lock();
	{
		struct tjob *u = calloc(1, sizeof(*u));

		r = job_init(&u->job, &tdrv, "j7", "dev1", true, true, &e);
		tap_ok(r && !strcmp(e.desc, "Job ID 'j7' already in use"), "duplicate id: %s", e.desc);
		r = job_init(&u->job, &tdrv, "7up", "dev1", true, true, &e);
		tap_ok(r && !strcmp(e.desc, "Invalid job ID '7up'"), "invalid id: %s", e.desc);
		free(u);
	}
	r = job_set_speed(&t->job, -1, &e);
	tap_ok(r && !strcmp(e.desc, "Parameter 'speed' expects a non-negative value"), "negative speed");
	tap_ok(job_find_device("dev0") == &t->job, "job found by device");
	job_cancel(&t->job, &e);
	daemon_unlock();
	wait_threads();
	daemon_lock();
	if (job_find("j7"))
		job_dismiss(job_find("j7"), &e);
	daemon_unlock();
	events(ev, sizeof(ev));
	tap_ok(!job_first(), "no job left");
	free(srv.evq);
	return tap_done();
}
