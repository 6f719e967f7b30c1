// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: loading a device as the kernel does, and the check
 * command, which reports what the loading found.
 *
 * Loading follows the kernel's rules, so that the tool sees what the
 * kernel would: the current superblock is the valid slot with the highest
 * generation; each persistent bitmap's bits are read from the area that
 * superblock names and checked against their CRC; the log of that
 * generation is replayed up to its first invalid block.  Every deviation
 * is a problem.  Everything read is distrusted: sizes and offsets are
 * checked against the superblock and the device before anything is
 * allocated or read, so no input makes the tool allocate more than the
 * device holds.  dump and repair start from what this loaded.
 */
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsync-metadata-internal.h"

#define MAX_SHIFT	21		/* 1 GiB clusters */
#define MAX_BITS	(1ULL << 31)	/* the kernel's limit per bitmap */
#define MAX_SECTORS	(1ULL << 54)	/* bytes stay below 2^63 */

_Static_assert(sizeof(struct bsync_md_superblock) <= BSYNC_MD_BLOCK_SIZE, "superblock fits a block");
_Static_assert(sizeof(struct bsync_md_bitmap) == 160, "bitmap entry is 160 bytes");
_Static_assert(sizeof(struct bsync_md_log_header) == 32, "log header is 32 bytes");

struct range {
	uint64_t start, end;	/* sectors, end exclusive */
};

