// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata check/dump/repair on images made by a small writer of its
 * own (bit-by-bit CRC-32C, the layout from the format rules), so the tool
 * is checked against the rules and not against itself: clean images, log
 * replay, superblock selection and fallback, damaged areas and logs,
 * truncation, repair, and a fuzz loop of mutated superblocks, log blocks
 * and areas (with and without fixed-up checksums) in which the tool must
 * never crash, must give a clear verdict, and a repair must leave an image
 * that checks clean.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dm-bsync-format.h"
#include "../tools/bsync-metadata.h"
#include "tap.h"

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	/* the images are 256 KiB: an allocation above 4 MiB is a failure */
	return "max_allocation_size_mb=4:allocator_may_return_null=0";
}

#define BLK	4096
#define NBLK	64		/* image size in blocks */
#define SECTORS	200001ULL	/* the bsync device: not a multiple of any cluster */
#define NONCE	0x5eed1234U	/* the format's */

/*
 * The writer.
 */
static uint32_t crc_bitwise(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = 0xffffffffU;
	int k;

	while (len--) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78U : c >> 1;
	}
	return c ^ 0xffffffffU;
}

struct lay {
	uint64_t log_start, log_blocks, area_start[2], area_blocks;
};

static struct lay layout_of(uint64_t n)
{
	struct lay l;
	uint64_t lb = (n - 2) / 8;

	if (lb < 1)
		lb = 1;
	if (lb > 256)
		lb = 256;
	l.log_start = 2;
	l.log_blocks = lb;
	l.area_blocks = (n - 2 - lb) / 2;
	l.area_start[0] = 2 + lb;
	l.area_start[1] = l.area_start[0] + l.area_blocks;
	return l;
}

static unsigned char img[NBLK * BLK];

struct wbm {
	const char *name;
	unsigned int shift, flags;
	uint64_t offset;	/* blocks into the area */
	const uint64_t *dirty;	/* clusters, ~0 ended */
};

static uint64_t nbits(unsigned int shift)
{
	return (SECTORS + (1ULL << shift) - 1) >> shift;
}

/* Superblock into slot, with its bitmaps' bits into area. */
static void put_sb(int slot, uint64_t gen, uint32_t flags, uint32_t area, const struct wbm *b, int nb)
{
	unsigned char *p = img + slot * BLK;
	struct lay l = layout_of(NBLK);
	struct bsync_md_superblock sb;
	int i;

	memset(&sb, 0, sizeof(sb));
	sb.version = htole32(BSYNC_MD_VERSION);
	sb.magic = htole64(BSYNC_MD_MAGIC);
	sb.generation = htole64(gen);
	sb.dev_sectors = htole64(SECTORS);
	sb.nr_blocks = htole64(NBLK);
	sb.log_start = htole64(l.log_start);
	sb.log_blocks = htole64(l.log_blocks);
	sb.area_start[0] = htole64(l.area_start[0]);
	sb.area_start[1] = htole64(l.area_start[1]);
	sb.area_blocks = htole64(l.area_blocks);
	sb.flags = htole32(flags);
	sb.nr_bitmaps = htole32((uint32_t)nb);
	sb.area = htole32(area);
	sb.nonce = htole32(NONCE);
	for (i = 0; i < nb; i++) {
		uint64_t n = nbits(b[i].shift), words = (n + 63) / 64, k;
		unsigned char *bits = img + (l.area_start[area] + b[i].offset) * BLK;

		memset(bits, 0, ((words * 8 + BLK - 1) / BLK) * BLK);
		for (k = 0; b[i].dirty && b[i].dirty[k] != ~0ULL; k++)
			bits[b[i].dirty[k] / 8] |= (unsigned char)(1 << (b[i].dirty[k] % 8));
		snprintf(sb.bitmaps[i].name, sizeof(sb.bitmaps[i].name), "%s", b[i].name);
		sb.bitmaps[i].nr_bits = htole64(n);
		sb.bitmaps[i].offset = htole64(b[i].offset);
		sb.bitmaps[i].csum = htole32(crc_bitwise(bits, words * 8));
		sb.bitmaps[i].shift = (uint8_t)b[i].shift;
		sb.bitmaps[i].flags = (uint8_t)b[i].flags;
	}
	memset(p, 0, BLK);
	memcpy(p, &sb, sizeof(sb));
	((struct bsync_md_superblock *)(void *)p)->csum = htole32(crc_bitwise(p + 4, BLK - 4));
}

