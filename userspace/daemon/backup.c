// SPDX-License-Identifier: GPL-2.0
/*
 * The backup job: its arguments, start, run, finalize and recovery.  See
 * backup.h and Documentation/bsyncd.rst.
 *
 * At drive-backup (daemon lock held) the arguments are checked in QEMU's
 * order, the target image is made and the point in time taken (view.c:
 * store, session, view; the bitmap, if any, is frozen at that instant),
 * and the copy set computed (copyset.c): backup_prepare().  backup_launch()
 * makes it a job and starts its thread, which copies (copier.c), ends the
 * session and closes the image.  At finalize the bitmap sync rule is
 * applied with unfreeze abdicate|reclaim|always, and the view let go.
 * The fleecing job (fleece.c) takes the same steps but for the copy; what
 * the two share is backup-internal.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup-internal.h"
#include "copier.h"
#include "inflight.h"
#include "qcow2-sums.h"
#include "transaction.h"

struct inject {
	char device[NODE_NAME_MAX + 1];
	int skip, err;
	struct inject *next;
};

static const char *store_dir = "/var/lib/bsyncd";
static struct inject *injects;
static bool checksums = true;

void backup_set_store_dir(const char *dir)
{
	store_dir = dir;
}

void backup_set_checksums(bool on)
{
	checksums = on;
}

static const char *const sync_names[] = { "full", "top", "bitmap", "none" };
static const char *const session_modes[] = { "full", "allocated", "bitmap", "none" };

/*
 * Argument checks: blockdev.c do_backup_common() order and texts.
 */
static int check_sync_args(const struct backup_args *a, const char *device,
			   enum sync_mode *sync, enum bitmap_mode *bmode, struct qerr *e)
{
	const char *sync_arg = a->sync, *mode = a->bitmap_mode;
	struct node_bitmap bm;
	int r;

	if (!strcmp(sync_arg, "full"))
		*sync = SYNC_FULL;
	else if (!strcmp(sync_arg, "top"))
		*sync = SYNC_TOP;
	else if (!strcmp(sync_arg, "bitmap") || !strcmp(sync_arg, "incremental"))
		*sync = SYNC_BITMAP;
	else if (!strcmp(sync_arg, "none"))
		*sync = SYNC_NONE;
	else
		return qerr_set(e, "Parameter 'sync' does not accept value '%s'", sync_arg);
	if (mode && strcmp(mode, "on-success") && strcmp(mode, "never") && strcmp(mode, "always"))
		return qerr_set(e, "Parameter 'bitmap-mode' does not accept value '%s'", mode);

	if (*sync == SYNC_BITMAP && !a->bitmap)
		return qerr_set(e, "must provide a valid bitmap name for '%s' sync mode", sync_arg);
	if (!strcmp(sync_arg, "incremental")) {
		if (mode && strcmp(mode, "on-success"))
			return qerr_set(e, "Bitmap sync mode must be 'on-success' when using sync mode '%s'",
					sync_arg);
		mode = "on-success";
	}
	if (a->bitmap) {
		r = node_find_bitmap(device, a->bitmap, &bm);
		if (r == -ENOENT)
			return qerr_set(e, "Bitmap '%s' could not be found", a->bitmap);
		if (r)
			return qerr_set(e, "cannot list the bitmaps of '%s': %s", device, strerror(-r));
		if (!mode)
			return qerr_set(e, "Bitmap sync mode must be given when providing a bitmap");
		if (bm.busy)
			return qerr_set(e, "Bitmap '%s' is currently in use by another operation and cannot be used",
					a->bitmap);
		if (*sync == SYNC_NONE)
			return qerr_set(e, "sync mode '%s' does not produce meaningful bitmap outputs",
					sync_names[*sync]);
		if (!strcmp(mode, "never") && *sync != SYNC_BITMAP)
			return qerr_set(e, "Bitmap sync mode '%s' has no meaningful effect when combined with sync mode '%s'",
					mode, sync_names[*sync]);
	} else if (mode) {
		return qerr_set(e, "Cannot specify bitmap sync mode without a bitmap");
	}
	*bmode = !mode || !strcmp(mode, "on-success") ? BM_ON_SUCCESS :
		 !strcmp(mode, "never") ? BM_NEVER : BM_ALWAYS;
	return 0;
}

