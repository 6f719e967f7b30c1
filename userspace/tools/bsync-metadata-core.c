// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: check, dump and repair a bsync metadata device offline.
 *
 * The format is dm-bsync/dm-bsync-format.h.  Loading follows the kernel's
 * rules: the current superblock is the valid slot with the highest
 * generation; each persistent bitmap's bits are read from the area that
 * superblock names and checked against their CRC; the log of that
 * generation is replayed up to its first invalid block.  Everything read
 * is distrusted: sizes and offsets are checked against the superblock and
 * the device before anything is allocated or read, so no input makes the
 * tool allocate more than the device holds.
 */
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dm-bsync-format.h"
#include "bsync-metadata.h"

#define BS		BSYNC_MD_BLOCK_SIZE
#define MAX_SHIFT	21		/* 1 GiB clusters */
#define MAX_BITS	(1ULL << 31)	/* the kernel's limit per bitmap */
#define MAX_SECTORS	(1ULL << 54)	/* bytes stay below 2^63 */
#define MAX_PROBLEMS	200		/* listed; the rest are counted */

_Static_assert(sizeof(struct bsync_md_superblock) <= BSYNC_MD_BLOCK_SIZE, "superblock fits a block");
_Static_assert(sizeof(struct bsync_md_bitmap) == 160, "bitmap entry is 160 bytes");
_Static_assert(sizeof(struct bsync_md_log_header) == 32, "log header is 32 bytes");

/*
 * CRC-32C, reflected polynomial 0x82f63b78, one table.
 */
static uint32_t crc_table[256];

static void crc_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		for (c = i, j = 0; j < 8; j++)
			c = (c >> 1) ^ (c & 1 ? 0x82f63b78U : 0);
		crc_table[i] = c;
	}
}