/* A log block's checksum: its header after the field, and its records. */
static void fix_log_csum(unsigned char *p)
{
	struct bsync_md_log_header h;
	uint32_t n;

	memcpy(&h, p, sizeof(h));
	n = le32toh(h.nr_records);
	if (n > (BLK - sizeof(h)) / 16)
		n = (BLK - sizeof(h)) / 16;
	((struct bsync_md_log_header *)(void *)p)->csum =
		htole32(crc_bitwise(p + 4, sizeof(h) - 4 + n * 16));
}

/* Log block seq of generation gen with n (sector, nr_sectors) records. */
static void put_log_nonce(uint64_t seq, uint64_t gen, const uint64_t *rec, uint32_t n, uint32_t nonce)
{
	unsigned char *p = img + (2 + seq) * BLK;
	struct bsync_md_log_header h;
	uint32_t i;

	memset(p, 0, BLK);
	memset(&h, 0, sizeof(h));
	h.magic = htole32(BSYNC_MD_LOG_MAGIC);
	h.generation = htole64(gen);
	h.seq = htole64(seq);
	h.nr_records = htole32(n);
	h.nonce = htole32(nonce);
	memcpy(p, &h, sizeof(h));
	for (i = 0; i < n; i++) {
		struct bsync_md_log_record r = { htole64(rec[2 * i]), htole64(rec[2 * i + 1]) };

		memcpy(p + sizeof(h) + i * sizeof(r), &r, sizeof(r));
	}
	fix_log_csum(p);
}

static void put_log(uint64_t seq, uint64_t gen, const uint64_t *rec, uint32_t n)
{
	put_log_nonce(seq, gen, rec, n, NONCE);
}

static char path[64];

static void save(size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, img, len) != (ssize_t)len)
		perror("save");
	close(fd);
}

static void load(void)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0 || read(fd, img, sizeof(img)) != (ssize_t)sizeof(img))
		perror("load");
	close(fd);
}

/* Run the tool; its stdout in *out (caller frees), stderr discarded. */
static int tool(const char *cmd, const char *opt, char **out)
{
	char *argv[5] = { (char *)"bsync-metadata", (char *)cmd, path, (char *)opt, NULL };
	char *o = NULL, *e = NULL;
	size_t ol, el;
	FILE *fo = open_memstream(&o, &ol), *fe = open_memstream(&e, &el);
	int rc = bsync_metadata_main(opt ? 4 : 3, argv, fo, fe);

	fclose(fo);
	fclose(fe);
	if (rc == 2 && getenv("SHOWERR"))
		tap_diag("%s", e);
	free(e);
	if (out)
		*out = o;
	else
		free(o);
	return rc;
}

static json_object *dump(void)
{
	char *o;
	json_object *j;

	tool("dump", "--json", &o);
	j = json_tokener_parse(o);
	free(o);
	return j;
}

static json_object *bitmap(json_object *d, const char *name)
{
	json_object *a, *b, *n;
	size_t i;

	if (!json_object_object_get_ex(d, "bitmaps", &a))
		return NULL;
	for (i = 0; i < json_object_array_length(a); i++) {
		b = json_object_array_get_idx(a, i);
		if (json_object_object_get_ex(b, "name", &n) && !strcmp(json_object_get_string(n), name))
			return b;
	}
	return NULL;
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -1;
}

static int jbool(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_boolean(v) : -1;
}