/*
 * A view read racing the moment a session broke may have returned data
 * from after the start: the image is only good if the session is still
 * active once everything was read.
 */
int backup_check_session(struct backup_job *b, bool *is_read)
{
	char err[256], *reply = NULL;
	int r;

	r = node_message(b->node, "session_status", &reply, err, sizeof(err));
	if (r) {
		fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
	} else if (strncmp(reply, "state=active", 12)) {
		fprintf(stderr, "bsyncd: job %s: the backup session broke: %s\n", b->job.id, reply);
		r = -EIO;
	}
	free(reply);
	if (r)
		*is_read = true;
	return r;
}

static void *end_session_thread(void *arg)
{
	view_end_session(arg);
	return NULL;
}

/*
 * What a partial image holds, for bsyncctl and chain checks: QEMU keeps such
 * an image as a valid backing file when bitmap-mode is "always".
 */
static void mark_partial(struct backup_job *b, int r)
{
	static const char *const bmode_names[] = { "on-success", "never", "always" };
	char text[QCOW2_TEXT_MAX];

	daemon_lock();
	snprintf(text, sizeof(text),
		 "job=%s\nresult=%s\nerror=%s\ndevice=%s\nsync=%s\nbitmap=%s\nbitmap-mode=%s\n"
		 "copied=%" PRIu64 "\nlen=%" PRIu64 "\n",
		 b->job.id, r == -ECANCELED ? "cancelled" : "failed",
		 r == -ECANCELED ? "" : strerror(-r), b->node, sync_names[b->sync],
		 b->bitmap ? b->bitmap : "", b->bitmap ? bmode_names[b->bmode] : "",
		 b->job.offset, b->job.len);
	daemon_unlock();
	if (qcow2_set_partial(b->img, text))
		fprintf(stderr, "bsyncd: job %s: out of memory for the partial-image record\n", b->job.id);
}

void backup_views_settle(const char *device)
{
	view_settle(device);
}

/*
 * The copy: open the view, run the copier, tell the kernel the rest of
 * what is in the image, check that the session held.  *ran is set once
 * the copier runs; 0 or -errno, *is_read telling which side failed.
 */
static int backup_copy(struct backup_job *b, struct copy_stats *stats, bool *ran, bool *is_read)
{
	struct copier c = {
		.job = &b->job, .node = b->node, .img = b->img, .set = &b->set, .fd = -1,
		.inject_skip = b->inject_skip, .inject_errno = b->inject_errno,
	};
	char path[256];
	int r, rf;

	view_path(&b->view, path, sizeof(path));
	c.fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (c.fd < 0) {
		r = -errno;
		fprintf(stderr, "bsyncd: job %s: cannot open the snapshot view %s: %s\n",
			b->job.id, path, strerror(-r));
		*is_read = true;
		return r;
	}
	r = copier_init(&c);
	if (r)
		goto out;
	*ran = true;
	r = b->sync == SYNC_NONE ? copier_copy_preserved(&c, is_read) : copier_copy_runs(&c, is_read);
	/* what reached the image counts, even when the job failed */
	rf = copier_flush(&c);
	if (rf && !r) {
		r = rf;
		*is_read = true;
	}
	if (!r)
		r = backup_check_session(b, is_read);
	*stats = c.stats;
out:
	close(c.fd);
	copier_destroy(&c);
	return r;
}

static void log_copy(const struct backup_job *b, int r, double secs, const struct copy_stats *stats)
{
	fprintf(stderr, "bsyncd: job %s: %s after %.3f s, %" PRIu64 " of %" PRIu64
		" bytes, %d reads (%.3f s waiting for reads, %.3f s writing the image, of which %.3f s in %d session_done; %.3f s starting and stopping readers)\n",
		b->job.id, r ? strerror(-r) : "copied", secs, b->job.offset, b->job.len, stats->reads,
		stats->t_wait, stats->t_put, stats->t_done, stats->ndone, stats->t_readers);
}

