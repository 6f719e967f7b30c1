/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The point-in-time view of a bsync device, and only its life: the
 * copy-before-write session that fixes the instant (with its scratch
 * store), and the read-only bsync-snap device that reads the device as it
 * was then (QEMU's copy-before-write filter and snapshot-access node).
 * Nothing here knows about jobs or copying: a backup reads the view, and
 * so could an export of it.
 *
 * The order is: view_begin() (the instant), view_create() (the device),
 * then view_end_session() and view_release(), in that order, once nothing
 * reads the view any more.  Both of the last two may be called at any
 * point and do nothing if there is nothing to end or release.
 */
#ifndef BSYNCD_VIEW_H
#define BSYNCD_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "node.h"
#include "store.h"

#define VIEW_NAME_MAX 160

struct view_opts {
	const char *store_dir;		/* where default stores are made */
	const char *x_store;		/* a store named by the caller, or NULL */
	const dev_t *protect;		/* what the store must not be stacked on */
	size_t nprotect;
	uint64_t size;			/* the device's, bytes */
	uint64_t cluster;		/* the session's copy-before-write unit */
	const char *mode;		/* session mode: full allocated bitmap none */
	const char *bitmap;		/* frozen at the instant, or NULL */
};

struct view {
	char node[NODE_NAME_MAX + 1];
	char name[VIEW_NAME_MAX];	/* the bsync-snap device; "" while there is none */
	char store[64];			/* the store handed to the session */
	uint64_t size;
	bool session;			/* kernel session active */
	struct store pending;		/* provisioned, not yet handed to a session, */
	bool has_pending;		/* if this is set */
	/* seconds each step of view_begin() took, for the caller's log */
	double took_store, took_session;
};

/*
 * Fix the instant: provide a store and start the session on node (which
 * freezes o->bitmap).  0, or -errno with the QMP error text in err.
 */
int view_begin(struct view *v, const char *node, const struct view_opts *o,
	       char *err, size_t errlen);

/*
 * view_begin() in two steps, so that the store is made before a
 * transaction's write gates close and only the session starts while they
 * are: view_provision() (v and its store), then view_start() with the same
 * options.  view_release() drops a store never handed to a session.
 */
int view_provision(struct view *v, const char *node, const struct view_opts *o,
		   char *err, size_t errlen);
int view_start(struct view *v, const struct view_opts *o, char *err, size_t errlen);

/* Make the read-only view of the instant.  0, or -errno with the QMP error text. */
int view_create(struct view *v, char *err, size_t errlen);

/* /dev/mapper/<view> */
void view_path(const struct view *v, char *buf, size_t len);

/*
 * End the session (no lock needed).  The kernel ends a session with a view
 * still open: the view's reads fail from then on.
 */
void view_end_session(struct view *v);

/*
 * Let the view go.  Its removal is done by a thread of its own (the kernel
 * waits for RCU grace periods as the disk goes away, which nobody needs to
 * wait for); view_settle() waits for it.
 */
void view_release(struct view *v);

/* Wait until the released views of node (of every node if NULL) are removed. */
void view_settle(const char *node);

/* At daemon start: remove the views a daemon that died left. */
void view_remove_leftovers(void);

/* At daemon start: end the session a daemon that died left on node, if any. */
void view_end_stale_session(const char *node);

#endif