/* "off:len off:len" of a bitmap in a dump */
static void extents(json_object *d, const char *name, char *buf, size_t len)
{
	json_object *b = bitmap(d, name), *a;
	size_t i, n = 0;

	buf[0] = 0;
	if (!b || !json_object_object_get_ex(b, "extents", &a))
		return;
	for (i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);

		n += (size_t)snprintf(buf + n, len - n, "%s%lld:%lld", i ? " " : "",
				      (long long)jint(e, "offset"), (long long)jint(e, "length"));
		if (n >= len)
			return;
	}
}

static int has_problem(const char *out, const char *text)
{
	return out && strstr(out, text) != NULL;
}

/*
 * The standard image: three bitmaps (64 KiB, 4 KiB and 512 bytes; the
 * last disabled), generation 7 in slot 1, area 1.
 */
static const uint64_t d64[] = { 0, 1, 2, 1562, ~0ULL };	/* 1562 is the partial last cluster */
static const uint64_t d4[] = { 100, 25000, ~0ULL };
static const uint64_t d512[] = { 7, ~0ULL };

static struct wbm std_bms[3] = {
	{ "nightly", 7, BSYNC_MD_BM_RECORDING, 0, d64 },
	{ "fine", 3, BSYNC_MD_BM_RECORDING, 1, d4 },
	{ "off:1", 0, 0, 2, d512 },
};

static void std_image(uint32_t flags)
{
	memset(img, 0, sizeof(img));
	put_sb(0, 6, BSYNC_MD_CLEAN, 0, std_bms, 3);
	put_sb(1, 7, flags, 1, std_bms, 3);
}

static void test_crc_layout(void)
{
	static const uint64_t ns[] = { 16, 17, 18, 25, 64, 100, 2049, 2050, 4096, 1 << 20, 123456789 };
	size_t i;
	bool same = true;

	tap_ok(bmd_crc32c("123456789", 9) == 0xe3069283U, "crc32c check value");
	tap_ok(crc_bitwise("123456789", 9) == 0xe3069283U, "the writer's crc32c check value");
	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		struct bmd_layout a;
		struct lay b = layout_of(ns[i]);

		bmd_layout(ns[i], &a);
		same &= a.log_start == b.log_start && a.log_blocks == b.log_blocks &&
			a.area_start[0] == b.area_start[0] && a.area_start[1] == b.area_start[1] &&
			a.area_blocks == b.area_blocks;
	}
	tap_ok(same, "layout of 16 .. 123456789 blocks follows the rules");
}

static void test_clean(void)
{
	char ext[512], *o;
	json_object *d;

	std_image(BSYNC_MD_CLEAN);
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 0 && !o[0], "clean image: check exits 0, prints nothing");
	free(o);
	d = dump();
	tap_ok(d && jint(d, "generation") == 7 && jbool(d, "clean") == 1 && jint(d, "area") == 1,
	       "dump: generation 7, clean, area 1");
	tap_ok(jint(bitmap(d, "nightly"), "count") == 4 * 65536 &&
	       jint(bitmap(d, "nightly"), "granularity") == 65536, "nightly: 4 clusters of 64 KiB");
	extents(d, "nightly", ext, sizeof(ext));
	tap_ok(!strcmp(ext, "0:196608 102367232:33280"), "nightly extents, the last clipped to the device (%s)", ext);
	extents(d, "fine", ext, sizeof(ext));
	tap_ok(!strcmp(ext, "409600:4096 102400000:512"), "fine extents (%s)", ext);
	tap_ok(jbool(bitmap(d, "off:1"), "recording") == 0 && jint(bitmap(d, "off:1"), "count") == 512,
	       "a disabled 512-byte bitmap");
	tap_ok(jbool(bitmap(d, "fine"), "inconsistent") == 0, "fine is consistent");
	json_object_put(d);
	tool("dump", NULL, &o);
	tap_ok(has_problem(o, "bitmap nightly: granularity 65536, count 262144, recording yes, inconsistent no") &&
	       has_problem(o, "extents: 0:196608 102367232:33280"), "text dump");
	free(o);
}

