// SPDX-License-Identifier: GPL-2.0
/*
 * Control interface of the bsync target: what it answers without changing
 * anything. The query messages (list, the extents of a bitmap, of what may
 * hold data and of a session, the session's and the metadata's state) and
 * the status lines of dmsetup status and table.
 */
#include <linux/kernel.h>
#include <linux/string.h>

#include "dm-bsync-ctl.h"

#define EXTENTS_DEFAULT	1024
#define EXTENTS_MAX	65536
/* Room one more "offset:length" reply token may need. */
#define EXTENT_TOKEN_MAX 48

static u64 dirty_bytes(const struct bsync_bitmap *bm)
{
	return (u64)bsync_bitmap_weight(bm) * bsync_bitmap_granularity(bm);
}

/*
 * list: one line per bitmap, a frozen bitmap's successor on the next line:
 *   bitmap name=<n> granularity=<bytes> count=<bytes> recording=<0|1> busy=<0|1>
 *          persistent=<0|1> inconsistent=<0|1>
 *   successor parent=<n> granularity=<bytes> count=<bytes> recording=<0|1>
 */
static int msg_list(struct bsync_target *bt, const char *verb, unsigned int argc,
		    char **argv, char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm, *succ;
	unsigned int sz = 0;

	list_for_each_entry(bm, &bt->st->bitmaps, list) {
		succ = bm->successor;
		DMEMIT("bitmap name=%s granularity=%llu count=%llu recording=%d busy=%d",
		       bm->name, bsync_bitmap_granularity(bm), dirty_bytes(bm),
		       succ ? succ->recording : bm->recording, !!succ);
		DMEMIT(" persistent=%d inconsistent=%d\n", bm->persistent,
		       READ_ONCE(bm->inconsistent));
		if (succ)
			DMEMIT("successor parent=%s granularity=%llu count=%llu recording=%d\n",
			       bm->name, bsync_bitmap_granularity(succ), dirty_bytes(succ),
			       succ->recording);
	}
	return 1;
}

/*
 * Reply "<offset>:<length> ... <next>" in bytes: the dirty runs from
 * <offset> on, at most @max of them and as many as fit, then where to
 * continue, or "end".
 */
typedef bool (*next_extent_fn)(void *set, sector_t from, sector_t *start, sector_t *len);

static bool next_dirty(void *bm, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_bitmap_next_extent(bm, from, start, len);
}

static int emit_extents(struct bsync_target *bt, next_extent_fn next, void *set,
			unsigned int argc, char **argv, char *result, unsigned int maxlen)
{
	unsigned int sz = 0, max = EXTENTS_DEFAULT, n = 0;
	sector_t from, start, len;
	u64 off;

	if (kstrtoull(argv[0], 10, &off) || off & (SECTOR_SIZE - 1)) {
		msg_err(bt, "extents: offset %s is not in 512-byte units", argv[0]);
		return -EINVAL;
	}
	if (argc > 1 && (kstrtouint(argv[1], 10, &max) || !max || max > EXTENTS_MAX)) {
		msg_err(bt, "extents: count %s is not 1..%d", argv[1], EXTENTS_MAX);
		return -EINVAL;
	}
	from = off >> SECTOR_SHIFT;
	while (n < max && maxlen - sz > 2 * EXTENT_TOKEN_MAX &&
	       next(set, from, &start, &len)) {
		DMEMIT("%llu:%llu ", (u64)start << SECTOR_SHIFT, (u64)len << SECTOR_SHIFT);
		from = start + len;
		n++;
	}
	if (next(set, from, &start, &len))
		DMEMIT("%llu", (u64)from << SECTOR_SHIFT);
	else
		DMEMIT("end");
	return 1;
}

/* extents <name> <offset> [<max>] */
static int msg_extents(struct bsync_target *bt, const char *verb, unsigned int argc,
		       char **argv, char *result, unsigned int maxlen)
{
	struct bsync_bitmap *bm;
	int r;

	r = bsync_msg_get_bitmap(bt, "extents", argv[0], false, &bm);
	if (r)
		return r;
	return emit_extents(bt, next_dirty, bm, argc - 1, argv + 1, result, maxlen);
}

/* alloc_extents <offset> [<max>]: runs that may hold data */
static int msg_alloc_extents(struct bsync_target *bt, const char *verb, unsigned int argc,
			     char **argv, char *result, unsigned int maxlen)
{
	return emit_extents(bt, next_dirty, bt->st->alloc, argc, argv, result, maxlen);
}

static bool next_wanted(void *s, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_session_next_wanted(s, from, start, len);
}

static bool next_preserved(void *s, sector_t from, sector_t *start, sector_t *len)
{
	return bsync_session_next_preserved(s, from, start, len);
}

