// SPDX-License-Identifier: GPL-2.0
/*
 * The copy set: the kernel's extents for a sync mode as runs.  See copyset.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copyset.h"
#include "node.h"

/*
 * Extents from the kernel ("off:len ... next|end" replies), appended as runs
 * rounded out to the cluster size and merged.
 */
static int add_run(struct copyset *cs, uint64_t off, uint64_t len, bool rd)
{
	uint64_t end = off + len;
	struct run *last;

	off -= off % cs->cluster;
	end = (end + cs->cluster - 1) / cs->cluster * cs->cluster;
	if (end > cs->size)
		end = cs->size;
	if (off >= end)
		return 0;
	last = cs->n ? &cs->run[cs->n - 1] : NULL;
	if (last && last->read == rd && off <= last->off + last->len) {
		if (end > last->off + last->len)
			last->len = end - last->off;
		return 0;
	}
	if (last && off < last->off + last->len)	/* overlap with a run of the other kind */
		off = last->off + last->len;
	if (off >= end)
		return 0;
	if (cs->n == cs->cap) {
		size_t ncap = cs->cap ? cs->cap * 2 : 64;
		struct run *p = realloc(cs->run, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		cs->run = p;
		cs->cap = ncap;
	}
	cs->run[cs->n++] = (struct run){ off, end - off, rd };
	return 0;
}

/*
 * Walk "extents <bitmap>", or what (bitmap NULL): "alloc_extents" or
 * "session_extents"; cb per extent.
 */
static int walk_extents(struct copyset *cs, const char *node, const char *bitmap, const char *what,
			int (*cb)(struct copyset *, uint64_t, uint64_t, void *),
			void *arg, char *err, size_t errlen)
{
	uint64_t from = 0;

	for (;;) {
		char msg[BITMAP_NAME_MAX + 64], *reply, *save = NULL, *tok;
		bool end = false, next = false;
		int r;

		if (bitmap)
			snprintf(msg, sizeof(msg), "extents %s %" PRIu64, bitmap, from);
		else
			snprintf(msg, sizeof(msg), "%s %" PRIu64, what, from);
		r = node_message(node, msg, &reply, err, errlen);
		if (r)
			return r;
		for (tok = strtok_r(reply, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			uint64_t off, len;

			if (sscanf(tok, "%" SCNu64 ":%" SCNu64, &off, &len) == 2) {
				r = cb(cs, off, len, arg);
				if (r) {
					free(reply);
					return r;
				}
			} else if (!strcmp(tok, "end")) {
				end = true;
			} else {
				from = strtoull(tok, NULL, 10);
				next = true;
			}
		}
		free(reply);
		if (end || !next)
			return 0;
	}
}

static int cb_read_run(struct copyset *cs, uint64_t off, uint64_t len, void *arg)
{
	(void)arg;
	return add_run(cs, off, len, true);
}

/* For full: fill the gap before each allocated extent with a zero run. */
static int cb_full(struct copyset *cs, uint64_t off, uint64_t len, void *arg)
{
	uint64_t *pos = arg;
	int r = 0;

	if (off > *pos)
		r = add_run(cs, *pos, off - *pos, false);
	if (!r)
		r = add_run(cs, off, len, true);
	*pos = off + len;
	return r;
}

int copyset_compute(struct copyset *cs, const char *node, enum sync_mode sync,
		    const char *bitmap, char *err, size_t errlen)
{
	uint64_t pos = 0;
	int r = 0;

	switch (sync) {
	case SYNC_FULL:
		/* after the instant: a superset of what was allocated at it */
		r = walk_extents(cs, node, NULL, "alloc_extents", cb_full, &pos, err, errlen);
		if (!r && pos < cs->size)
			r = add_run(cs, pos, cs->size - pos, false);
		break;
	case SYNC_TOP:
		/* exactly the allocation map at the instant */
		r = walk_extents(cs, node, NULL, "session_extents", cb_read_run, NULL, err, errlen);
		break;
	case SYNC_BITMAP:
		r = walk_extents(cs, node, bitmap, NULL, cb_read_run, NULL, err, errlen);
		break;
	case SYNC_NONE:
		break;
	}
	return r;
}

uint64_t copyset_bytes(const struct copyset *cs)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < cs->n; i++)
		n += cs->run[i].len;
	return n;
}

void copyset_free(struct copyset *cs)
{
	free(cs->run);
	cs->run = NULL;
	cs->n = cs->cap = 0;
}
