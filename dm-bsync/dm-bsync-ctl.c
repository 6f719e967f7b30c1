// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: the dispatch of dmsetup messages.
 * A message's verb is looked up in the tables of the files that own the
 * verbs (dm-bsync-ctl.h lists them), its argument count checked, and its
 * handler run under the device's control mutex.
 */
#include <linux/kernel.h>
#include <linux/mutex.h>
#include <linux/string.h>

#include "dm-bsync-ctl.h"

static const struct bsync_msg_table *const tables[] = {
	&bsync_bitmap_msgs, &bsync_query_msgs, &bsync_session_msgs, &bsync_gate_msgs,
};

static const struct bsync_msg *find_msg(const char *verb)
{
	unsigned int t, i;

	for (t = 0; t < ARRAY_SIZE(tables); t++)
		for (i = 0; i < tables[t]->nr; i++)
			if (!strcasecmp(verb, tables[t]->msgs[i].verb))
				return &tables[t]->msgs[i];
	return NULL;
}

int bsync_message(struct dm_target *ti, unsigned int argc, char **argv,
		  char *result, unsigned int maxlen)
{
	struct bsync_target *bt = ti->private;
	const struct bsync_msg *m = argc ? find_msg(argv[0]) : NULL;
	int r;

	if (!m) {
		msg_err(bt, "unknown message \"%s\"", argc ? argv[0] : "");
		return -EINVAL;
	}
	if (argc - 1 < m->min_args || argc - 1 > m->max_args) {
		msg_err(bt, "%s: wrong number of arguments (%u)", m->verb, argc - 1);
		return -EINVAL;
	}
	mutex_lock(&bt->st->lock);
	/* The table's spelling: verbs match in any case, handlers compare exactly. */
	r = m->fn(bt, m->verb, argc - 1, argv + 1, result, maxlen);
	bsync_persist_retry(bt->st);
	mutex_unlock(&bt->st->lock);
	return r;
}