/* The session's extents by @next, for the verb @name. */
static int emit_session_extents(struct bsync_target *bt, const char *name, next_extent_fn next,
				unsigned int argc, char **argv, char *result, unsigned int maxlen)
{
	int r = bsync_msg_get_session(bt, name);

	if (r)
		return r;
	return emit_extents(bt, next, bt->st->session, argc, argv, result, maxlen);
}

/* session_extents <offset> [<max>]: what the backup has still to copy */
static int msg_session_extents(struct bsync_target *bt, const char *verb, unsigned int argc,
			       char **argv, char *result, unsigned int maxlen)
{
	return emit_session_extents(bt, "session_extents", next_wanted, argc, argv, result,
				    maxlen);
}

/* preserved_extents <offset> [<max>]: what a sync=none backup must copy */
static int msg_preserved_extents(struct bsync_target *bt, const char *verb, unsigned int argc,
				 char **argv, char *result, unsigned int maxlen)
{
	return emit_session_extents(bt, "preserved_extents", next_preserved, argc, argv, result,
				    maxlen);
}

static int msg_session_status(struct bsync_target *bt, const char *verb, unsigned int argc,
			      char **argv, char *result, unsigned int maxlen)
{
	unsigned int sz = 0;

	if (!bt->st->session) {
		DMEMIT("state=none");
		return 1;
	}
	bsync_session_emit_status(bt->st->session, result, maxlen);
	return 1;
}

/* metadata_status: the metadata device's state and counters */
static int msg_metadata_status(struct bsync_target *bt, const char *verb, unsigned int argc,
			       char **argv, char *result, unsigned int maxlen)
{
	bsync_persist_emit_status(bt->st, result, maxlen);
	return 1;
}

static const struct bsync_msg msgs[] = {
	{ "list",		0, 0,		msg_list },
	{ "extents",		2, 3,		msg_extents },
	{ "alloc_extents",	1, 2,		msg_alloc_extents },
	{ "session_status",	0, 0,		msg_session_status },
	{ "session_extents",	1, 2,		msg_session_extents },
	{ "preserved_extents",	1, 2,		msg_preserved_extents },
	{ "metadata_status",	0, 0,		msg_metadata_status },
};

const struct bsync_msg_table bsync_query_msgs = { msgs, ARRAY_SIZE(msgs) };

/*
 * Status
 */

static void sum_stats(struct bsync_state *st, struct bsync_stats *sum)
{
	int cpu;

	memset(sum, 0, sizeof(*sum));
	for_each_possible_cpu(cpu) {
		struct bsync_stats *cpu_stats = per_cpu_ptr(st->stats, cpu);

		sum->writes += cpu_stats->writes;
		sum->deferred += cpu_stats->deferred;
	}
}

/*
 * INFO:  <#bitmaps> <alloc granularity> <allocated clusters>/<clusters>
 *        <writes> <held writes> <metadata: - | ok | failed>
 *        <session: - | state=... (as session_status)>
 * TABLE: <origin> [<#features> [zeroed] [alloc_granularity <bytes>] [metadata <dev>]]
 */
void bsync_status(struct dm_target *ti, status_type_t type, unsigned int status_flags,
		  char *result, unsigned int maxlen)
{
	struct bsync_target *bt = ti->private;
	struct bsync_state *st = bt->st;
	bool gran = bt->alloc_shift != BSYNC_DEFAULT_GRAN_SHIFT;
	struct bsync_stats stats;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		sum_stats(st, &stats);
		mutex_lock(&st->lock);
		DMEMIT("%u %llu %lu/%lu %llu %llu %s", st->nr_bitmaps,
		       bsync_bitmap_granularity(st->alloc), bsync_bitmap_weight(st->alloc),
		       st->alloc->nr_bits, stats.writes, stats.deferred, bsync_persist_state(st));
		if (st->session) {
			DMEMIT(" ");
			sz += bsync_session_emit_status(st->session, result + sz, maxlen - sz);
		} else {
			DMEMIT(" -");
		}
		mutex_unlock(&st->lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", bt->origin->name);
		if (bt->zeroed || gran || bt->meta)
			DMEMIT(" %u", bt->zeroed + 2 * gran + 2 * !!bt->meta);
		if (bt->zeroed)
			DMEMIT(" zeroed");
		if (gran)
			DMEMIT(" alloc_granularity %llu", (u64)SECTOR_SIZE << bt->alloc_shift);
		if (bt->meta)
			DMEMIT(" metadata %s", bt->meta->name);
		break;
	case STATUSTYPE_IMA:
		DMEMIT("target_name=%s,target_version=%u.%u.%u,origin=%s,zeroed=%c,metadata=%s;",
		       ti->type->name, ti->type->version[0], ti->type->version[1],
		       ti->type->version[2], bt->origin->name, bt->zeroed ? 'y' : 'n',
		       bt->meta ? bt->meta->name : "-");
		break;
	}
}
