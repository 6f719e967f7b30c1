// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: the dump command.
 *
 * Shows a loaded device as the kernel would use it: the superblocks, each
 * bitmap after log replay (its dirty extents in bytes, as a backup would
 * copy them) and the problems, as text for a person or as JSON for a
 * script; nothing here reads the device or judges it.
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

#include "bsync-metadata-internal.h"

static const char *slot_desc(const struct md *m, int i, char *buf, size_t len)
{
	const struct slot *s = &m->slot[i];

	if (s->state == SLOT_EMPTY)
		snprintf(buf, len, "empty");
	else if (s->state == SLOT_BAD)
		snprintf(buf, len, "damaged: %s", s->why);
	else
		snprintf(buf, len, "generation %" PRIu64 "%s", s->gen, i == m->cur ? ", current" : "");
	return buf;
}

static bool bm_inconsistent(const struct bm *b)
{
	return b->lost || (b->flags & BSYNC_MD_BM_INCONSISTENT);
}

/* The first bit at or after from that is set (or clear), or nr. */
static uint64_t next_bit(const uint64_t *bits, uint64_t nr, uint64_t from, bool set)
{
	while (from < nr) {
		uint64_t w = set ? bits[from / 64] : ~bits[from / 64];

		w >>= from % 64;
		if (w) {
			from += (uint64_t)__builtin_ctzll(w);
			return from < nr ? from : nr;
		}
		from = (from / 64 + 1) * 64;
	}
	return nr;
}

/* Call fn for each dirty run of b, in bytes, clipped to the device. */
static void for_each_extent(const struct md *m, const struct bm *b,
			    void (*fn)(void *arg, uint64_t off, uint64_t len), void *arg)
{
	uint64_t c = 0, end, dev = m->dev_sectors * 512;

	for (;;) {
		uint64_t off, stop;

		c = next_bit(b->bits, b->nr_bits, c, true);
		if (c == b->nr_bits)
			return;
		end = next_bit(b->bits, b->nr_bits, c, false);
		off = (c << b->shift) * 512;
		stop = (end << b->shift) * 512;
		fn(arg, off, (stop > dev ? dev : stop) - off);
		c = end;
	}
}

static void print_extent(void *arg, uint64_t off, uint64_t len)
{
	fprintf(arg, " %" PRIu64 ":%" PRIu64, off, len);
}

static void json_extent(void *arg, uint64_t off, uint64_t len)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "offset", json_object_new_int64((int64_t)off));
	json_object_object_add(e, "length", json_object_new_int64((int64_t)len));
	json_object_array_add(arg, e);
}

static void dump_text(const struct md *m, FILE *out)
{
	char s0[450], s1[450];
	unsigned int i;
	size_t k;

	fprintf(out, "device: %s, %" PRIu64 " bytes (%" PRIu64 " blocks)\n", m->path, m->dev_bytes,
		m->dev_blocks);
	fprintf(out, "superblock 0: %s\nsuperblock 1: %s\n", slot_desc(m, 0, s0, sizeof(s0)),
		slot_desc(m, 1, s1, sizeof(s1)));
	if (m->cur < 0) {
		fprintf(out, "%s\n", m->slot[0].state == SLOT_EMPTY && m->slot[1].state == SLOT_EMPTY ?
			"unformatted" : "no valid superblock");
	} else {
		fprintf(out, "generation: %" PRIu64 "\nversion: %d\nclean: %s\n", m->gen, BSYNC_MD_VERSION,
			m->flags & BSYNC_MD_CLEAN ? "yes" : "no");
		fprintf(out, "device size: %" PRIu64 " bytes\n", m->dev_sectors * 512);
		fprintf(out, "formatted blocks: %" PRIu64 "\nlog: blocks %" PRIu64 "-%" PRIu64 "\n",
			m->nr_blocks, m->lay.log_start, m->lay.log_start + m->lay.log_blocks - 1);
		fprintf(out, "areas: blocks %" PRIu64 " and %" PRIu64 ", %" PRIu64 " blocks each; current %" PRIu32 "\n",
			m->lay.area_start[0], m->lay.area_start[1], m->lay.area_blocks, m->area);
		fprintf(out, "bitmaps: %" PRIu32 "\n", m->nr_bitmaps);
		for (i = 0; i < m->nr_bitmaps; i++) {
			const struct bm *b = &m->bm[i];

			fprintf(out, "  bitmap %s: granularity %llu, count %" PRIu64 ", recording %s, inconsistent %s",
				b->name, 512ULL << b->shift, b->dirty << b->shift << 9,
				b->flags & BSYNC_MD_BM_RECORDING ? "yes" : "no",
				bm_inconsistent(b) ? "yes" : "no");
			if (b->lost)
				fprintf(out, " (%s)", b->lost);
			fprintf(out, "\n    extents:");
			if (b->bits)
				for_each_extent(m, b, print_extent, out);
			fprintf(out, "\n");
		}
		fprintf(out, "log: %" PRIu64 " blocks, %" PRIu64 " records replayed; end: %s\n",
			m->log_valid, m->log_records, m->log_end);
	}
	fprintf(out, "problems: %zu\n", bmd_nproblems(m));
	for (k = 0; k < m->nprob; k++)
		fprintf(out, "  %s\n", m->prob[k]);
	if (m->nprob_more)
		fprintf(out, "  (%zu more)\n", m->nprob_more);
}