uint32_t bmd_crc32c(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~0U;

	if (!crc_table[1])
		crc_init();
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

void bmd_layout(uint64_t nr_blocks, struct bmd_layout *l)
{
	uint64_t n;

	memset(l, 0, sizeof(*l));
	if (nr_blocks < BSYNC_MD_SB_BLOCKS + 1)
		return;
	n = (nr_blocks - BSYNC_MD_SB_BLOCKS) / 8;
	l->log_start = BSYNC_MD_SB_BLOCKS;
	l->log_blocks = n < 1 ? 1 : n > BSYNC_MD_LOG_BLOCKS ? BSYNC_MD_LOG_BLOCKS : n;
	l->area_blocks = (nr_blocks - BSYNC_MD_SB_BLOCKS - l->log_blocks) / 2;
	l->area_start[0] = BSYNC_MD_SB_BLOCKS + l->log_blocks;
	l->area_start[1] = l->area_start[0] + l->area_blocks;
}

/*
 * The loaded state of a device.
 */
enum slot_state { SLOT_EMPTY, SLOT_BAD, SLOT_OK };

struct slot {
	enum slot_state state;
	char why[400];		/* SLOT_BAD */
	uint64_t gen;		/* SLOT_OK */
	unsigned char raw[BS];
};

struct bm {
	char name[BSYNC_MD_NAME_LEN];
	uint64_t nr_bits, offset, nwords, blocks;
	uint32_t csum;
	unsigned int shift, flags;
	const char *lost;	/* it may miss writes: why (NULL if it may not) */
	uint64_t *bits;		/* NULL if not read */
	uint64_t dirty;		/* set bits after replay */
};

struct range {
	uint64_t start, end;	/* sectors, end exclusive */
};

struct md {
	const char *path;
	int fd;
	uint64_t dev_bytes, dev_blocks;
	struct slot slot[2];
	int cur;		/* current slot, -1 if none */
	/* the current superblock, decoded */
	uint64_t gen, dev_sectors, nr_blocks;
	struct bmd_layout lay;
	uint32_t flags, nr_bitmaps, area, nonce;	/* nonce: as on disk */
	struct bm bm[BSYNC_MD_MAX_BITMAPS];
	/* log replay */
	uint64_t log_valid, log_records, newer_gen;
	char log_end[400];	/* why replay stopped */
	bool log_gap;
	bool newer_version;	/* a slot of a format this tool does not know */
	/* problems, one line each */
	char *prob[MAX_PROBLEMS];
	size_t nprob, nprob_more;
};

__attribute__((format(printf, 2, 3)))
static void problem(struct md *m, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (m->nprob == MAX_PROBLEMS) {
		m->nprob_more++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (s)
		m->prob[m->nprob++] = s;
	else
		m->nprob_more++;
}

static size_t nproblems(const struct md *m)
{
	return m->nprob + m->nprob_more;
}

static void md_free(struct md *m)
{
	size_t i;

	for (i = 0; i < m->nprob; i++)
		free(m->prob[i]);
	for (i = 0; i < BSYNC_MD_MAX_BITMAPS; i++)
		free(m->bm[i].bits);
}

/* pread or pwrite n blocks at block, whole; end_err if they are not all on the device */
static int rw_blocks(struct md *m, uint64_t block, uint64_t n, void *buf, bool write, int end_err)
{
	size_t len = n * BS, done = 0;

	if (block > m->dev_blocks || n > m->dev_blocks - block)
		return end_err;
	while (done < len) {
		off_t at = (off_t)(block * BS + done);
		ssize_t r = write ? pwrite(m->fd, (const char *)buf + done, len - done, at)
				  : pread(m->fd, (char *)buf + done, len - done, at);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return write ? -EIO : -ENODATA;
		done += (size_t)r;
	}
	return 0;
}

static int read_blocks(struct md *m, uint64_t block, uint64_t n, void *buf)
{
	return rw_blocks(m, block, n, buf, false, -ENODATA);
}

static int write_blocks(struct md *m, uint64_t block, uint64_t n, const void *buf)
{
	return rw_blocks(m, block, n, (void *)buf, true, -ENOSPC);
}

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
	int r = read_blocks(m, (uint64_t)i, 1, s->raw);

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
		problem(m, "bitmap '%s': its bits (blocks %" PRIu64 "-%" PRIu64 ") lie beyond the end of the device",
			b->name, start, start + b->blocks - 1);
		return 0;
	}
	buf = calloc(b->blocks, BS);
	if (!buf)
		return -ENOMEM;
	r = read_blocks(m, start, b->blocks, buf);
	if (r) {
		free(buf);
		return r;
	}
	calc = bmd_crc32c(buf, b->nwords * 8);
	if (calc != b->csum) {
		b->lost = "the checksum of its bits is wrong";
		problem(m, "bitmap '%s': bad checksum of its bits (stored %08" PRIx32 ", computed %08" PRIx32
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
			problem(m, "bitmap '%s': bits past its last cluster are set", b->name);
		b->bits[b->nwords - 1] &= (1ULL << tail) - 1;
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

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
static void replay(struct md *m, struct range *r, size_t n)
{
	size_t i, k, out = 0;
	unsigned int j;

	qsort(r, n, sizeof(*r), cmp_range);
	for (i = 0; i < n; i++) {
		if (out && r[i].start <= r[out - 1].end) {
			if (r[i].end > r[out - 1].end)
				r[out - 1].end = r[i].end;
		} else {
			r[out++] = r[i];
		}
	}
	for (j = 0; j < m->nr_bitmaps; j++) {
		struct bm *b = &m->bm[j];

		if (!b->bits || !(b->flags & BSYNC_MD_BM_RECORDING) ||
		    (b->flags & BSYNC_MD_BM_INCONSISTENT))
			continue;
		for (k = 0; k < out; k++)
			set_bits(b->bits, r[k].start >> b->shift, (r[k].end - 1) >> b->shift);
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
	size_t nr = 0;
	unsigned char *buf;
	struct range *r;
	bool stopped = false;
	char why[160];
	int err;

	if (m->lay.log_start + n > m->dev_blocks) {
		problem(m, "log: it lies beyond the end of the device");
		n = m->dev_blocks > m->lay.log_start ? m->dev_blocks - m->lay.log_start : 0;
	}
	buf = malloc(n * BS + 1);
	r = malloc(n * BSYNC_MD_LOG_RECORDS * sizeof(*r) + 1);
	if (!buf || !r) {
		free(buf);
		free(r);
		return -ENOMEM;
	}
	err = n ? read_blocks(m, m->lay.log_start, n, buf) : 0;
	if (err) {
		free(buf);
		free(r);
		return err;
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
				problem(m, "log: block %" PRIu64 " of generation %" PRIu64 " follows the end of the log (%s): its records and those of the blocks between are not replayed",
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
			uint64_t s = le64toh(rec[i].sector), len = le64toh(rec[i].nr_sectors);

			m->log_records++;
			if (!len)
				continue;
			if (s >= m->dev_sectors || len > m->dev_sectors - s) {
				if (!bad_records++)
					problem(m, "log: block %" PRIu64 " record %" PRIu32 " (sectors %" PRIu64 "+%" PRIu64 ") goes past the end of the %" PRIu64 "-sector device",
						seq, i, s, len, m->dev_sectors);
				if (s >= m->dev_sectors)
					continue;
				len = m->dev_sectors - s;
			}
			r[nr].start = s;
			r[nr++].end = s + len;
		}
	}
	if (bad_records > 1)
		problem(m, "log: %" PRIu64 " records in all go past the end of the device", bad_records);
	if ((m->flags & BSYNC_MD_CLEAN) && m->log_valid)
		problem(m, "log: the superblock says the device was closed cleanly, but the log has %" PRIu64 " blocks of generation %" PRIu64,
			m->log_valid, m->gen);
	replay(m, r, nr);
	free(r);
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

/* Load everything; -errno on an I/O error (message on err). */
static int md_load(struct md *m, FILE *err)
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
		problem(m, "a superblock is in a format this tool does not know: "
			"the kernel refuses this device, and so does the tool");
		m->cur = -1;
	}
	for (i = 0; i < 2; i++)
		if (m->slot[i].state == SLOT_BAD)
			problem(m, "superblock %u: %s", i, m->slot[i].why);
	if (m->cur < 0) {
		if (m->slot[0].state != SLOT_EMPTY || m->slot[1].state != SLOT_EMPTY)
			problem(m, "no valid superblock: the metadata cannot be loaded");
		return 0;
	}
	if (m->slot[0].state == SLOT_OK && m->slot[1].state == SLOT_OK &&
	    m->slot[0].gen == m->slot[1].gen)
		problem(m, "both superblocks have generation %" PRIu64 ": using superblock 0", m->slot[0].gen);

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
		problem(m, "log: it has blocks of generation %" PRIu64 ", newer than the superblock's %" PRIu64
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

/* Open path for reading (or writing); exclusively if it is a block device. */
static int md_open(struct md *m, const char *path, bool rw, FILE *err)
{
	struct stat st;
	int fd;

	memset(m, 0, sizeof(*m));
	m->path = path;
	m->fd = -1;
	m->cur = -1;
	if (stat(path, &st)) {
		int e = errno;

		fprintf(err, "bsync-metadata: cannot open %s: %s\n", path, strerror(e));
		return -e;
	}
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
		fprintf(err, "bsync-metadata: %s is neither a block device nor a file\n", path);
		return -EINVAL;
	}
	fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_EXCL : 0));
	if (fd < 0) {
		int e = errno;

		if (e == EBUSY)
			fprintf(err, "bsync-metadata: cannot open %s exclusively: %s (a bsync device or another user holds it: remove the device first, or work on a copy)\n",
				path, strerror(e));
		else
			fprintf(err, "bsync-metadata: cannot open %s: %s\n", path, strerror(e));
		return -e;
	}
	m->fd = fd;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &m->dev_bytes)) {
			int e = errno;

			fprintf(err, "bsync-metadata: cannot get the size of %s: %s\n", path, strerror(e));
			close(fd);
			m->fd = -1;
			return -e;
		}
	} else {
		m->dev_bytes = (uint64_t)st.st_size;
	}
	m->dev_blocks = m->dev_bytes / BS;
	return 0;
}