static bool all_zero(const unsigned char *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

/* Clusters of dev_sectors at 512 << shift bytes each. */
static uint64_t clusters(uint64_t sectors, unsigned int shift)
{
	return (sectors >> shift) + !!(sectors & ((1ULL << shift) - 1));
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + !!(a % b);
}

static bool entry_ok(struct bm *all, unsigned int i, const struct bsync_md_bitmap *e,
		     uint64_t dev_sectors, const struct bmd_layout *lay, char *why, size_t len);

/*
 * What makes a superblock with a valid checksum unusable, or NULL.  As the
 * kernel, a bad bitmap entry or a device smaller than the format makes the
 * whole superblock unusable.  The decoded entries go to bms.
 */
static const char *sb_insane(const struct bsync_md_superblock *sb, uint64_t dev_blocks,
			     struct bm *bms, char *why, size_t len)
{
	unsigned int i;
	uint64_t nr_blocks = le64toh(sb->nr_blocks), sectors = le64toh(sb->dev_sectors);
	uint32_t flags = le32toh(sb->flags);
	struct bmd_layout l;

	if (nr_blocks < BSYNC_MD_MIN_BLOCKS) {
		snprintf(why, len, "it says the device has %" PRIu64 " blocks, fewer than the minimum %d",
			 nr_blocks, BSYNC_MD_MIN_BLOCKS);
		return why;
	}
	bmd_layout(nr_blocks, &l);
	if (le64toh(sb->log_start) != l.log_start || le64toh(sb->log_blocks) != l.log_blocks ||
	    le64toh(sb->area_start[0]) != l.area_start[0] ||
	    le64toh(sb->area_start[1]) != l.area_start[1] ||
	    le64toh(sb->area_blocks) != l.area_blocks) {
		snprintf(why, len, "its layout (log %" PRIu64 "+%" PRIu64 ", areas %" PRIu64 " and %" PRIu64
			 " of %" PRIu64 " blocks) is not the one of a %" PRIu64 "-block device",
			 (uint64_t)le64toh(sb->log_start), (uint64_t)le64toh(sb->log_blocks),
			 (uint64_t)le64toh(sb->area_start[0]), (uint64_t)le64toh(sb->area_start[1]),
			 (uint64_t)le64toh(sb->area_blocks), nr_blocks);
		return why;
	}
	if (le32toh(sb->nr_bitmaps) > BSYNC_MD_MAX_BITMAPS) {
		snprintf(why, len, "it lists %" PRIu32 " bitmaps, more than %d",
			 (uint32_t)le32toh(sb->nr_bitmaps), BSYNC_MD_MAX_BITMAPS);
		return why;
	}
	if (le32toh(sb->area) > 1) {
		snprintf(why, len, "it names area %" PRIu32 " (0 or 1)", (uint32_t)le32toh(sb->area));
		return why;
	}
	if (!sectors || sectors > MAX_SECTORS) {
		snprintf(why, len, "its device size of %" PRIu64 " sectors is out of range", sectors);
		return why;
	}
	if (flags & ~BSYNC_MD_CLEAN) {
		snprintf(why, len, "it has unknown flags 0x%" PRIx32, flags);
		return why;
	}
	if (nr_blocks > dev_blocks) {
		snprintf(why, len, "the device has %" PRIu64 " blocks, fewer than the %" PRIu64
			 " it was formatted with", dev_blocks, nr_blocks);
		return why;
	}
	for (i = 0; i < le32toh(sb->nr_bitmaps); i++)
		if (!entry_ok(bms, i, &sb->bitmaps[i], sectors, &l, why, len))
			return why;
	return NULL;
}

static int load_slot(struct md *m, int i)
{
	struct slot *s = &m->slot[i];
	const struct bsync_md_superblock *sb = (const void *)s->raw;
	uint32_t stored, calc;
	int r = bmd_read_blocks(m, (uint64_t)i, 1, s->raw);

	s->state = SLOT_BAD;
	if (r == -ENODATA) {
		snprintf(s->why, sizeof(s->why), "it lies beyond the end of the device");
		return 0;
	}
	if (r)
		return r;
	if (all_zero(s->raw, BS)) {
		s->state = SLOT_EMPTY;
		return 0;
	}
	stored = le32toh(sb->csum);
	calc = bmd_crc32c(s->raw + 4, BS - 4);
	if (stored != calc) {
		snprintf(s->why, sizeof(s->why), "bad checksum (stored %08" PRIx32 ", computed %08" PRIx32 ")",
			 stored, calc);
		return 0;
	}
	if (le64toh(sb->magic) != BSYNC_MD_MAGIC) {
		snprintf(s->why, sizeof(s->why), "bad magic %016" PRIx64, (uint64_t)le64toh(sb->magic));
		return 0;
	}
	if (le32toh(sb->version) != BSYNC_MD_VERSION) {
		snprintf(s->why, sizeof(s->why), "unknown version %" PRIu32 " (this tool knows %d)",
			 (uint32_t)le32toh(sb->version), BSYNC_MD_VERSION);
		m->newer_version = true;
		return 0;
	}
	if (sb_insane(sb, m->dev_blocks, m->bm, s->why, sizeof(s->why)))
		return 0;
	s->gen = le64toh(sb->generation);
	s->state = SLOT_OK;
	return 0;
}

static bool name_ok(const char *name, char *why, size_t len)
{
	const char *p;

	if (!memchr(name, 0, BSYNC_MD_NAME_LEN)) {
		snprintf(why, len, "its name is not NUL-terminated");
		return false;
	}
	if (!name[0]) {
		snprintf(why, len, "its name is empty");
		return false;
	}
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_-.:+@", *p)) {
			snprintf(why, len, "its name has the character 0x%02x", (unsigned char)*p);
			return false;
		}
	return true;
}

