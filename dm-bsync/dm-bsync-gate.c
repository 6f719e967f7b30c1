// SPDX-License-Identifier: GPL-2.0
/*
 * The write gate of the bsync target: one instant for control operations.
 *
 * Control operations that rewrite bitmaps (clear, freeze, unfreeze, ...)
 * must happen at one instant with respect to writes: every write is then
 * either wholly before it or wholly after it. Each write bio holds a
 * reference on st->writes from map to completion; closing the gate kills
 * the reference, so new writes are held on a list, and waits for it to
 * drop to zero. This is a write-only internal suspend that never blocks
 * the bio path. A percpu_ref, as the block layer's queue freeze uses:
 * once the kill is confirmed no new reference is taken, on any CPU, even
 * by a writer preempted and migrated in the middle of taking it.
 *
 * One instant across several devices: userspace closes the gate of each
 * (bsync_gate_hold()), acts on each, then opens each. A held gate stays
 * closed between messages, so control operations meanwhile act at the
 * held instant and do not open it; it opens by itself when the hold's
 * time is up, which bounds how long writes wait, and on suspend.
 *
 * The gate knows no target: the writes it held go back to the bio path
 * through st->gate_reissue, which dm-bsync-target.c sets.
 */
#include <linux/bio.h>
#include <linux/jiffies.h>
#include <linux/percpu-refcount.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-bsync.h"

/* Opens held gates: writes wait on it, so it must run under memory pressure. */
static struct workqueue_struct *gate_wq;

static void writes_released(struct percpu_ref *ref)
{
	struct bsync_state *st = container_of(ref, struct bsync_state, writes);

	wake_up_all(&st->drain_wait);
}

static void gate_expire(struct work_struct *work);

int bsync_gate_init(struct bsync_state *st)
{
	spin_lock_init(&st->gate_lock);
	bio_list_init(&st->deferred);
	init_waitqueue_head(&st->drain_wait);
	INIT_DELAYED_WORK(&st->gate_expire, gate_expire);
	/* Closing the gate kills it, opening resurrects it: keep the per-CPU part. */
	return percpu_ref_init(&st->writes, writes_released, PERCPU_REF_ALLOW_REINIT, GFP_KERNEL);
}

/* The device is gone: no write is in flight, none is held. */
void bsync_gate_free(struct bsync_state *st)
{
	/* The expiry takes st->lock: not called under it. */
	cancel_delayed_work_sync(&st->gate_expire);
	WARN_ON_ONCE(!bio_list_empty(&st->deferred));
	percpu_ref_exit(&st->writes);
}

/* Hold a write at a closed gate; false if the gate opened meanwhile. */
bool bsync_gate_defer(struct bsync_state *st, struct bio *bio)
{
	unsigned long flags;
	bool held = false;

	spin_lock_irqsave(&st->gate_lock, flags);
	if (st->gate_closed) {
		bio_list_add(&st->deferred, bio);
		held = true;
	}
	spin_unlock_irqrestore(&st->gate_lock, flags);
	if (held)
		this_cpu_inc(st->stats->deferred);
	return held;
}

/* Open the gate and issue the writes it held. */
static void gate_open(struct bsync_state *st)
{
	struct bio_list held;
	struct bio *bio;

	/* May sleep for the kill's switch to finish: not under gate_lock. */
	percpu_ref_resurrect(&st->writes);
	spin_lock_irq(&st->gate_lock);
	st->gate_closed = false;
	held = st->deferred;
	bio_list_init(&st->deferred);
	spin_unlock_irq(&st->gate_lock);

	while ((bio = bio_list_pop(&held)))
		st->gate_reissue(bio);
}

/*
 * Close the gate and wait up to @timeout jiffies for in-flight writes:
 * 0, or the gate is open again and -ETIMEDOUT or -EINTR.
 */
static int gate_close(struct bsync_state *st, long timeout)
{
	long r;

	/* Closed before the kill: a writer the kill turns away finds it closed. */
	spin_lock_irq(&st->gate_lock);
	st->gate_closed = true;
	spin_unlock_irq(&st->gate_lock);
	percpu_ref_kill(&st->writes);
	r = wait_event_killable_timeout(st->drain_wait, percpu_ref_is_zero(&st->writes),
					timeout);
	if (r > 0)
		return 0;
	gate_open(st);
	return r ? r : -ETIMEDOUT;
}

