// SPDX-License-Identifier: GPL-2.0
/*
 * Fan-out: see fanout.h.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "fanout.h"

struct call {
	void (*fn)(void *item);
	void *item;
	pthread_t thread;
	bool threaded;
};

static void *call_thread(void *arg)
{
	struct call *c = arg;

	c->fn(c->item);
	return NULL;
}

void fanout(void *items, size_t n, size_t size, void (*fn)(void *item))
{
	/* calls[0] is the caller's own: no thread for one item */
	struct call *calls = n > 1 ? calloc(n, sizeof(*calls)) : NULL;
	size_t i;

	for (i = 1; calls && i < n; i++) {
		calls[i].fn = fn;
		calls[i].item = (char *)items + i * size;
		calls[i].threaded = !pthread_create(&calls[i].thread, NULL, call_thread, &calls[i]);
	}
	if (n)
		fn(items);
	for (i = 1; i < n; i++) {
		if (calls && calls[i].threaded)
			pthread_join(calls[i].thread, NULL);
		else
			fn((char *)items + i * size);
	}
	free(calls);
}