/* The copy's result as the job sees it: cancelled, or an error event. */
static int backup_outcome(struct backup_job *b, int r, bool is_read)
{
	daemon_lock();
	if (!r && b->job.cancelled)
		r = -ECANCELED;
	daemon_unlock();
	if (r && r != -ECANCELED) {
		if (!is_read && qcow2_errmsg(b->img)[0])
			fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, qcow2_errmsg(b->img));
		job_event_error(&b->job, is_read);
	}
	return r;
}

/*
 * Everything was read (the view is closed): the session ends in a thread
 * of its own while the image is closed, as both mostly wait (for the
 * kernel, for the disk).  The view goes at clean.
 */
static int backup_close(struct backup_job *b, int r)
{
	char err[512] = "";
	struct meter m;
	pthread_t ender;
	bool ending;
	int rc;

	meter_start(&m);
	ending = pthread_create(&ender, NULL, end_session_thread, &b->view) == 0;
	if (!ending)
		view_end_session(&b->view);
	/* A failed or cancelled job's image is well-formed, marked partial. */
	if (r)
		mark_partial(b, r);
	rc = qcow2_close(b->img, true, err, sizeof(err));
	inflight_remove(b->job.id);
	fprintf(stderr, "bsyncd: job %s: image closed in %.3f s\n", b->job.id, meter_read(&m));
	b->img = NULL;
	if (rc && !r) {
		fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
		job_event_error(&b->job, false);
		r = rc;
	}
	if (ending)
		pthread_join(ender, NULL);
	fprintf(stderr, "bsyncd: job %s: session ended in %.3f s\n", b->job.id, meter_read(&m));
	return r;
}

/* The job's thread: copy, settle the outcome, close; the log lines measure each. */
static int backup_run(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;
	struct copy_stats stats = { 0 };
	struct meter m;
	bool ran = false, is_read = false;
	int r;

	meter_start(&m);
	r = backup_copy(b, &stats, &ran, &is_read);
	if (ran)
		log_copy(b, r, meter_read(&m), &stats);
	r = backup_outcome(b, r, is_read);
	r = backup_close(b, r);
	return r == -ECANCELED ? 0 : r;
}

/* The bitmap sync rule (block/backup.c backup_cleanup_sync_bitmap). */
static void sync_bitmap(struct backup_job *b, int ret)
{
	const char *how;
	char msg[BITMAP_NAME_MAX + 32], err[256];

	if (!b->bitmap)
		return;
	if (b->bmode == BM_NEVER)
		how = "reclaim";
	else if (b->bmode == BM_ALWAYS)
		how = "always";		/* successor | what was not copied */
	else
		how = ret == 0 ? "abdicate" : "reclaim";
	snprintf(msg, sizeof(msg), "unfreeze %s %s", b->bitmap, how);
	if (node_message(b->node, msg, NULL, err, sizeof(err)))
		fprintf(stderr, "bsyncd: job %s: %s\n", b->job.id, err);
}

void backup_commit(struct job *job)
{
	sync_bitmap((struct backup_job *)job, 0);
}

void backup_abort(struct job *job)
{
	sync_bitmap((struct backup_job *)job, -1);
}

void backup_clean(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;

	view_release(&b->view);
	copyset_free(&b->set);
}

void backup_free(struct job *job)
{
	struct backup_job *b = (struct backup_job *)job;

	view_release(&b->view);	/* a job that never got to clean */
	free(b->bitmap);
	free(b->fleece_why);
	free(b->node);
	free(b->target);
	copyset_free(&b->set);
	free(b);
}

static const struct job_driver backup_driver = {
	.type = "backup",
	.run = backup_run,
	.commit = backup_commit,
	.abort = backup_abort,
	.clean = backup_clean,
	.free = backup_free,
};

