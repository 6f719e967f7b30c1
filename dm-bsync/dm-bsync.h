/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interfaces of the bsync target, shared by its files:
 *   dm-bsync-main.c    the module: registers both targets
 *   dm-bsync-target.c  table constructor, state across reloads, bio path
 *   dm-bsync-gate.c    the write gate: one instant for control operations,
 *                      held across messages for an instant of several devices
 *   dm-bsync-ctl*.c    messages and status (dm-bsync-ctl.h lists them)
 *   dm-bsync-bitmap.c  the dirty bitmap data structure
 *   dm-bsync-persist.c persistent bitmaps: first-touch logging, commits
 *   dm-bsync-metadata.c  their on-disk format
 *   dm-bsync-cbw.c     copy-before-write backup sessions (dm-bsync-cbw.h)
 *   dm-bsync-snap.c    the bsync-snap target: a session's frozen view
 *
 * Calls go one way, downwards:
 *   main -> target, snap, cbw, gate
 *   target -> ctl -> gate, persist, cbw, bitmap
 *   target -> gate, persist, cbw, bitmap;  persist -> metadata -> bitmap
 *   snap -> target (the session of a bsync device), cbw
 * What goes back up is a function pointer the caller handed down (the
 * bio path's continuations in struct bsync_state), not a call by name.
 */
#ifndef DM_BSYNC_H
#define DM_BSYNC_H

#include <linux/device-mapper.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/percpu-refcount.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-bsync-bitmap.h"
#include "dm-bsync-cbw.h"
#include "dm-bsync-compat.h"
#include "dm-bsync-format.h"

#define DM_MSG_PREFIX "bsync"

#define BSYNC_MAX_BITMAPS	64
#define BSYNC_DEFAULT_GRAN_SHIFT 7	/* 64 KiB */

struct bsync_stats {
	u64 writes;		/* write-like bios tracked */
	u64 deferred;		/* held at a closed write gate */
};

/*
 * Everything that outlives one table: a reload with the same origin, or a
 * resize, hands the same state to the new table. Keyed by mapped device.
 */
struct bsync_state {
	struct list_head node;		/* bsync_states */
	refcount_t ref;
	struct mapped_device *md;
	dev_t origin_dev;
	sector_t dev_sectors;

	/* Serialises control operations (messages, resize). */
	struct mutex lock;

	/*
	 * Named bitmaps and, per bitmap, its successor only change with the
	 * write gate closed, so the bio path walks them without locks.
	 */
	struct list_head bitmaps;
	unsigned int nr_bitmaps;
	struct bsync_bitmap *alloc;	/* clusters that may hold data */

	/* Write gate: see dm-bsync-gate.c. */
	struct percpu_ref writes;	/* gated writes in flight; killed to close */
	bool gate_closed;
	spinlock_t gate_lock;		/* gate_closed transitions, deferred */
	struct bio_list deferred;
	wait_queue_head_t drain_wait;
	/* A hold for an instant of several devices; under st->lock. */
	bool gate_held;
	u64 gate_token;			/* the holder's, while held */
	u64 gate_broken;		/* the last hold that opened by itself, or 0 */
	u64 gate_expiries;		/* holds that opened by themselves */
	unsigned long gate_deadline;	/* jiffies: the held gate opens then */
	struct delayed_work gate_expire;

	struct bsync_stats __percpu *stats;

	/* The backup session, if any; changes with writes quiesced. */
	struct bsync_session *session;

	/* The metadata device, if the table has one (dm-bsync-persist.c). */
	struct bsync_persist *persist;
	unsigned int nr_persistent;

	/*
	 * The bio path's continuations (dm-bsync-target.c), through which
	 * the write gate and persist hand a write back without calling up
	 * into the target: a write the gate held, a write whose log record
	 * is durable.
	 */
	void (*gate_reissue)(struct bio *bio);
	void (*persist_issue)(struct bio *bio);
};

/* One per table. */
struct bsync_target {
	struct dm_target *ti;
	struct dm_dev *origin;
	struct bsync_state *st;
	struct dm_dev *meta;		/* metadata device, or NULL */
	bool zeroed;			/* table says the origin reads as zeroes */
	unsigned int alloc_shift;	/* allocation tracking granularity */
};

/* Per-bio data. */
struct bsync_bio {
	struct bsync_target *bt;
	bool gated;			/* holds a st->writes ref; put on completion */
	u64 held_since;			/* ns; while copy-before-write holds it */
};

static inline const char *bsync_dev_name(struct bsync_target *bt)
{
	return dm_device_name(dm_table_get_md(bt->ti->table));
}

/* dm-bsync-target.c */
struct bsync_session *bsync_session_lookup(dev_t dev, char **error);
int bsync_target_register(void);
void bsync_target_unregister(void);

/* dm-bsync-gate.c */
int bsync_gate_init(struct bsync_state *st);
void bsync_gate_free(struct bsync_state *st);
bool bsync_gate_defer(struct bsync_state *st, struct bio *bio);
int bsync_quiesce_writes(struct bsync_state *st);
void bsync_resume_writes(struct bsync_state *st);
int bsync_gate_hold(struct bsync_state *st, u64 token, unsigned int timeout_ms);
int bsync_gate_release(struct bsync_state *st, u64 token);
void bsync_gate_drop(struct bsync_state *st);
int bsync_gate_module_init(void);
void bsync_gate_module_exit(void);

/* The bio path's side of the gate: a write holds a reference while in flight. */
static inline bool bsync_gate_enter(struct bsync_state *st)
{
	return percpu_ref_tryget_live(&st->writes);
}

static inline void bsync_gate_leave(struct bsync_state *st)
{
	percpu_ref_put(&st->writes);
}

/* dm-bsync-persist.c */
struct bsync_persist;
int bsync_persist_create(struct bsync_state *st, dev_t dev, const char *name,
			 char **error);
void bsync_persist_destroy(struct bsync_state *st);
bool bsync_persist_needed(struct bsync_state *st, sector_t sector, sector_t nr);
void bsync_persist_defer(struct bsync_state *st, struct bio *bio);
int bsync_persist_commit(struct bsync_state *st, struct dm_target *ti);
void bsync_persist_retry(struct bsync_state *st);
int bsync_persist_check_room(struct bsync_state *st, unsigned long nr_bits);
const char *bsync_persist_state(struct bsync_state *st);
dev_t bsync_persist_dev(struct bsync_state *st);
int bsync_persist_emit_status(struct bsync_state *st, char *result, unsigned int maxlen);

/* dm-bsync-ctl.c, dm-bsync-ctl-query.c, dm-bsync-ctl-args.c */
int bsync_message(struct dm_target *ti, unsigned int argc, char **argv,
		  char *result, unsigned int maxlen);
void bsync_status(struct dm_target *ti, status_type_t type, unsigned int status_flags,
		  char *result, unsigned int maxlen);
int bsync_parse_granularity(const char *arg, unsigned int *shift);

#endif