/* Decode bitmap entry i into all[i]; false with why if it is unusable. */
static bool entry_ok(struct bm *all, unsigned int i, const struct bsync_md_bitmap *e,
		     uint64_t dev_sectors, const struct bmd_layout *lay, char *why, size_t len)
{
	struct bm *b = &all[i];
	char what[160];
	unsigned int j;

	memset(b, 0, sizeof(*b));
	memcpy(b->name, e->name, sizeof(b->name));
	b->nr_bits = le64toh(e->nr_bits);
	b->offset = le64toh(e->offset);
	b->csum = le32toh(e->csum);
	b->shift = e->shift;
	b->flags = e->flags;
	if (!name_ok(b->name, what, sizeof(what))) {
		snprintf(why, len, "bitmap #%u: %s", i, what);
		return false;
	}
	for (j = 0; j < i; j++)
		if (!strcmp(all[j].name, b->name)) {
			snprintf(why, len, "bitmaps #%u and #%u are both named '%s'", j, i, b->name);
			return false;
		}
	if (b->shift > MAX_SHIFT) {
		snprintf(why, len, "bitmap '%s': its granularity 2^%u bytes is above 1 GiB",
			 b->name, b->shift + 9);
		return false;
	}
	if (b->flags & ~(BSYNC_MD_BM_RECORDING | BSYNC_MD_BM_INCONSISTENT)) {
		snprintf(why, len, "bitmap '%s': unknown flags 0x%x", b->name, b->flags);
		return false;
	}
	if (b->nr_bits != clusters(dev_sectors, b->shift) || b->nr_bits > MAX_BITS) {
		snprintf(why, len, "bitmap '%s': it has %" PRIu64 " bits, but the device has %" PRIu64
			 " clusters of %llu bytes", b->name, b->nr_bits, clusters(dev_sectors, b->shift),
			 512ULL << b->shift);
		return false;
	}
	b->nwords = div_up(b->nr_bits, 64);
	b->blocks = div_up(b->nwords * 8, BS);
	if (b->offset > lay->area_blocks || b->blocks > lay->area_blocks - b->offset) {
		snprintf(why, len, "bitmap '%s': its %" PRIu64 " blocks at offset %" PRIu64
			 " do not fit the %" PRIu64 "-block area", b->name, b->blocks, b->offset,
			 lay->area_blocks);
		return false;
	}
	for (j = 0; j < i; j++)
		if (b->offset < all[j].offset + all[j].blocks && all[j].offset < b->offset + b->blocks) {
			snprintf(why, len, "bitmap '%s': its blocks overlap those of '%s'", b->name,
				 all[j].name);
			return false;
		}
	return true;
}

/* Read bitmap b's bits from the current area and check them. */
static int load_bits(struct md *m, struct bm *b)
{
	uint64_t start = m->lay.area_start[m->area] + b->offset, k, tail;
	unsigned char *buf;
	uint32_t calc;
	int r;

	if (start > m->dev_blocks || b->blocks > m->dev_blocks - start) {
		b->lost = "its bits lie beyond the end of the device";
		bmd_problem(m, "bitmap '%s': its bits (blocks %" PRIu64 "-%" PRIu64 ") lie beyond the end of the device",
			b->name, start, start + b->blocks - 1);
		return 0;
	}
	buf = calloc(b->blocks, BS);
	if (!buf)
		return -ENOMEM;
	r = bmd_read_blocks(m, start, b->blocks, buf);
	if (r) {
		free(buf);
		return r;
	}
	calc = bmd_crc32c(buf, b->nwords * 8);
	if (calc != b->csum) {
		b->lost = "the checksum of its bits is wrong";
		bmd_problem(m, "bitmap '%s': bad checksum of its bits (stored %08" PRIx32 ", computed %08" PRIx32
			"): it may miss writes", b->name, b->csum, calc);
	}
	/* In place: the words are little-endian on the device. */
	b->bits = (uint64_t *)(void *)buf;
	for (k = 0; k < b->nwords; k++) {
		uint64_t w;

		memcpy(&w, buf + k * 8, 8);
		b->bits[k] = le64toh(w);
	}
	tail = b->nr_bits % 64;
	if (tail && (b->bits[b->nwords - 1] >> tail)) {
		if (!b->lost)
			bmd_problem(m, "bitmap '%s': bits past its last cluster are set", b->name);
		b->bits[b->nwords - 1] &= (1ULL << tail) - 1;
	}
	return 0;
}

static int cmp_range(const void *pa, const void *pb)
{
	const struct range *x = pa, *y = pb;

	return x->start < y->start ? -1 : x->start > y->start;
}

static void set_bits(uint64_t *bits, uint64_t first, uint64_t last)
{
	uint64_t w;

	for (; first <= last && first % 64; first++)
		bits[first / 64] |= 1ULL << (first % 64);
	for (w = first / 64; first + 63 <= last; w++, first += 64)
		bits[w] = ~0ULL;
	for (; first <= last; first++)
		bits[first / 64] |= 1ULL << (first % 64);
}

