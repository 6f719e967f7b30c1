/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Copy-before-write backup sessions of the bsync target.
 *
 * A session freezes the device's content at one instant for a backup
 * reader. Clusters the backup still needs are listed in @needed; a write
 * touching one is held while the old cluster is copied ("preserved") to a
 * store device, then released. The bsync-snap target reads the frozen view:
 * preserved clusters from the store, still-needed ones from the origin.
 *
 *   dm-bsync-cbw.c      the session's life and the copy engine
 *   dm-bsync-cbw-buf.c  the copies' buffers and their budgets
 *   dm-bsync-view.c     where each cluster of the instant is: view reads
 *                       routed, extents queried
 *   dm-bsync-snap.c     the bsync-snap target over the view
 *
 * Calls go snap -> view, and ctl -> cbw, view; cbw -> buf. The view and
 * the engine share the session's data (its map, @needed and the counts
 * of view reads in flight), not calls.
 */
#ifndef DM_BSYNC_CBW_H
#define DM_BSYNC_CBW_H

#include <linux/atomic.h>
#include <linux/bio.h>
#include <linux/list.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "dm-bsync-bitmap.h"
#include "dm-bsync-compat.h"

#define BSYNC_CLUSTER_MIN_SHIFT	3	/* 4 KiB, in sectors */
#define BSYNC_CLUSTER_MAX_SHIFT	17	/* 64 MiB */
#define BSYNC_READER_BUCKETS	256
#define BSYNC_DEFAULT_CBW_TIMEOUT_MS 60000

enum bsync_set { BSYNC_SET_BITMAP, BSYNC_SET_ALL, BSYNC_SET_ALLOCATED, BSYNC_SET_NONE };

enum bsync_session_state { BSYNC_SESSION_ACTIVE, BSYNC_SESSION_BROKEN, BSYNC_SESSION_ENDED };

/* What happens when a cluster cannot be preserved. */
enum bsync_cbw_policy { BSYNC_BREAK_SNAPSHOT, BSYNC_BREAK_GUEST_WRITE };

struct bsync_session_params {
	const char *store_path;
	unsigned int shift;		/* cluster size, log2 sectors */
	enum bsync_cbw_policy policy;
	unsigned int timeout_ms;	/* 0: wait for the copy however long */
	dev_t origin_dev;
	dev_t self_dev;			/* the bsync device: never a store */
	sector_t dev_sectors;
	const char *dev_name;
};

struct bsync_session {
	refcount_t ref;			/* the device's, one per view, one per copy */
	struct bsync_bdev origin;
	struct bsync_bdev store;
	unsigned int shift;
	sector_t dev_sectors;
	enum bsync_cbw_policy policy;
	unsigned long timeout;		/* jiffies, 0 for none */
	char dev_name[32];
	char bitmap[BSYNC_NAME_MAX + 1];	/* frozen with the session, or "" */

	/*
	 * A set bit: the backup needs the cluster and its old data is still
	 * only on the origin. Tested locklessly by the bio path; cleared under
	 * @map's lock once the cluster is preserved or the reader is done.
	 */
	struct bsync_bitmap *needed;

	/*
	 * Cluster -> xa_mk_value(store slot) once preserved, or the
	 * struct bsync_copy in flight. Its lock serialises session changes.
	 */
	struct xarray map;
	unsigned long *slots;		/* store slots in use */
	unsigned long nr_slots, slots_used, slot_hint;
	struct list_head copies;	/* in flight, oldest first */

	enum bsync_session_state state;
	const char *reason;		/* why broken */

	struct work_struct work;
	struct bio_list held;		/* writes to (re)examine */
	struct list_head to_write;	/* copies read from the origin */
	struct list_head finished;	/* copies written, or failed */
	struct list_head copy_cache;	/* idle copy buffers */
	unsigned int copy_cache_len;
	/* Bytes of copy buffers, idle or in flight: at most @copy_budget. */
	unsigned long copy_mem, copy_mem_peak, copy_budget;
	struct bio_list spent;		/* writes that found no copy buffer */
	struct delayed_work timer;	/* enforces the cbw timeout */
	struct work_struct free_work;

	/* View reads from the origin or store in flight, hashed by cluster. */
	atomic_t readers[BSYNC_READER_BUCKETS];
	wait_queue_head_t reader_wait;

	atomic64_t copied;		/* clusters the reader reported done */
	atomic64_t preserved;		/* clusters CBW copied to the store */
	atomic64_t delayed;		/* writes held for a copy */
	atomic64_t delay_ns;		/* their total wait */
};

struct bsync_session *bsync_session_create(const struct bsync_session_params *p,
					   const char **error);
void bsync_session_arm(struct bsync_session *s, enum bsync_set set,
		       const struct bsync_bitmap *src);
void bsync_session_end(struct bsync_session *s);
void bsync_session_get(struct bsync_session *s);
void bsync_session_put(struct bsync_session *s);

/* Which count of view reads in flight a read of @cluster holds. */
static inline unsigned int bsync_reader_bucket(unsigned long cluster)
{
	return cluster % BSYNC_READER_BUCKETS;
}

/* Bio path of the bsync target: true if @bio must wait for copies. */
static inline bool bsync_cbw_needed(const struct bsync_session *s, sector_t sector,
				    sector_t nr)
{
	unsigned long first = sector >> s->shift;
	unsigned long last = (sector + nr - 1) >> s->shift;

	if (last >= s->needed->nr_bits)
		last = s->needed->nr_bits - 1;
	return find_next_bit(s->needed->bits, last + 1, first) <= last;
}

void bsync_cbw_hold(struct bsync_session *s, struct bio *bio);

/* Control: the reader copied [sector, sector + nr). */
void bsync_session_done(struct bsync_session *s, sector_t sector, sector_t nr);
int bsync_session_emit_status(struct bsync_session *s, char *result, unsigned int maxlen);
const char *bsync_session_state_name(const struct bsync_session *s);

/* The view's map (dm-bsync-view.c): reads routed, extents queried. */
/* The reader counts a view read holds (dm-bsync-view.c): its per-bio data. */
struct bsync_view_pin {
	u16 first;	/* bucket of the read's first cluster */
	u16 count;	/* buckets held from @first on, 0 for none */
};

int bsync_snap_map_read(struct bsync_session *s, struct bio *bio, struct bsync_view_pin *pin);
void bsync_snap_read_done(struct bsync_session *s, struct bsync_view_pin *pin);
bool bsync_session_next_wanted(struct bsync_session *s, sector_t from,
			       sector_t *start, sector_t *len);
bool bsync_session_next_preserved(struct bsync_session *s, sector_t from,
				  sector_t *start, sector_t *len);

/* The read-only view's target (dm-bsync-snap.c). */
int bsync_snap_register(void);
void bsync_snap_unregister(void);

int bsync_cbw_init(void);
void bsync_cbw_exit(void);

#endif