static void test_log(void)
{
	/* 1 MiB at 10 MiB, one sector at the device's last sector, then a write over 64 KiB borders */
	static const uint64_t b0[] = { 20480, 2048, SECTORS - 1, 1 };
	static const uint64_t b1[] = { 127, 2 };
	char ext[512], *o;
	json_object *d;

	std_image(0);
	put_log(0, 7, b0, 2);
	put_log(1, 7, b1, 1);
	put_log(2, 6, b1, 1);		/* an older generation: the end */
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 0, "not clean, log of 2 blocks: consistent");
	free(o);
	d = dump();
	extents(d, "nightly", ext, sizeof(ext));
	tap_ok(!strcmp(ext, "0:196608 10485760:1048576 102367232:33280"), "log replayed into nightly (%s)", ext);
	extents(d, "fine", ext, sizeof(ext));
	tap_ok(!strcmp(ext, "61440:8192 409600:4096 10485760:1048576 102400000:512"),
	       "log replayed into fine (%s)", ext);
	tap_ok(jint(bitmap(d, "off:1"), "count") == 512, "the disabled bitmap records nothing");
	tap_ok(jint(json_object_object_get(d, "log"), "records") == 3 &&
	       jint(json_object_object_get(d, "log"), "blocks") == 2, "3 records in 2 blocks");
	json_object_put(d);

	/* the checksum covers the records only: what follows them is unused */
	memset(img + 2 * BLK + 200, 0xa5, BLK - 200);
	save(sizeof(img));
	d = dump();
	tap_ok(jint(json_object_object_get(d, "log"), "records") == 3,
	       "bytes after a log block's records do not matter");
	json_object_put(d);

	/* a block of another format's log ends the log */
	put_log_nonce(1, 7, b1, 1, NONCE + 1);
	save(sizeof(img));
	d = dump();
	extents(d, "fine", ext, sizeof(ext));
	tap_ok(!strcmp(ext, "409600:4096 10485760:1048576 102400000:512"),
	       "a log block of another nonce is not replayed (%s)", ext);
	json_object_put(d);

	/* the same log under a clean superblock: said, and replayed anyway */
	put_log(1, 7, b1, 1);
	put_sb(1, 7, BSYNC_MD_CLEAN, 1, std_bms, 3);
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "closed cleanly"), "clean with a log: a problem");
	free(o);

	/* a damaged block 1 with block 2 valid after it: a gap */
	std_image(0);
	put_log(0, 7, b0, 2);
	put_log(1, 7, b1, 1);
	put_log(2, 7, b1, 1);
	img[3 * BLK + 40] ^= 1;		/* in its record */
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "follows the end of the log"), "log gap found");
	free(o);
	d = dump();
	tap_ok(jbool(bitmap(d, "nightly"), "inconsistent") == 1 && jbool(bitmap(d, "off:1"), "inconsistent") == 0,
	       "a gap makes the recording bitmaps inconsistent, not the disabled one");
	json_object_put(d);

	/* records past the end of the device are clipped */
	{
		static const uint64_t bad[] = { SECTORS - 2, 100, SECTORS + 5, 1, ~0ULL - 3, 8 };

		std_image(0);
		put_log(0, 7, bad, 3);
		save(sizeof(img));
		tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "past the end"), "records past the end: a problem");
		free(o);
	}
}