static void md_close(struct md *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	md_free(m);
}

/*
 * Output
 */
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
	fprintf(out, "problems: %zu\n", nproblems(m));
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

/*
 * Repair: a fresh commit of what was loaded, into the other area and slot.
 */
static int repair(struct md *m, FILE *out, FILE *err)
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
		r = write_blocks(m, m->lay.area_start[area] + b->offset, b->blocks, buf);
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
	r = write_blocks(m, (uint64_t)slot, 1, sbuf);
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

/*
 * Command line
 */
static const char usage_text[] =
	"usage: bsync-metadata check DEVICE\n"
	"       bsync-metadata dump DEVICE [--json]\n"
	"       bsync-metadata repair DEVICE\n";

static const char help_text[] =
	"\n"
	"Check, show or repair the metadata device of a bsync target (its\n"
	"persistent dirty bitmaps) while no bsync device uses it. DEVICE is a\n"
	"block device (opened exclusively) or an image file.\n"
	"\n"
	"  check    validate both superblocks, the bitmaps' checksums and the log;\n"
	"           print one line per problem\n"
	"  dump     print the superblock, each bitmap after log replay (its\n"
	"           dirty extents as OFFSET:LENGTH in bytes) and the problems;\n"
	"           --json for a JSON object\n"
	"  repair   write a fresh, clean commit of what can be trusted: the log\n"
	"           replayed into the bits, bitmaps that may miss writes marked\n"
	"           inconsistent, the next generation in the other superblock\n"
	"\n"
	"Exit status: 0 consistent (check) or done; 1 problems found (check),\n"
	"no valid superblock (dump, repair); 2 usage or I/O error.\n";

