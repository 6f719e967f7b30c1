// SPDX-License-Identifier: GPL-2.0
/*
 * The fleecing job: QEMU's image fleecing, a sync=none backup job whose
 * copy-before-write preserves what the guest overwrites while an NBD
 * export (nbd-export.c) lets clients read the point-in-time view.  It
 * takes the point in time as a backup does (backup.c) and shares its
 * finalize, but its thread copies nothing: it holds the view until the
 * export ends it or the job is cancelled.  See fleece.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup-internal.h"
#include "fleece.h"

static int fleece_run(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;
	bool is_read = false, ok;
	int r;

	daemon_lock();
	while (!b->fleece_over && !job->cancelled)
		daemon_wait(-1);
	if (!b->fleece_over && b->on_cancel)
		b->on_cancel(b->cancel_arg);	/* lets the view go, ends the job */
	ok = b->fleece_ok && !job->cancelled;
	if (!ok && !job->cancelled && !job->error)
		job->error = strdup(b->fleece_why ? b->fleece_why : "the export ended early");
	daemon_unlock();
	/* what clients read came from the instant only if the session held */
	r = backup_check_session(b, &is_read);
	if (r) {
		daemon_lock();
		free(job->error);
		job->error = strdup("the copy-before-write session broke while the view was exported: "
				    "clients may have read data from after the instant");
		daemon_unlock();
		job_event_error(job, true);
	}
	view_end_session(&b->view);
	if (job->cancelled)
		return 0;
	return r ? r : ok ? 0 : -EIO;
}

/* A backup's driver but for its thread: it holds the view while exported, copies nothing. */
static const struct job_driver fleece_driver = {
	.type = "backup",
	.run = fleece_run,
	.commit = backup_commit,
	.abort = backup_abort,
	.clean = backup_clean,
	.free = backup_free,
};

/* QEMU's nbd_export_create() checks of an exported bitmap. */
static int check_fleece_bitmap(const char *device, const char *bitmap, struct node_bitmap *bm,
			       struct qerr *e)
{
	int r = node_find_bitmap(device, bitmap, bm);

	if (r == -ENOENT)
		return qerr_set(e, "Bitmap '%s' is not found", bitmap);
	if (r)
		return qerr_set(e, "cannot list the bitmaps of '%s': %s", device, strerror(-r));
	if (bm->busy)
		return qerr_set(e, "Bitmap '%s' is currently in use by another operation and cannot be used",
				bitmap);
	if (bm->inconsistent)
		return qerr_set(e, "Bitmap '%s' is inconsistent and cannot be used", bitmap);
	return 0;
}

struct backup_job *backup_fleece(const char *job_id, const char *device, const char *bitmap,
				 void (*on_cancel)(void *), void *arg, struct qerr *e)
{
	struct backup_job *b;
	struct node_bitmap bm = { 0 };
	struct node_info info;
	char err[512] = "";
	int r = node_exists(device);

	if (r < 0) {
		qerr_set(e, "cannot look up '%s': %s", device, strerror(-r));
		return NULL;
	}
	if (!r) {
		qerr_set(e, "Cannot find device='%s' nor node-name='%s'", device, device);
		return NULL;
	}
	if (backup_check_job_slot(device, job_id, e) ||
	    (bitmap && check_fleece_bitmap(device, bitmap, &bm, e)))
		return NULL;
	b = backup_new(device, bitmap, SYNC_NONE, BM_ON_SUCCESS, &info, e);
	if (!b)
		return NULL;
	meter_start(&b->t0);
	if (bm.granularity > b->set.cluster)
		b->set.cluster = bm.granularity;
	b->on_cancel = on_cancel;
	b->cancel_arg = arg;
	if (backup_take_point_in_time(b, &(struct backup_args){ .sync = "none" }, &info, e))
		goto bad;
	/* the frozen bitmap's runs, exact to its granularity */
	if (bitmap) {
		b->set.cluster = bm.granularity;
		if (copyset_compute(&b->set, b->node, SYNC_BITMAP, b->bitmap, err, sizeof(err))) {
			qerr_set(e, "%s", err);
			goto bad;
		}
	}
	if (job_init(&b->job, &fleece_driver, job_id, device, true, true, e)) {
		b->on_cancel = NULL;
		goto bad;
	}
	b->job.len = b->set.size;
	fprintf(stderr, "bsyncd: job %s: fleecing of %s started in %.3f s (store %.3f, session %.3f, "
		"view %.3f): %s%s%s, store %s\n", job_id, device, meter_read(&b->t0), b->t_store,
		b->t_session, b->t_view, bitmap ? "bitmap " : "no bitmap", bitmap ? bitmap : "",
		bitmap ? " frozen" : "", b->view.store);
	if (job_start(&b->job, e))
		return NULL;	/* completed (aborted): the bitmap is back, the view goes */
	return b;
bad:
	backup_discard(b);
	return NULL;
}

void backup_fleece_view(const struct backup_job *b, char *path, size_t len, uint64_t *size,
			uint64_t *granularity)
{
	view_path(&b->view, path, len);
	*size = b->set.size;
	*granularity = b->bitmap ? b->set.cluster : 0;
}

const struct run *backup_fleece_dirty(const struct backup_job *b, size_t *n)
{
	*n = b->bitmap ? b->set.n : 0;
	return b->bitmap ? b->set.run : NULL;
}

void backup_fleece_end(struct backup_job *b, bool ok, const char *why)
{
	b->fleece_over = true;
	b->fleece_ok = ok;
	if (why && !b->fleece_why)
		b->fleece_why = strdup(why);
	daemon_broadcast();
}
