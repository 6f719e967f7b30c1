// SPDX-License-Identifier: GPL-2.0
/*
 * The point-in-time view's life: session, view device, their removal and
 * recovery.  See view.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmctl.h"
#include "meter.h"
#include "node.h"
#include "store.h"
#include "view.h"

#define VIEW_PREFIX "bsyncd-snap-"

int view_provision(struct view *v, const char *node, const struct view_opts *o,
		   char *err, size_t errlen)
{
	struct meter m;
	int r;

	memset(v, 0, sizeof(*v));
	snprintf(v->node, sizeof(v->node), "%s", node);
	v->size = o->size;
	meter_start(&m);
	r = store_provision(o->store_dir, o->x_store, o->size, o->protect, o->nprotect, &v->pending,
			    err, errlen);
	if (!r) {
		snprintf(v->store, sizeof(v->store), "%s", v->pending.dev);
		v->has_pending = true;
	}
	v->took_store = meter_read(&m);
	return r;
}

int view_start(struct view *v, const struct view_opts *o, char *err, size_t errlen)
{
	char msg[BITMAP_NAME_MAX + 256];
	struct meter m;
	int r;

	snprintf(msg, sizeof(msg), "session_start %s %" PRIu64 " %s %s", v->store, o->cluster,
		 o->mode, o->bitmap ? o->bitmap : "-");
	meter_start(&m);
	r = node_message(v->node, msg, NULL, err, errlen);
	/* the session holds the store now (or failed): the daemon's hold goes */
	store_release(&v->pending);
	v->has_pending = false;
	v->took_session = meter_read(&m);
	if (r) {
		if (r == -EBUSY)
			snprintf(err, errlen, "Node '%s' is busy: a copy-before-write session is already "
				 "active (another program, or a view left open)", v->node);
		return r;
	}
	v->session = true;
	return 0;
}

int view_begin(struct view *v, const char *node, const struct view_opts *o,
	       char *err, size_t errlen)
{
	int r = view_provision(v, node, o, err, errlen);

	return r ? r : view_start(v, o, err, errlen);
}

int view_create(struct view *v, char *err, size_t errlen)
{
	char origin[NODE_NAME_MAX + 16];
	int r;

	snprintf(v->name, sizeof(v->name), VIEW_PREFIX "%s", v->node);
	view_settle(v->node);	/* the node's last view, if still going */
	node_path(v->node, origin, sizeof(origin));
	r = dmctl_create_ro(v->name, v->size / 512, "bsync-snap", origin);
	if (r) {
		snprintf(err, errlen, "cannot create the snapshot view %s: %s", v->name, strerror(-r));
		v->name[0] = 0;
	}
	return r;
}

void view_path(const struct view *v, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/mapper/%s", v->name);
}

void view_end_session(struct view *v)
{
	char err[256];

	if (v->session) {
		if (node_message(v->node, "session_end", NULL, err, sizeof(err)))
			fprintf(stderr, "bsyncd: %s\n", err);
		v->session = false;
	}
}

/*
 * Views being removed, each by its own thread; the node's next view,
 * removing the node and the daemon's exit wait for them (view_settle).
 */
struct view_removal {
	char name[VIEW_NAME_MAX];
	pthread_t thread;
	struct view_removal *next;
};

static pthread_mutex_t removals_mu = PTHREAD_MUTEX_INITIALIZER;
static struct view_removal *removals;

static void view_remove(const char *name)
{
	struct meter m;
	int i, r = 0;

	meter_start(&m);
	for (i = 0; i < 50; i++) {
		r = dmctl_remove(name);
		if (r != -EBUSY)
			break;
		usleep(100000);	/* a reader (blkid, a test) still has it open */
	}
	if (r)
		fprintf(stderr, "bsyncd: cannot remove the snapshot view %s: %s\n", name, strerror(-r));
	else
		fprintf(stderr, "bsyncd: view %s removed in %.3f s\n", name, meter_read(&m));
}

static void *view_remove_thread(void *arg)
{
	view_remove(((struct view_removal *)arg)->name);
	return NULL;
}

static void view_remove_async(const char *name)
{
	struct view_removal *vr = calloc(1, sizeof(*vr));

	if (vr) {
		snprintf(vr->name, sizeof(vr->name), "%s", name);
		pthread_mutex_lock(&removals_mu);
		if (!pthread_create(&vr->thread, NULL, view_remove_thread, vr)) {
			vr->next = removals;
			removals = vr;
			vr = NULL;
		}
		pthread_mutex_unlock(&removals_mu);
		if (!vr)
			return;
		free(vr);
	}
	view_remove(name);	/* no thread: here and now */
}

void view_release(struct view *v)
{
	if (v->has_pending) {
		store_release(&v->pending);
		v->has_pending = false;
	}
	if (v->name[0]) {
		view_remove_async(v->name);
		v->name[0] = 0;
	}
}

void view_settle(const char *node)
{
	struct view_removal **pp, *vr, *done = NULL;
	char name[VIEW_NAME_MAX];

	if (node)
		snprintf(name, sizeof(name), VIEW_PREFIX "%s", node);
	pthread_mutex_lock(&removals_mu);
	for (pp = &removals; (vr = *pp);) {
		if (!node || !strcmp(vr->name, name)) {
			*pp = vr->next;
			vr->next = done;
			done = vr;
		} else {
			pp = &vr->next;
		}
	}
	pthread_mutex_unlock(&removals_mu);
	while ((vr = done)) {
		done = vr->next;
		pthread_join(vr->thread, NULL);
		free(vr);
	}
}

void view_remove_leftovers(void)
{
	char **names = NULL;
	int i;

	if (dmctl_list_by_type("bsync-snap", &names))
		return;
	for (i = 0; names[i]; i++)
		if (!strncmp(names[i], VIEW_PREFIX, strlen(VIEW_PREFIX)))
			dmctl_remove(names[i]);
	dmctl_names_free(names);
}

void view_end_stale_session(const char *node)
{
	/* fails harmlessly when no session is active */
	dmctl_message(node, "session_end", NULL);
}
