// SPDX-License-Identifier: GPL-2.0
/*
 * Copy buffers of the bsync target's copy-before-write: the memory a copy
 * needs, one cluster's pages and the bios to move them, its budgets and
 * the per-session cache that keeps buffers between copies. The engine
 * (dm-bsync-cbw.c) takes and returns them; this file calls nothing of it.
 */
#include <linux/bio.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>

#include "dm-bsync.h"
#include "dm-bsync-cbw-buf.h"

/*
 * Copy buffers are the memory copy-before-write needs, one cluster each.
 * They are bounded per session (at least one cluster) and module-wide, so
 * a write covering gigabytes is preserved in bounded steps: it waits for
 * copies in flight to land instead of allocating one per cluster.
 */
static unsigned int cbw_device_mb = 16;
module_param(cbw_device_mb, uint, 0644);
MODULE_PARM_DESC(cbw_device_mb, "copy-before-write buffers per session, MiB (at least one cluster)");

static unsigned int cbw_total_mb = 128;
module_param(cbw_total_mb, uint, 0644);
MODULE_PARM_DESC(cbw_total_mb, "copy-before-write buffers of all sessions, MiB (each has one cluster regardless)");

static atomic_long_t bsync_copy_mem = ATOMIC_LONG_INIT(0);

static void copy_free(struct bsync_copy *c)
{
	unsigned int i;

	for (i = 0; c->bios && i < c->nr_bios; i++) {
		if (c->bios[i]) {
			bio_uninit(c->bios[i]);
			kfree(c->bios[i]);
		}
	}
	for (i = 0; c->pages && i < c->nr_pages; i++)
		if (c->pages[i])
			__free_page(c->pages[i]);
	kfree(c->bios);
	kfree(c->pages);
	kfree(c);
}

/* Caller holds the map lock. False if the budgets have no room for a copy. */
static bool copy_charge(struct bsync_session *s)
{
	unsigned long cb = bsync_copy_bytes(s);

	if (s->copy_mem + cb > s->copy_budget)
		return false;
	if (atomic_long_add_return(cb, &bsync_copy_mem) > (long)cbw_total_mb << 20) {
		atomic_long_sub(cb, &bsync_copy_mem);
		return false;
	}
	s->copy_mem += cb;
	s->copy_mem_peak = max(s->copy_mem_peak, s->copy_mem);
	return true;
}

static void copy_uncharge(struct bsync_session *s)
{
	unsigned long flags;

	xa_lock_irqsave(&s->map, flags);
	s->copy_mem -= bsync_copy_bytes(s);
	xa_unlock_irqrestore(&s->map, flags);
	atomic_long_sub(bsync_copy_bytes(s), &bsync_copy_mem);
}

/* Pages for a whole cluster and the bios to move them. */
static struct bsync_copy *copy_alloc(struct bsync_session *s, gfp_t gfp)
{
	unsigned int nr_pages = bsync_copy_bytes(s) >> PAGE_SHIFT, i;
	struct bsync_copy *c;

	c = kzalloc(sizeof(*c), gfp);
	if (!c)
		return NULL;
	c->nr_pages = nr_pages;
	c->nr_bios = DIV_ROUND_UP(nr_pages, BIO_MAX_VECS);
	c->pages = kcalloc(nr_pages, sizeof(*c->pages), gfp);
	c->bios = kcalloc(c->nr_bios, sizeof(*c->bios), gfp);
	if (!c->pages || !c->bios)
		goto bad;
	for (i = 0; i < nr_pages; i++) {
		c->pages[i] = alloc_page(gfp);
		if (!c->pages[i])
			goto bad;
	}
	for (i = 0; i < c->nr_bios; i++) {
		c->bios[i] = bio_kmalloc(bsync_copy_bio_pages(nr_pages, i), gfp);
		if (!c->bios[i])
			goto bad;
		bio_init(c->bios[i], NULL, c->bios[i]->bi_inline_vecs,
			 bsync_copy_bio_pages(nr_pages, i), 0);
	}
	return c;
bad:
	copy_free(c);
	return NULL;
}

static struct bsync_copy *copy_reset(struct bsync_copy *c)
{
	c->read_err = false;
	c->write_err = false;
	c->timed_out = false;
	c->reader_done = false;
	bio_list_init(&c->waiters);
	INIT_LIST_HEAD(&c->start);
	return c;
}

/* An idle copy buffer, or NULL. Caller holds the map lock. */
struct bsync_copy *bsync_copy_take_cached(struct bsync_session *s)
{
	struct bsync_copy *c;

	if (list_empty(&s->copy_cache))
		return NULL;
	c = list_first_entry(&s->copy_cache, struct bsync_copy, list);
	list_del(&c->list);
	s->copy_cache_len--;
	return copy_reset(c);
}

/*
 * A new copy buffer within the budgets. NULL if they are spent or memory
 * is short: the caller waits for a copy in flight to land. The session's
 * first buffer, allocated with it, is never freed before it, so a session
 * can always make progress.
 */
struct bsync_copy *bsync_copy_new(struct bsync_session *s)
{
	struct bsync_copy *c;
	bool charged;

	xa_lock_irq(&s->map);
	charged = copy_charge(s);
	xa_unlock_irq(&s->map);
	if (!charged)
		return NULL;
	/* Do not dig into reserves: a copy in flight frees a buffer soon. */
	c = copy_alloc(s, GFP_NOIO | __GFP_NORETRY | __GFP_NOWARN);
	if (!c) {
		copy_uncharge(s);
		return NULL;
	}
	return copy_reset(c);
}

/*
 * Back to the cache, kept until the session ends: the budget bounds them,
 * and a cached buffer is taken without dropping the map lock. Any context.
 */
void bsync_copy_put(struct bsync_session *s, struct bsync_copy *c)
{
	unsigned long flags;

	xa_lock_irqsave(&s->map, flags);
	list_add(&c->list, &s->copy_cache);
	s->copy_cache_len++;
	xa_unlock_irqrestore(&s->map, flags);
}

void bsync_copy_cache_drain(struct bsync_session *s)
{
	struct bsync_copy *c, *tmp;

	list_for_each_entry_safe(c, tmp, &s->copy_cache, list) {
		copy_free(c);
		atomic_long_sub(bsync_copy_bytes(s), &bsync_copy_mem);
	}
	INIT_LIST_HEAD(&s->copy_cache);
	s->copy_cache_len = 0;
}

/*
 * The session's first buffer, and its budget. The buffer is outside the
 * module-wide cap, so that every session moves on.
 */
int bsync_copy_cache_init(struct bsync_session *s)
{
	struct bsync_copy *c;

	s->copy_budget = max_t(unsigned long, (unsigned long)READ_ONCE(cbw_device_mb) << 20,
			       bsync_copy_bytes(s));
	c = copy_alloc(s, GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	s->copy_mem = bsync_copy_bytes(s);
	s->copy_mem_peak = s->copy_mem;
	atomic_long_add(s->copy_mem, &bsync_copy_mem);
	list_add(&c->list, &s->copy_cache);
	s->copy_cache_len = 1;
	return 0;
}