static int open_target(struct backup_job *b, const struct backup_args *a, struct qerr *e)
{
	char err[512] = "";
	int r;

	if (a->mode && !strcmp(a->mode, "existing")) {
		if (a->backing_file)
			return qerr_set(e, "'backing-file' cannot be used with mode 'existing'");
		r = qcow2_open_existing(a->target, 0, &b->img, err, sizeof(err));
		if (r)
			return qerr_set(e, "Could not open '%s': %s", a->target, err);
		if (qcow2_virtual_size(b->img) != b->set.size) {
			qcow2_close(b->img, true, NULL, 0);	/* as it was: empty */
			b->img = NULL;
			return qerr_set(e, "Source and target image have different sizes");
		}
	} else {
		struct qcow2_create_opts o = {
			.virtual_size = b->set.size,
			.cluster_size = 0,
			.backing_file = a->backing_file,
			.backing_fmt = a->backing_fmt,
		};

		if (a->backing_fmt && !a->backing_file)
			return qerr_set(e, "'backing-fmt' requires 'backing-file'");
		if (a->backing_fmt && strcmp(a->backing_fmt, "qcow2") && strcmp(a->backing_fmt, "raw"))
			return qerr_set(e, "Parameter 'backing-fmt' does not accept value '%s'",
					a->backing_fmt);
		r = qcow2_create(a->target, &o, &b->img, err, sizeof(err));
		if (r)
			return qerr_set(e, "Could not create '%s': %s", a->target, err);
	}
	/* the record is optional: an image without one verifies without it */
	if (checksums && qcow2_enable_sums(b->img, err, sizeof(err)))
		fprintf(stderr, "bsyncd: %s: no checksum record: %s\n", a->target, err);
	return 0;
}

static void discard_target(struct backup_job *b, bool created)
{
	if (!b->img)
		return;
	if (created)
		qcow2_abort_and_unlink(b->img);
	else
		qcow2_close(b->img, true, NULL, 0);	/* nothing written: as it was */
	b->img = NULL;
}

static int take_inject(const char *device, int *skip, int *err)
{
	struct inject **pp, *p;

	for (pp = &injects; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->device, device)) {
			p = *pp;
			*pp = p->next;
			*skip = p->skip;
			*err = p->err;
			free(p);
			return 1;
		}
	return 0;
}

int backup_inject_error(const char *device, int64_t skip, int64_t err, struct qerr *e)
{
	struct inject *p;
	int r = node_exists(device);

	if (r <= 0)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", device, device);
	if (skip < 0 || skip > 1000000)
		return qerr_set(e, "Parameter 'skip' expects a value from 0 to 1000000");
	if (err <= 0 || err > 4095)
		return qerr_set(e, "Parameter 'errno' expects a positive errno value");
	p = calloc(1, sizeof(*p));
	if (!p)
		return qerr_set(e, "out of memory");
	snprintf(p->device, sizeof(p->device), "%s", device);
	p->skip = (int)skip;
	p->err = (int)err;
	p->next = injects;
	injects = p;
	return 0;
}

/*
 * Undo backup_prepare(): end the session, let the view go, give the frozen
 * bitmap its bits back, drop the target if it was made for the job.
 */
void backup_discard(struct backup_job *b)
{
	bool frozen = b->view.session;	/* session_start froze the bitmap */
	char msg[BITMAP_NAME_MAX + 32];

	view_end_session(&b->view);
	view_release(&b->view);
	if (frozen && b->bitmap) {
		snprintf(msg, sizeof(msg), "unfreeze %s reclaim", b->bitmap);
		node_message(b->node, msg, NULL, NULL, 0);
	}
	discard_target(b, b->created);
	backup_free(&b->job);
}

int backup_check_job_slot(const char *device, const char *id, struct qerr *e)
{
	if (job_find_device(device))
		return qerr_set(e, "Node '%s' is busy: block device is in use by block job: backup",
				device);
	if (!job_id_valid(id))
		return qerr_set(e, "Invalid job ID '%s'", id);
	if (job_find(id))
		return qerr_set(e, "Job ID '%s' already in use", id);
	return 0;
}

/* Checks in QEMU's order (blockdev.c do_backup_common()); 0 or -1 with e set. */
static int check_backup_args(const struct backup_args *a, const char *id, enum sync_mode *sync,
		      enum bitmap_mode *bmode, struct qerr *e)
{
	int r = node_exists(a->device);

