// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: the repair command.
 *
 * Repair writes nothing over what it read: it makes a fresh commit of what
 * was loaded (the log replayed into the bits, every bitmap that may miss
 * writes marked inconsistent) into the other area and the other
 * superblock slot, with the next generation, the way the kernel
 * commits.  A crash during repair therefore leaves the old commit current,
 * and the kernel loads the result with its own rules.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsync-metadata-internal.h"

/* A fresh commit of what was loaded, into the other area and slot. */
static int write_commit(struct md *m, FILE *out, FILE *err)
{
	unsigned char sbuf[BS];
	struct bsync_md_superblock *sb = (void *)sbuf;
	unsigned int i, n = 0, marked = 0;
	uint32_t area = !m->area;
	int slot = !m->cur, r;
	/* Past any generation the log has seen, so no stale block replays. */
	uint64_t gen = (m->newer_gen > m->gen ? m->newer_gen : m->gen) + 1;

	memcpy(sbuf, m->slot[m->cur].raw, BS);
	memset(sb->bitmaps, 0, sizeof(sb->bitmaps));
	sb->generation = htole64(gen);
	sb->flags = htole32(BSYNC_MD_CLEAN);
	sb->area = htole32(area);
	for (i = 0; i < m->nr_bitmaps; i++) {
		const struct bm *b = &m->bm[i];
		struct bsync_md_bitmap *e = &sb->bitmaps[n];
		unsigned char *buf;
		uint64_t k;

		buf = calloc(b->blocks, BS);
		if (!buf)
			return -ENOMEM;
		for (k = 0; b->bits && k < b->nwords; k++) {
			uint64_t w = htole64(b->bits[k]);

			memcpy(buf + k * 8, &w, 8);
		}
		memcpy(e->name, b->name, sizeof(e->name));
		e->nr_bits = htole64(b->nr_bits);
		e->offset = htole64(b->offset);
		e->csum = htole32(bmd_crc32c(buf, b->nwords * 8));
		e->shift = (__u8)b->shift;
		e->flags = (__u8)b->flags;
		if (b->lost && !(b->flags & BSYNC_MD_BM_INCONSISTENT)) {
			e->flags |= BSYNC_MD_BM_INCONSISTENT;
			fprintf(out, "bitmap '%s' marked inconsistent: %s\n", b->name, b->lost);
			marked++;
		}
		r = bmd_write_blocks(m, m->lay.area_start[area] + b->offset, b->blocks, buf);
		free(buf);
		if (r) {
			fprintf(err, "bsync-metadata: %s: cannot write the bits of bitmap '%s': %s\n",
				m->path, b->name, strerror(-r));
			return r;
		}
		n++;
	}
	sb->nr_bitmaps = htole32(n);
	sb->csum = htole32(bmd_crc32c(sbuf + 4, BS - 4));
	if (fdatasync(m->fd)) {
		r = -errno;
		fprintf(err, "bsync-metadata: %s: cannot flush the bitmaps: %s\n", m->path, strerror(-r));
		return r;
	}
	r = bmd_write_blocks(m, (uint64_t)slot, 1, sbuf);
	if (!r && fdatasync(m->fd))
		r = -errno;
	if (r) {
		fprintf(err, "bsync-metadata: %s: cannot write superblock %d: %s\n", m->path, slot, strerror(-r));
		return r;
	}
	fprintf(out, "repaired: generation %" PRIu64 " written to superblock %d and area %" PRIu32
		", %u bitmaps (%u marked inconsistent), %" PRIu64 " log records replayed\n",
		gen, slot, area, n, marked, m->log_records);
	return 0;
}

int bmd_repair(struct md *m, FILE *out, FILE *err)
{
	size_t k;

	for (k = 0; k < m->nprob; k++)
		fprintf(out, "found: %s\n", m->prob[k]);
	if (m->cur < 0 && !bmd_nproblems(m)) {
		fprintf(err, "bsync-metadata: %s: unformatted: nothing to repair\n", m->path);
		return BMD_EXIT_OK;
	}
	if (m->cur < 0) {
		fprintf(err, "bsync-metadata: %s: no valid superblock: cannot repair (a device that shrank must get its size back; otherwise, zeroing its first 8 KiB lets the kernel format it anew, losing every bitmap)\n",
			m->path);
		return BMD_EXIT_PROBLEMS;
	}
	if (m->gen == UINT64_MAX || m->newer_gen == UINT64_MAX) {
		fprintf(err, "bsync-metadata: %s: the generation is at its maximum: cannot repair\n", m->path);
		return BMD_EXIT_PROBLEMS;
	}
	return write_commit(m, out, err) ? BMD_EXIT_USAGE : BMD_EXIT_OK;
}