/*
 * Close the gate and wait for in-flight writes. Caller holds st->lock.
 * Under a hold the gate is closed and drained already: nothing to do.
 */
int bsync_quiesce_writes(struct bsync_state *st)
{
	lockdep_assert_held(&st->lock);
	if (st->gate_held) {
		WARN_ON_ONCE(!percpu_ref_is_zero(&st->writes));
		return 0;
	}
	return gate_close(st, MAX_SCHEDULE_TIMEOUT);
}

/* Open the gate, unless held for a group instant. Caller holds st->lock. */
void bsync_resume_writes(struct bsync_state *st)
{
	lockdep_assert_held(&st->lock);
	if (!st->gate_held)
		gate_open(st);
}

/* The hold ends without gate_open: its token reports that the instant broke. */
static void gate_break(struct bsync_state *st, const char *why)
{
	st->gate_held = false;
	st->gate_broken = st->gate_token;
	st->gate_token = 0;
	st->gate_expiries++;
	DMWARN_LIMIT("%s: write gate held by token %llu opened %s", dm_device_name(st->md),
		     st->gate_broken, why);
	gate_open(st);
}

static void gate_expire(struct work_struct *work)
{
	struct bsync_state *st = container_of(to_delayed_work(work), struct bsync_state,
					      gate_expire);

	mutex_lock(&st->lock);
	/*
	 * A work that ran late may find another hold than the one it was
	 * queued for, hence the deadline rather than the work's existence.
	 */
	if (st->gate_held) {
		if (time_before(jiffies, st->gate_deadline))
			mod_delayed_work(gate_wq, &st->gate_expire, st->gate_deadline - jiffies);
		else
			gate_break(st, "on timeout");
	}
	mutex_unlock(&st->lock);
}

/*
 * Close the gate and keep it closed after st->lock is released, for at most
 * @timeout_ms from now, including the wait for in-flight writes. Caller
 * holds st->lock.
 */
int bsync_gate_hold(struct bsync_state *st, u64 token, unsigned int timeout_ms)
{
	unsigned long timeout = msecs_to_jiffies(timeout_ms);
	unsigned long start = jiffies;
	int r;

	lockdep_assert_held(&st->lock);
	if (st->gate_held)
		return -EBUSY;
	r = gate_close(st, timeout);
	if (r)
		return r;
	st->gate_held = true;
	st->gate_token = token;
	st->gate_deadline = start + timeout;
	/* Not past the deadline: a timeout of 0 runs the expiry at once. */
	mod_delayed_work(gate_wq, &st->gate_expire,
			 time_before(jiffies, st->gate_deadline) ? st->gate_deadline - jiffies : 0);
	return 0;
}

/*
 * End the hold of @token: 0 if it held until now, -ETIMEDOUT if the gate
 * opened by itself meanwhile, -ENOENT if @token holds nothing and did not.
 * Caller holds st->lock.
 */
int bsync_gate_release(struct bsync_state *st, u64 token)
{
	lockdep_assert_held(&st->lock);
	if (st->gate_held && st->gate_token == token) {
		st->gate_held = false;
		st->gate_token = 0;
		/* A running expiry finds no hold, or a later one's deadline. */
		cancel_delayed_work(&st->gate_expire);
		gate_open(st);
		return 0;
	}
	if (st->gate_broken && st->gate_broken == token) {
		st->gate_broken = 0;
		return -ETIMEDOUT;
	}
	return -ENOENT;
}

/* Suspend: writes must not wait at the gate for DM's drain. Caller holds st->lock. */
void bsync_gate_drop(struct bsync_state *st)
{
	lockdep_assert_held(&st->lock);
	if (st->gate_held) {
		gate_break(st, "on suspend");
		cancel_delayed_work(&st->gate_expire);
	}
}

int bsync_gate_module_init(void)
{
	gate_wq = alloc_workqueue("dm-bsync-gate", WQ_MEM_RECLAIM, 0);
	return gate_wq ? 0 : -ENOMEM;
}

/* Every device is gone, and with it every pending expiry. */
void bsync_gate_module_exit(void)
{
	destroy_workqueue(gate_wq);
}