	if (r < 0)
		return qerr_set(e, "cannot look up '%s': %s", a->device, strerror(-r));
	if (!r)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", a->device, a->device);
	if (a->format && strcmp(a->format, "qcow2"))
		return qerr_set(e, "Format '%s' is not supported for the target: bsyncd writes qcow2",
				a->format);
	if (a->mode && strcmp(a->mode, "existing") && strcmp(a->mode, "absolute-paths"))
		return qerr_set(e, "Parameter 'mode' does not accept value '%s'", a->mode);
	if (check_sync_args(a, a->device, sync, bmode, e))
		return -1;
	if (a->speed < 0)
		return qerr_set(e, "Parameter 'speed' expects a non-negative value");
	return backup_check_job_slot(a->device, id, e);
}

int backup_take_point_in_time(struct backup_job *b, const struct backup_args *a,
			      const struct node_info *info, struct qerr *e)
{
	dev_t protect[2] = { info->dev, info->origin };
	struct view_opts vo = {
		.store_dir = store_dir, .x_store = a->x_store,
		.protect = protect, .nprotect = 2,
		.size = b->set.size, .cluster = b->set.cluster,
		.mode = session_modes[b->sync], .bitmap = b->bitmap,
	};
	char err[512] = "";
	int r;

	r = view_begin(&b->view, b->node, &vo, err, sizeof(err));
	b->t_store = b->t_target + b->view.took_store;
	b->t_session = b->t_store + b->view.took_session;
	if (r)
		return qerr_set(e, "%s", err);
	return backup_prepare_view(b, e);
}

/* The view and what to copy, once the instant is taken. */
int backup_prepare_view(struct backup_job *b, struct qerr *e)
{
	char err[512] = "";

	if (view_create(&b->view, err, sizeof(err)))
		return qerr_set(e, "%s", err);
	b->t_view = meter_read(&b->t0);
	if (copyset_compute(&b->set, b->node, b->sync, b->bitmap, err, sizeof(err)))
		return qerr_set(e, "%s", err);
	return 0;
}

struct backup_job *backup_new(const char *device, const char *bitmap,
				     enum sync_mode sync, enum bitmap_mode bmode,
				     struct node_info *info, struct qerr *e)
{
	struct backup_job *b;
	char err[512] = "";

	if (node_get_info(device, info, err, sizeof(err))) {
		qerr_set(e, "%s", err);
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		qerr_set(e, "out of memory");
		return NULL;
	}
	b->sync = sync;
	b->bmode = bmode;
	b->node = strdup(device);
	b->bitmap = bitmap ? strdup(bitmap) : NULL;
	b->inject_skip = -1;
	b->set.size = info->size;
	b->set.cluster = BACKUP_CLUSTER_MIN;
	if (!b->node || (bitmap && !b->bitmap)) {
		qerr_set(e, "out of memory");
		backup_discard(b);
		return NULL;
	}
	return b;
}

/* The target image, made or opened; a larger cluster than the copy's becomes the copy's. */
static int backup_target(struct backup_job *b, const struct backup_args *a, struct qerr *e)
{
	b->target = strdup(a->target);
	if (!b->target)
		return qerr_set(e, "out of memory");
	b->created = !(a->mode && !strcmp(a->mode, "existing"));
	if (open_target(b, a, e))
		return -1;
	b->t_target = meter_read(&b->t0);
	if (qcow2_cluster_size(b->img) > b->set.cluster)
		b->set.cluster = qcow2_cluster_size(b->img);
	return 0;
}

struct backup_job *backup_prepare(const struct backup_args *a, struct qerr *e)
{
	const char *id = a->job_id ? a->job_id : a->device;
	struct backup_job *b;
	struct node_bitmap bm;
	struct node_info info;
	enum sync_mode sync = SYNC_FULL;
	enum bitmap_mode bmode = BM_ON_SUCCESS;
	struct meter t0;