static void test_slots(void)
{
	char *o;
	json_object *d;

	/* current superblock damaged: the older one is used */
	std_image(BSYNC_MD_CLEAN);
	img[BLK + 300] ^= 0x40;
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "superblock 1: bad checksum"),
	       "damaged current superblock: a problem");
	free(o);
	d = dump();
	tap_ok(jint(d, "generation") == 6 && jint(d, "area") == 0, "the older superblock is used");
	tap_ok(jbool(bitmap(d, "nightly"), "inconsistent") == 0,
	       "no newer generation in the log: bitmaps stay consistent");
	json_object_put(d);

	/* ... but if the log shows the newer commit was real, every bitmap may miss writes */
	{
		static const uint64_t r[] = { 0, 8 };

		put_log_nonce(0, 7, r, 1, NONCE ^ 1);
		save(sizeof(img));
		d = dump();
		tap_ok(jbool(bitmap(d, "nightly"), "inconsistent") == 0,
		       "a newer log block of another format (nonce) proves nothing");
		json_object_put(d);
		put_log(0, 7, r, 1);
		save(sizeof(img));
		d = dump();
		tap_ok(jbool(bitmap(d, "nightly"), "inconsistent") == 1 && jbool(bitmap(d, "off:1"), "inconsistent") == 1,
		       "log of a lost newer commit: every bitmap inconsistent");
		json_object_put(d);
	}

	/* both damaged */
	std_image(BSYNC_MD_CLEAN);
	img[300] ^= 1;
	img[BLK + 300] ^= 1;
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "no valid superblock"), "both damaged: check 1");
	free(o);
	tap_ok(tool("dump", NULL, NULL) == 1, "both damaged: dump 1");
	tap_ok(tool("repair", NULL, NULL) == 1, "both damaged: repair refuses");

	/* wrong magic, unknown version, both valid with the same generation */
	std_image(BSYNC_MD_CLEAN);
	img[BLK + 8] ^= 1;
	((struct bsync_md_superblock *)(void *)(img + BLK))->csum = htole32(crc_bitwise(img + BLK + 4, BLK - 4));
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "bad magic"), "wrong magic");
	free(o);
	std_image(BSYNC_MD_CLEAN);
	img[BLK + 4] = 2;
	((struct bsync_md_superblock *)(void *)(img + BLK))->csum = htole32(crc_bitwise(img + BLK + 4, BLK - 4));
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "unknown version 2"), "unknown version");
	free(o);
	/* the other slot is valid, but the unknown one may be newer: refused as the kernel does */
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "the kernel refuses this device"),
	       "unknown version beside a valid slot: neither is used");
	free(o);
	tap_ok(tool("repair", NULL, NULL) == 1, "unknown version: repair refuses");
	put_sb(0, 7, BSYNC_MD_CLEAN, 0, std_bms, 3);
	put_sb(1, 7, BSYNC_MD_CLEAN, 1, std_bms, 3);
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "both superblocks have generation 7"),
	       "same generation twice");
	free(o);

	/* only slot 0 written (a fresh format) */
	memset(img, 0, sizeof(img));
	put_sb(0, 1, BSYNC_MD_CLEAN, 0, std_bms, 0);
	save(sizeof(img));
	tap_ok(tool("check", NULL, NULL) == 0, "fresh format, slot 1 empty: consistent");

	memset(img, 0, sizeof(img));
	save(sizeof(img));
	tap_ok(tool("check", NULL, NULL) == 0 && tool("repair", NULL, NULL) == 0, "unformatted: check 0, repair 0");
}

static void test_area(void)
{
	struct lay l = layout_of(NBLK);
	json_object *d;
	char *o;
	int rc;

	std_image(BSYNC_MD_CLEAN);
	img[(l.area_start[1] + 1) * BLK + 5] ^= 0x10;		/* fine's bits */
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "bitmap 'fine': bad checksum"), "damaged bits found");
	free(o);
	d = dump();
	tap_ok(jbool(bitmap(d, "fine"), "inconsistent") == 1 && jbool(bitmap(d, "nightly"), "inconsistent") == 0,
	       "only that bitmap is inconsistent");
	json_object_put(d);

	/* repair: a commit with fine marked inconsistent, then a clean check */
	tap_ok(tool("repair", NULL, &o) == 0 && has_problem(o, "'fine' marked inconsistent"), "repair");
	free(o);
	rc = tool("check", NULL, &o);
	tap_ok(rc == 0, "check after repair: consistent%s%s", o[0] ? ": " : "", o);
	free(o);
	d = dump();
	tap_ok(jint(d, "generation") == 8 && jint(d, "area") == 0 && jbool(d, "clean") == 1,
	       "generation 8 in area 0, clean");
	tap_ok(jbool(bitmap(d, "fine"), "inconsistent") == 1 && jint(bitmap(d, "nightly"), "count") == 4 * 65536,
	       "fine stays inconsistent, nightly keeps its bits");
	json_object_put(d);
	load();
	tap_ok(le64toh(((struct bsync_md_superblock *)(void *)img)->generation) == 8,
	       "the new commit went to slot 0");

	/* bits past nr_bits set, with a right checksum */
	std_bms[0].dirty = (const uint64_t[]){ 1563, ~0ULL };
	std_image(BSYNC_MD_CLEAN);
	std_bms[0].dirty = d64;
	save(sizeof(img));
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "past its last cluster"), "bits past the end");
	free(o);
}