/* Dirty what the sorted, merged write ranges touch in every recording bitmap. */
static void replay(struct md *m, struct range *ranges, size_t n)
{
	size_t i, k, merged = 0;
	unsigned int j;

	qsort(ranges, n, sizeof(*ranges), cmp_range);
	for (i = 0; i < n; i++) {
		if (merged && ranges[i].start <= ranges[merged - 1].end) {
			if (ranges[i].end > ranges[merged - 1].end)
				ranges[merged - 1].end = ranges[i].end;
		} else {
			ranges[merged++] = ranges[i];
		}
	}
	for (j = 0; j < m->nr_bitmaps; j++) {
		struct bm *b = &m->bm[j];

		if (!b->bits || !(b->flags & BSYNC_MD_BM_RECORDING) ||
		    (b->flags & BSYNC_MD_BM_INCONSISTENT))
			continue;
		for (k = 0; k < merged; k++)
			set_bits(b->bits, ranges[k].start >> b->shift, (ranges[k].end - 1) >> b->shift);
	}
}

/*
 * A log block's checksum covers its header after the checksum field and its
 * records, not the unused rest; nr_records must have been checked.
 */
static uint32_t log_csum(const unsigned char *raw, uint32_t nr_records)
{
	return bmd_crc32c(raw + 4, sizeof(struct bsync_md_log_header) - 4 +
			  nr_records * sizeof(struct bsync_md_log_record));
}

/* Whether a log block's checksum is right (and its record count possible). */
static bool log_csum_ok(const unsigned char *raw)
{
	const struct bsync_md_log_header *h = (const void *)raw;
	uint32_t nr = le32toh(h->nr_records);

	return nr <= BSYNC_MD_LOG_RECORDS && le32toh(h->csum) == log_csum(raw, nr);
}

/* Whether log block seq (raw) belongs to generation gen; why not in why. */
static bool log_block_ok(const struct md *m, const unsigned char *raw, uint64_t seq,
			 char *why, size_t len)
{
	const struct bsync_md_log_header *h = (const void *)raw;

	if (all_zero(raw, BS)) {
		snprintf(why, len, "block %" PRIu64 " is empty", seq);
		return false;
	}
	if (le32toh(h->nr_records) > BSYNC_MD_LOG_RECORDS) {
		snprintf(why, len, "block %" PRIu64 " claims %" PRIu32 " records, more than %zu fit",
			 seq, (uint32_t)le32toh(h->nr_records), (size_t)BSYNC_MD_LOG_RECORDS);
		return false;
	}
	if (!log_csum_ok(raw)) {
		snprintf(why, len, "block %" PRIu64 " has a bad checksum", seq);
		return false;
	}
	if (le32toh(h->magic) != BSYNC_MD_LOG_MAGIC) {
		snprintf(why, len, "block %" PRIu64 " has a bad magic", seq);
		return false;
	}
	if (le64toh(h->generation) != m->gen) {
		snprintf(why, len, "block %" PRIu64 " is of generation %" PRIu64, seq,
			 (uint64_t)le64toh(h->generation));
		return false;
	}
	if (h->nonce != m->nonce) {
		snprintf(why, len, "block %" PRIu64 " is of another format (nonce)", seq);
		return false;
	}
	if (le64toh(h->seq) != seq) {
		snprintf(why, len, "block %" PRIu64 " says it is block %" PRIu64, seq,
			 (uint64_t)le64toh(h->seq));
		return false;
	}
	return true;
}