__attribute__((format(printf, 2, 3)))
static int usage_error(FILE *err, const char *fmt, ...)
{
	va_list ap;

	fprintf(err, "bsync-metadata: ");
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fprintf(err, "\n%sTry 'bsync-metadata --help' for more information.\n", usage_text);
	return BMD_EXIT_USAGE;
}

int bsync_metadata_main(int argc, char **argv, FILE *out, FILE *err)
{
	const char *cmd = NULL, *dev = NULL;
	bool json = false, rw;
	struct md m;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fprintf(out, "%s%s", usage_text, help_text);
			return BMD_EXIT_OK;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (a[0] == '-' && a[1]) {
			return usage_error(err, "unknown option '%s'", a);
		} else if (!cmd) {
			cmd = a;
		} else if (!dev) {
			dev = a;
		} else {
			return usage_error(err, "unexpected argument '%s'", a);
		}
	}
	if (!cmd)
		return usage_error(err, "%s", "no command given");
	if (strcmp(cmd, "check") && strcmp(cmd, "dump") && strcmp(cmd, "repair"))
		return usage_error(err, "unknown command '%s' (check, dump or repair)", cmd);
	if (!dev)
		return usage_error(err, "%s: no device given", cmd);
	if (json && strcmp(cmd, "dump"))
		return usage_error(err, "%s: --json is only for dump", cmd);

	rw = !strcmp(cmd, "repair");
	if (md_open(&m, dev, rw, err))
		return BMD_EXIT_USAGE;
	if (md_load(&m, err)) {
		md_close(&m);
		return BMD_EXIT_USAGE;
	}
	if (!strcmp(cmd, "dump")) {
		if (json)
			dump_json(&m, out);
		else
			dump_text(&m, out);
		rc = m.cur >= 0 || !nproblems(&m) ? BMD_EXIT_OK : BMD_EXIT_PROBLEMS;
	} else if (!strcmp(cmd, "check")) {
		size_t k;

		for (k = 0; k < m.nprob; k++)
			fprintf(out, "%s\n", m.prob[k]);
		if (m.nprob_more)
			fprintf(out, "(%zu more problems)\n", m.nprob_more);
		if (nproblems(&m))
			fprintf(err, "bsync-metadata: %s: %zu problem%s found\n", dev, nproblems(&m),
				nproblems(&m) == 1 ? "" : "s");
		else if (m.cur < 0)
			fprintf(err, "bsync-metadata: %s: unformatted (both superblocks are zero)\n", dev);
		else
			fprintf(err, "bsync-metadata: %s: consistent: generation %" PRIu64 ", %" PRIu32
				" bitmaps, %s, %" PRIu64 " log records\n", dev, m.gen, m.nr_bitmaps,
				m.flags & BSYNC_MD_CLEAN ? "clean" : "not closed cleanly", m.log_records);
		rc = nproblems(&m) ? BMD_EXIT_PROBLEMS : BMD_EXIT_OK;
	} else {
		size_t k;

		for (k = 0; k < m.nprob; k++)
			fprintf(out, "found: %s\n", m.prob[k]);
		if (m.cur < 0 && !nproblems(&m)) {
			fprintf(err, "bsync-metadata: %s: unformatted: nothing to repair\n", dev);
			rc = BMD_EXIT_OK;
		} else if (m.cur < 0) {
			fprintf(err, "bsync-metadata: %s: no valid superblock: cannot repair (a device that shrank must get its size back; otherwise, zeroing its first 8 KiB lets the kernel format it anew, losing every bitmap)\n",
				dev);
			rc = BMD_EXIT_PROBLEMS;
		} else if (m.gen == UINT64_MAX || m.newer_gen == UINT64_MAX) {
			fprintf(err, "bsync-metadata: %s: the generation is at its maximum: cannot repair\n", dev);
			rc = BMD_EXIT_PROBLEMS;
		} else {
			rc = repair(&m, out, err) ? BMD_EXIT_USAGE : BMD_EXIT_OK;
		}
	}
	md_close(&m);
	return rc;
}