static json_object *jslot(const struct md *m, int i)
{
	const struct slot *s = &m->slot[i];
	json_object *o = json_object_new_object();

	json_object_object_add(o, "state", json_object_new_string(
		s->state == SLOT_EMPTY ? "empty" : s->state == SLOT_BAD ? "damaged" : "valid"));
	if (s->state == SLOT_BAD)
		json_object_object_add(o, "reason", json_object_new_string(s->why));
	if (s->state == SLOT_OK)
		json_object_object_add(o, "generation", json_object_new_int64((int64_t)s->gen));
	json_object_object_add(o, "current", json_object_new_boolean(i == m->cur));
	return o;
}

static void dump_json(const struct md *m, FILE *out)
{
	json_object *o = json_object_new_object(), *a;
	unsigned int i;
	size_t k;

	json_object_object_add(o, "device", json_object_new_string(m->path));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)m->dev_bytes));
	json_object_object_add(o, "formatted", json_object_new_boolean(
		m->slot[0].state != SLOT_EMPTY || m->slot[1].state != SLOT_EMPTY));
	a = json_object_new_array();
	json_object_array_add(a, jslot(m, 0));
	json_object_array_add(a, jslot(m, 1));
	json_object_object_add(o, "superblocks", a);
	json_object_object_add(o, "valid", json_object_new_boolean(m->cur >= 0));
	if (m->cur >= 0) {
		json_object *log = json_object_new_object(), *as = json_object_new_array();

		json_object_object_add(o, "generation", json_object_new_int64((int64_t)m->gen));
		json_object_object_add(o, "version", json_object_new_int(BSYNC_MD_VERSION));
		json_object_object_add(o, "clean", json_object_new_boolean(m->flags & BSYNC_MD_CLEAN));
		json_object_object_add(o, "device-size", json_object_new_int64((int64_t)(m->dev_sectors * 512)));
		json_object_object_add(o, "nr-blocks", json_object_new_int64((int64_t)m->nr_blocks));
		json_object_object_add(o, "log-start", json_object_new_int64((int64_t)m->lay.log_start));
		json_object_object_add(o, "log-blocks", json_object_new_int64((int64_t)m->lay.log_blocks));
		json_object_array_add(as, json_object_new_int64((int64_t)m->lay.area_start[0]));
		json_object_array_add(as, json_object_new_int64((int64_t)m->lay.area_start[1]));
		json_object_object_add(o, "area-start", as);
		json_object_object_add(o, "area-blocks", json_object_new_int64((int64_t)m->lay.area_blocks));
		json_object_object_add(o, "area", json_object_new_int((int)m->area));
		a = json_object_new_array();
		for (i = 0; i < m->nr_bitmaps; i++) {
			const struct bm *b = &m->bm[i];
			json_object *e = json_object_new_object(), *ext;

			json_object_object_add(e, "name", json_object_new_string(b->name));
			json_object_object_add(e, "offset", json_object_new_int64((int64_t)b->offset));
			json_object_object_add(e, "granularity", json_object_new_int64(512LL << b->shift));
			json_object_object_add(e, "count", json_object_new_int64((int64_t)(b->dirty << b->shift << 9)));
			json_object_object_add(e, "recording", json_object_new_boolean(b->flags & BSYNC_MD_BM_RECORDING));
			json_object_object_add(e, "inconsistent", json_object_new_boolean(bm_inconsistent(b)));
			if (b->lost)
				json_object_object_add(e, "reason", json_object_new_string(b->lost));
			ext = json_object_new_array();
			if (b->bits)
				for_each_extent(m, b, json_extent, ext);
			json_object_object_add(e, "extents", ext);
			json_object_array_add(a, e);
		}
		json_object_object_add(o, "bitmaps", a);
		json_object_object_add(log, "blocks", json_object_new_int64((int64_t)m->log_valid));
		json_object_object_add(log, "records", json_object_new_int64((int64_t)m->log_records));
		json_object_object_add(log, "end", json_object_new_string(m->log_end));
		json_object_object_add(o, "log", log);
	}
	a = json_object_new_array();
	for (k = 0; k < m->nprob; k++)
		json_object_array_add(a, json_object_new_string(m->prob[k]));
	if (m->nprob_more) {
		char more[64];

		snprintf(more, sizeof(more), "(%zu more)", m->nprob_more);
		json_object_array_add(a, json_object_new_string(more));
	}
	json_object_object_add(o, "problems", a);
	fprintf(out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

int bmd_dump(const struct md *m, bool json, FILE *out)
{
	if (json)
		dump_json(m, out);
	else
		dump_text(m, out);
	return m->cur >= 0 || !bmd_nproblems(m) ? BMD_EXIT_OK : BMD_EXIT_PROBLEMS;
}
