// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's fan-out (daemon/fanout.c): every item gets exactly one call;
 * the calls of a fan-out run at once (each waits until all have started,
 * which sequential calls never reach), one item runs in the caller.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "../daemon/fanout.c"
#include "tap.h"

struct item {
	atomic_int *started;	/* calls begun, shared */
	int n;			/* how many there are */
	int calls;
	bool met;		/* saw all n begun */
	pthread_t by;
};

static void count_call(void *p)
{
	struct item *it = p;

	it->calls++;
	it->by = pthread_self();
}

/* Wait up to 5 s for all n calls to have begun. */
static void rendezvous(void *p)
{
	struct item *it = p;
	struct timespec ms = { 0, 1000000 };
	int i;

	it->calls++;
	atomic_fetch_add(it->started, 1);
	for (i = 0; i < 5000 && atomic_load(it->started) < it->n; i++)
		nanosleep(&ms, NULL);
	it->met = atomic_load(it->started) == it->n;
}

static void check(int n, void (*fn)(void *), const char *what)
{
	struct item items[16] = { 0 };
	atomic_int started = 0;
	bool once = true, met = true;
	int i;

	for (i = 0; i < n; i++) {
		items[i].started = &started;
		items[i].n = n;
	}
	fanout(items, (size_t)n, sizeof(items[0]), fn);
	for (i = 0; i < 16; i++) {
		once &= items[i].calls == (i < n);
		met &= i >= n || items[i].met;
	}
	tap_ok(once, "%s, %d items: each item called once, no other", what, n);
	if (fn == rendezvous)
		tap_ok(met, "%d items: all calls were running at once", n);
}

int main(void)
{
	struct item one = { 0 };

	check(0, count_call, "count");
	check(1, count_call, "count");
	check(16, count_call, "count");
	check(2, rendezvous, "rendezvous");
	check(16, rendezvous, "rendezvous");
	fanout(&one, 1, sizeof(one), count_call);
	tap_ok(one.calls == 1 && pthread_equal(one.by, pthread_self()),
	       "one item: called in the caller's thread");
	return tap_done();
}