static void test_repair_log(void)
{
	static const uint64_t r[] = { 20480, 2048 };
	char ext[512], ext2[512];
	json_object *d;

	std_image(0);
	put_log(0, 7, r, 1);
	save(sizeof(img));
	d = dump();
	extents(d, "fine", ext, sizeof(ext));
	json_object_put(d);
	tap_ok(tool("repair", NULL, NULL) == 0 && tool("check", NULL, NULL) == 0, "repair of a crashed image");
	d = dump();
	extents(d, "fine", ext2, sizeof(ext2));
	tap_ok(!strcmp(ext, ext2) && jint(json_object_object_get(d, "log"), "records") == 0,
	       "the log is in the bits now, and no longer replayed");
	json_object_put(d);
}

static void test_truncated_and_usage(void)
{
	char *o;

	std_image(BSYNC_MD_CLEAN);
	save(40 * BLK);
	tap_ok(tool("check", NULL, &o) == 1 && has_problem(o, "fewer than the 64"), "truncated: a problem");
	free(o);
	tap_ok(tool("repair", NULL, NULL) == 1, "truncated: repair refuses");
	save(BLK / 2);
	tap_ok(tool("check", NULL, NULL) == 1, "half a block: problems, no crash");
	tap_ok(tool("check", "--json", NULL) == 2, "--json on check: usage error");
	tap_ok(tool("frob", NULL, NULL) == 2, "unknown command: usage error");
	{
		char *argv[] = { (char *)"bsync-metadata", (char *)"check", (char *)"/nonexistent/x", NULL };
		FILE *f = fopen("/dev/null", "w");

		tap_ok(bsync_metadata_main(3, argv, f, f) == 2, "missing file: exit 2");
		fclose(f);
	}
}

/*
 * Fuzz
 */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fix_csum(int blk)
{
	unsigned char *p = img + blk * BLK;

	((struct bsync_md_superblock *)(void *)p)->csum = htole32(crc_bitwise(p + 4, BLK - 4));
}

static const uint64_t interesting[] = {
	0, 1, 2, 15, 16, 63, 64, 255, 256, 257, 4095, 4096, 0x7fffffff, 0x80000000ULL,
	0xffffffffULL, 1ULL << 32, 1ULL << 54, 1ULL << 63, ~0ULL, ~0ULL - 1, NBLK, NBLK + 1,
};