static int load_log(struct md *m)
{
	uint64_t n = m->lay.log_blocks, seq, bad_records = 0;
	size_t nranges = 0;
	unsigned char *buf;
	struct range *ranges;
	bool stopped = false;
	char why[160];
	int r;

	if (m->lay.log_start + n > m->dev_blocks) {
		bmd_problem(m, "log: it lies beyond the end of the device");
		n = m->dev_blocks > m->lay.log_start ? m->dev_blocks - m->lay.log_start : 0;
	}
	buf = malloc(n * BS + 1);
	ranges = malloc(n * BSYNC_MD_LOG_RECORDS * sizeof(*ranges) + 1);
	if (!buf || !ranges) {
		free(buf);
		free(ranges);
		return -ENOMEM;
	}
	r = n ? bmd_read_blocks(m, m->lay.log_start, n, buf) : 0;
	if (r) {
		free(buf);
		free(ranges);
		return r;
	}
	snprintf(m->log_end, sizeof(m->log_end), "the log is full");
	for (seq = 0; seq < n; seq++) {
		const unsigned char *raw = buf + seq * BS;
		const struct bsync_md_log_header *h = (const void *)raw;
		const struct bsync_md_log_record *rec = (const void *)(h + 1);
		bool ok = log_block_ok(m, raw, seq, why, sizeof(why));
		uint32_t i;

		/* A block of a later generation: a commit newer than ours existed. */
		if (!ok && log_csum_ok(raw) && le32toh(h->magic) == BSYNC_MD_LOG_MAGIC && h->nonce == m->nonce &&
		    le64toh(h->generation) > m->gen &&
		    le64toh(h->generation) > m->newer_gen)
			m->newer_gen = le64toh(h->generation);
		if (stopped) {
			if (ok && !m->log_gap) {
				m->log_gap = true;
				bmd_problem(m, "log: block %" PRIu64 " of generation %" PRIu64 " follows the end of the log (%s): its records and those of the blocks between are not replayed",
					seq, m->gen, m->log_end);
			}
			continue;
		}
		if (!ok) {
			stopped = true;
			snprintf(m->log_end, sizeof(m->log_end), "%s", why);
			continue;
		}
		m->log_valid++;
		for (i = 0; i < le32toh(h->nr_records); i++) {
			uint64_t sector = le64toh(rec[i].sector), count = le64toh(rec[i].nr_sectors);

			m->log_records++;
			if (!count)
				continue;
			if (sector >= m->dev_sectors || count > m->dev_sectors - sector) {
				if (!bad_records++)
					bmd_problem(m, "log: block %" PRIu64 " record %" PRIu32 " (sectors %" PRIu64 "+%" PRIu64 ") goes past the end of the %" PRIu64 "-sector device",
						seq, i, sector, count, m->dev_sectors);
				if (sector >= m->dev_sectors)
					continue;
				count = m->dev_sectors - sector;
			}
			ranges[nranges].start = sector;
			ranges[nranges++].end = sector + count;
		}
	}
	if (bad_records > 1)
		bmd_problem(m, "log: %" PRIu64 " records in all go past the end of the device", bad_records);
	if ((m->flags & BSYNC_MD_CLEAN) && m->log_valid)
		bmd_problem(m, "log: the superblock says the device was closed cleanly, but the log has %" PRIu64 " blocks of generation %" PRIu64,
			m->log_valid, m->gen);
	replay(m, ranges, nranges);
	free(ranges);
	free(buf);
	return 0;
}

static void mark_lost(struct md *m, bool recording_only, const char *why)
{
	unsigned int i;

	for (i = 0; i < m->nr_bitmaps; i++) {
		struct bm *b = &m->bm[i];

		if (b->lost || (b->flags & BSYNC_MD_BM_INCONSISTENT))
			continue;
		if (recording_only && !(b->flags & BSYNC_MD_BM_RECORDING))
			continue;
		b->lost = why;
	}
}

static uint64_t popcount_bits(const struct bm *b)
{
	uint64_t k, n = 0;

	for (k = 0; k < b->nwords; k++)
		n += (uint64_t)__builtin_popcountll(b->bits[k]);
	return n;
}

