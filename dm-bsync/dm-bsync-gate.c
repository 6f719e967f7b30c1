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
 * The gate knows no target: the writes it held go back to the bio path
 * through st->gate_reissue, which dm-bsync-target.c sets.
 */
#include <linux/bio.h>
#include <linux/percpu-refcount.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include "dm-bsync.h"

static void writes_released(struct percpu_ref *ref)
{
	struct bsync_state *st = container_of(ref, struct bsync_state, writes);

	wake_up_all(&st->drain_wait);
}

int bsync_gate_init(struct bsync_state *st)
{
	spin_lock_init(&st->gate_lock);
	bio_list_init(&st->deferred);
	init_waitqueue_head(&st->drain_wait);
	/* Closing the gate kills it, opening resurrects it: keep the per-CPU part. */
	return percpu_ref_init(&st->writes, writes_released, PERCPU_REF_ALLOW_REINIT, GFP_KERNEL);
}

void bsync_gate_free(struct bsync_state *st)
{
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

/* Close the gate and wait for in-flight writes. Caller holds st->lock. */
int bsync_quiesce_writes(struct bsync_state *st)
{
	int r;

	lockdep_assert_held(&st->lock);
	/* Closed before the kill: a writer the kill turns away finds it closed. */
	spin_lock_irq(&st->gate_lock);
	st->gate_closed = true;
	spin_unlock_irq(&st->gate_lock);
	percpu_ref_kill(&st->writes);
	r = wait_event_killable(st->drain_wait, percpu_ref_is_zero(&st->writes));
	if (r)
		bsync_resume_writes(st);
	return r;
}

/* Open the gate and issue the writes it held. Caller holds st->lock. */
void bsync_resume_writes(struct bsync_state *st)
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