	meter_start(&t0);
	if (check_backup_args(a, id, &sync, &bmode, e))
		return NULL;
	b = backup_new(a->device, a->bitmap, sync, bmode, &info, e);
	if (!b)
		return NULL;
	b->t0 = t0;
	if (a->bitmap && !node_find_bitmap(a->device, a->bitmap, &bm) &&
	    bm.granularity > b->set.cluster)
		b->set.cluster = bm.granularity;
	if (backup_target(b, a, e))
		goto bad;
	if (b->set.cluster > (64u << 20)) {
		qerr_set(e, "backup cluster size %" PRIu64 " is above 64 MiB", b->set.cluster);
		goto bad;
	}
	if (backup_take_point_in_time(b, a, &info, e))
		goto bad;
	if (take_inject(a->device, &b->inject_skip, &b->inject_errno) == 0)
		b->inject_skip = -1;
	return b;

bad:
	backup_discard(b);
	return NULL;
}

struct backup_job *backup_stage(const struct backup_args *a, struct qerr *e)
{
	struct backup_job *b;
	struct node_info info;
	struct view_opts vo = { .store_dir = store_dir, .x_store = a->x_store, .nprotect = 2 };
	dev_t protect[2];
	char err[512] = "";
	struct meter t0;
	int r;

	meter_start(&t0);
	r = node_exists(a->device);
	if (r < 0) {
		qerr_set(e, "cannot look up '%s': %s", a->device, strerror(-r));
		return NULL;
	}
	if (!r) {
		qerr_set(e, "Cannot find device='%s' nor node-name='%s'", a->device, a->device);
		return NULL;
	}
	if (a->format && strcmp(a->format, "qcow2")) {
		qerr_set(e, "Format '%s' is not supported for the target: bsyncd writes qcow2", a->format);
		return NULL;
	}
	b = backup_new(a->device, a->bitmap, SYNC_FULL, BM_ON_SUCCESS, &info, e);
	if (!b)
		return NULL;
	b->t0 = t0;
	if (backup_target(b, a, e))
		goto bad;
	protect[0] = info.dev;
	protect[1] = info.origin;
	vo.protect = protect;
	vo.size = b->set.size;
	if (view_provision(&b->view, b->node, &vo, err, sizeof(err))) {
		qerr_set(e, "%s", err);
		goto bad;
	}
	b->t_store = b->t_target + b->view.took_store;
	return b;

bad:
	backup_discard(b);
	return NULL;
}

int backup_stage_instant(struct backup_job *b, const struct backup_args *a, struct qerr *e)
{
	const char *id = a->job_id ? a->job_id : a->device;
	enum sync_mode sync = SYNC_FULL;
	enum bitmap_mode bmode = BM_ON_SUCCESS;
	struct view_opts vo = { 0 };
	struct node_bitmap bm;
	char err[512] = "";
	int r;

	if (check_sync_args(a, a->device, &sync, &bmode, e))
		return -1;
	if (a->speed < 0)
		return qerr_set(e, "Parameter 'speed' expects a non-negative value");
	if (backup_check_job_slot(a->device, id, e))
		return -1;
	b->sync = sync;
	b->bmode = bmode;
	if (a->bitmap && !node_find_bitmap(a->device, a->bitmap, &bm) &&
	    bm.granularity > b->set.cluster)
		b->set.cluster = bm.granularity;
	if (b->set.cluster > (64u << 20))
		return qerr_set(e, "backup cluster size %" PRIu64 " is above 64 MiB", b->set.cluster);
	vo.size = b->set.size;
	vo.cluster = b->set.cluster;
	vo.mode = session_modes[b->sync];
	vo.bitmap = b->bitmap;
	r = view_start(&b->view, &vo, err, sizeof(err));
	b->t_session = b->t_store + b->view.took_session;
	if (r)
		return qerr_set(e, "%s", err);
	if (take_inject(a->device, &b->inject_skip, &b->inject_errno) == 0)
		b->inject_skip = -1;
	return 0;
}

/*
 * The job is a full backup taken instead of an incremental: a monitoring
 * client learns why from the daemon, as from the CLI that asked.  Sent
 * once the job exists, before it runs, so it precedes the job's end.
 */