int bmd_load(struct md *m, FILE *err)
{
	const struct bsync_md_superblock *sb;
	unsigned int i;
	int r;

	for (i = 0; i < 2; i++) {
		r = load_slot(m, (int)i);
		if (r) {
			fprintf(err, "bsync-metadata: %s: cannot read superblock %u: %s\n", m->path, i, strerror(-r));
			return r;
		}
	}
	m->cur = -1;
	for (i = 0; i < 2; i++)
		if (m->slot[i].state == SLOT_OK && (m->cur < 0 || m->slot[i].gen > m->slot[m->cur].gen))
			m->cur = (int)i;
	/*
	 * As the kernel: a slot in an unknown format may be the newer one, so
	 * the other, older slot cannot be trusted to be current.
	 */
	if (m->newer_version && m->cur >= 0) {
		bmd_problem(m, "a superblock is in a format this tool does not know: "
			"the kernel refuses this device, and so does the tool");
		m->cur = -1;
	}
	for (i = 0; i < 2; i++)
		if (m->slot[i].state == SLOT_BAD)
			bmd_problem(m, "superblock %u: %s", i, m->slot[i].why);
	if (m->cur < 0) {
		if (m->slot[0].state != SLOT_EMPTY || m->slot[1].state != SLOT_EMPTY)
			bmd_problem(m, "no valid superblock: the metadata cannot be loaded");
		return 0;
	}
	if (m->slot[0].state == SLOT_OK && m->slot[1].state == SLOT_OK &&
	    m->slot[0].gen == m->slot[1].gen)
		bmd_problem(m, "both superblocks have generation %" PRIu64 ": using superblock 0", m->slot[0].gen);

	sb = (const void *)m->slot[m->cur].raw;
	m->gen = le64toh(sb->generation);
	m->dev_sectors = le64toh(sb->dev_sectors);
	m->nr_blocks = le64toh(sb->nr_blocks);
	m->flags = le32toh(sb->flags);
	m->nr_bitmaps = le32toh(sb->nr_bitmaps);
	m->area = le32toh(sb->area);
	m->nonce = sb->nonce;
	bmd_layout(m->nr_blocks, &m->lay);

	/* The slots' checks left the last one's entries here: decode the current's. */
	if (sb_insane(sb, m->dev_blocks, m->bm, m->log_end, sizeof(m->log_end)))
		return -EINVAL;		/* cannot happen: it was checked */
	for (i = 0; i < m->nr_bitmaps; i++) {
		struct bm *b = &m->bm[i];

		r = load_bits(m, b);
		if (r) {
			fprintf(err, "bsync-metadata: %s: cannot read the bits of bitmap '%s': %s\n",
				m->path, b->name, strerror(-r));
			return r;
		}
	}
	r = load_log(m);
	if (r) {
		fprintf(err, "bsync-metadata: %s: cannot read the log: %s\n", m->path, strerror(-r));
		return r;
	}
	if (m->newer_gen) {
		bmd_problem(m, "log: it has blocks of generation %" PRIu64 ", newer than the superblock's %" PRIu64
			": a later commit was lost, every bitmap may miss writes", m->newer_gen, m->gen);
		mark_lost(m, false, "a later commit was lost");
	}
	if (m->log_gap)
		mark_lost(m, true, "log records were lost");
	for (i = 0; i < m->nr_bitmaps; i++)
		if (m->bm[i].bits)
			m->bm[i].dirty = popcount_bits(&m->bm[i]);
	return 0;
}

int bmd_check(const struct md *m, FILE *out, FILE *err)
{
	size_t k;

	for (k = 0; k < m->nprob; k++)
		fprintf(out, "%s\n", m->prob[k]);
	if (m->nprob_more)
		fprintf(out, "(%zu more problems)\n", m->nprob_more);
	if (bmd_nproblems(m))
		fprintf(err, "bsync-metadata: %s: %zu problem%s found\n", m->path, bmd_nproblems(m),
			bmd_nproblems(m) == 1 ? "" : "s");
	else if (m->cur < 0)
		fprintf(err, "bsync-metadata: %s: unformatted (both superblocks are zero)\n", m->path);
	else
		fprintf(err, "bsync-metadata: %s: consistent: generation %" PRIu64 ", %" PRIu32
			" bitmaps, %s, %" PRIu64 " log records\n", m->path, m->gen, m->nr_bitmaps,
			m->flags & BSYNC_MD_CLEAN ? "clean" : "not closed cleanly", m->log_records);
	return bmd_nproblems(m) ? BMD_EXIT_PROBLEMS : BMD_EXIT_OK;
}