static void mutate(void)
{
	int kind = (int)(rnd() % 6), n, i;
	uint64_t blk, v;
	struct lay l = layout_of(NBLK);

	switch (kind) {
	case 0:	/* bytes of a superblock, checksum fixed up: the field checks */
	case 1:	/* a field of a superblock, checksum fixed up */
		blk = rnd() % 2;
		n = kind ? 1 : 1 + (int)(rnd() % 4);
		for (i = 0; i < n; i++) {
			size_t off = rnd() % 700;

			if (kind == 1) {
				v = interesting[rnd() % (sizeof(interesting) / sizeof(interesting[0]))];
				off &= ~(size_t)3;
				memcpy(img + blk * BLK + 4 + off, &v, rnd() % 2 ? 4 : 8);
			} else {
				img[blk * BLK + 4 + off] = (unsigned char)rnd();
			}
		}
		fix_csum((int)blk);
		break;
	case 2:	/* a log block's header or records, checksum fixed up */
		blk = 2 + rnd() % l.log_blocks;
		v = interesting[rnd() % (sizeof(interesting) / sizeof(interesting[0]))];
		memcpy(img + blk * BLK + 4 + (rnd() % 60) * 4, &v, 8);
		fix_log_csum(img + blk * BLK);
		break;
	case 3:	/* raw byte flips anywhere in the metadata */
		for (n = 1 + (int)(rnd() % 8); n; n--)
			img[rnd() % (l.area_start[1] + l.area_blocks) * BLK + rnd() % BLK] ^= (unsigned char)(1 << (rnd() % 8));
		break;
	case 4:	/* an area block zeroed or filled */
		memset(img + (l.area_start[rnd() % 2] + rnd() % l.area_blocks) * BLK, rnd() % 2 ? 0xff : 0, BLK);
		break;
	default: /* a valid log block of another generation or position */
		{
			uint64_t rec[4] = { rnd() % (SECTORS * 2), rnd() % 4096, rnd(), rnd() % 8 };

			put_log(rnd() % l.log_blocks, 5 + rnd() % 4, rec, 2);
		}
		break;
	}
}

static void test_fuzz(int iters)
{
	static const uint64_t r0[] = { 20480, 2048, 5, 3 }, r1[] = { 100000, 77 };
	int it, bad_verdicts = 0, bad_json = 0, unrepaired = 0, repaired = 0, checks1 = 0;
	unsigned char base[sizeof(img)];
	size_t len;

	std_image(0);
	put_log(0, 7, r0, 2);
	put_log(1, 7, r1, 1);
	memcpy(base, img, sizeof(img));
	for (it = 0; it < iters; it++) {
		int rc, k;
		char *o;
		json_object *d;

		memcpy(img, base, sizeof(img));
		for (k = 1 + (int)(rnd() % 3); k; k--)
			mutate();
		len = rnd() % 10 ? sizeof(img) : (size_t)(rnd() % sizeof(img));	/* sometimes truncated */
		save(len);
		rc = tool("check", NULL, &o);
		if (rc != 0 && rc != 1) {
			bad_verdicts++;
			tap_diag("iteration %d: check exited %d", it, rc);
		}
		if (rc == 1 && !o[0]) {
			bad_verdicts++;
			tap_diag("iteration %d: check exited 1 without a problem line", it);
		}
		checks1 += rc == 1;
		free(o);
		rc = tool("dump", "--json", &o);
		d = json_tokener_parse(o);
		if ((rc != 0 && rc != 1) || !d)
			bad_json++;
		json_object_put(d);
		free(o);
		rc = tool("dump", NULL, NULL);
		if (rc != 0 && rc != 1)
			bad_verdicts++;
		rc = tool("repair", NULL, &o);
		free(o);
		if (rc == 0) {
			repaired++;
			if (tool("check", NULL, &o) != 0) {
				unrepaired++;
				tap_diag("iteration %d: check after repair: %s", it, o);
			}
			free(o);
		} else if (rc != 1) {
			bad_verdicts++;
			tap_diag("iteration %d: repair exited %d", it, rc);
		}
	}
	tap_ok(!bad_verdicts, "fuzz: %d images, every check/dump/repair exited 0 or 1 with reasons (%d with problems)",
	       iters, checks1);
	tap_ok(!bad_json, "fuzz: every dump --json is JSON");
	tap_ok(!unrepaired && repaired > iters / 4, "fuzz: each of %d repairs left an image that checks clean", repaired);
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 1000;

	/* repair syncs: a tmpfs keeps the loop quick */
	snprintf(path, sizeof(path), "%s/test-bsync-metadata.%d",
		 access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm", getpid());
	test_crc_layout();
	test_clean();
	test_log();
	test_slots();
	test_area();
	test_repair_log();
	test_truncated_and_usage();
	test_fuzz(iters);
	unlink(path);
	return tap_done();
}