static void fallback_event(const char *id, const struct backup_args *a)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "id", json_object_new_string(id));
	json_object_object_add(d, "device", json_object_new_string(a->device));
	json_object_object_add(d, "target", json_object_new_string(a->target));
	json_object_object_add(d, "reason", json_object_new_string(a->x_fallback_reason));
	if (a->x_fallback_detail)
		json_object_object_add(d, "detail", json_object_new_string(a->x_fallback_detail));
	fprintf(stderr, "bsyncd: job %s: a full backup of %s instead of an incremental (%s)%s%s\n",
		id, a->device, a->x_fallback_reason, a->x_fallback_detail ? ": " : "",
		a->x_fallback_detail ? a->x_fallback_detail : "");
	qmp_event("BSYNC_BACKUP_FALLBACK", d);
}

int backup_launch_txn(struct backup_job *b, const struct backup_args *a, struct job_txn *txn,
		      struct qerr *e)
{
	const char *id = a->job_id ? a->job_id : a->device;

	if (job_init(&b->job, &backup_driver, id, a->device, a->auto_finalize, a->auto_dismiss, e)) {
		backup_discard(b);
		return -1;
	}
	/* out of memory: the job runs on its own, as with completion-mode individual */
	if (txn && job_txn_add(txn, &b->job))
		fprintf(stderr, "bsyncd: job %s: out of memory: not in its transaction's group\n", id);
	b->job.speed = (uint64_t)a->speed;
	b->job.len = copyset_bytes(&b->set);
	if (b->sync == SYNC_NONE)
		b->job.len = 0;
	fprintf(stderr, "bsyncd: job %s: %s backup of %s started in %.3f s (target %.3f, store %.3f, "
		"session %.3f, view %.3f): %zu runs, %" PRIu64 " bytes, cluster %" PRIu64 ", store %s\n",
		id, a->sync, a->device, meter_read(&b->t0), b->t_target, b->t_store, b->t_session,
		b->t_view, b->set.n, b->job.len, b->set.cluster, b->view.store);
	inflight_add(id, a->target);
	if (a->x_fallback_reason)
		fallback_event(id, a);
	if (job_start(&b->job, e)) {
		inflight_remove(id);
		return -1;
	}
	return 0;
}

int backup_launch(struct backup_job *b, const struct backup_args *a, struct qerr *e)
{
	return backup_launch_txn(b, a, NULL, e);
}

int backup_start(const struct backup_args *a, struct qerr *e)
{
	struct backup_job *b = backup_prepare(a, e);

	return b ? backup_launch(b, a, e) : -1;
}

int backup_recover(void)
{
	char **names = NULL, err[256];
	int i, n = 0;

	view_remove_leftovers();
	if (node_list(&names))
		return 0;
	for (i = 0; names[i]; i++) {
		struct node_bitmap *bms;
		size_t nb, j;

		view_end_stale_session(names[i]);
		if (node_bitmaps(names[i], &bms, &nb))
			continue;
		for (j = 0; j < nb; j++) {
			char msg[BITMAP_NAME_MAX + 32];

			if (!bms[j].anonymous &&
			    !strncmp(bms[j].name, TXN_TMP_PREFIX, strlen(TXN_TMP_PREFIX))) {
				snprintf(msg, sizeof(msg), "remove %s", bms[j].name);
				if (node_message(names[i], msg, NULL, err, sizeof(err)))
					fprintf(stderr, "bsyncd: recovery: %s\n", err);
				continue;
			}
			if (bms[j].anonymous || !bms[j].busy)
				continue;
			snprintf(msg, sizeof(msg), "unfreeze %s reclaim", bms[j].name);
			if (node_message(names[i], msg, NULL, err, sizeof(err)))
				fprintf(stderr, "bsyncd: recovery: %s\n", err);
			else {
				fprintf(stderr, "bsyncd: recovery: %s: bitmap %s was frozen by a daemon that died; "
					"reclaimed (bitmap | successor)\n", names[i], bms[j].name);
				n++;
			}
		}
		free(bms);
	}
	node_names_free(names);
	return n;
}

void backup_shutdown(void)
{
	struct inject *p;

	view_settle(NULL);
	copier_shutdown();
	while ((p = injects)) {
		injects = p->next;
		free(p);
	}
}
