// SPDX-License-Identifier: GPL-2.0
/*
 * Named dirty bitmaps: what dirties which cluster, merge, the successor
 * primitives backups use, refusals, reload and resize, allocation tracking.
 * Every expectation is checked against the test's own model.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "bsync_test.h"

#define DEV "bt-bm"
#define SIZE (64 * MiB)

FIXTURE(bm) {
	const char *origin;
	char path[64];
	uint64_t bytes;
	int fd;
	uint64_t rng;
	uint8_t *buf;
};

static int open_dev(FIXTURE_DATA(bm) *self)
{
	bt_path(DEV, self->path, sizeof(self->path));
	self->fd = open(self->path, O_RDWR | O_DIRECT);
	return self->fd < 0 ? -errno : 0;
}

static int make_dev(FIXTURE_DATA(bm) *self, uint64_t bytes, const char *features)
{
	char params[256];
	int r;

	snprintf(params, sizeof(params), "%s %s", self->origin, features);
	r = dmctl_create(DEV, bytes >> 9, "bsync", params);
	if (r)
		return r;
	self->bytes = bytes;
	return open_dev(self);
}

FIXTURE_SETUP(bm)
{
	self->fd = -1;
	self->origin = bt_disk(0);
	if (!self->origin)
		BT_SKIP_SETUP("no scratch disk (run under scripts/vm-run --disk)");
	self->rng = bt_seed();
	self->buf = bt_alloc_aligned(4 * MiB);
	ASSERT_NE(NULL, self->buf);
	memset(self->buf, 0x5a, 4 * MiB);
}

FIXTURE_TEARDOWN(bm)
{
	if (self->fd >= 0) {
		close(self->fd);
		EXPECT_EQ(0, bt_remove(DEV));
	}
	free(self->buf);
}

static void wr(FIXTURE_DATA(bm) *self, uint64_t off, uint64_t len)
{
	if (bt_pwrite_full(self->fd, self->buf, len, off))
		abort();
}

static uint64_t count(const char *bitmap)
{
	struct bt_bitmap_info i;

	if (bt_bitmap_info(DEV, bitmap, &i) || !i.found)
		return UINT64_MAX;
	return i.count;
}

static char *list(void)
{
	char *reply = NULL;

	dmctl_message(DEV, "list", &reply);
	return reply;
}

#define EXPECT_MODEL(m, bitmap) do {						\
	char _why[256] = "";							\
	EXPECT_EQ(0, bt_model_check_extents(m, DEV, bitmap, _why, sizeof(_why))) \
		TH_LOG("%s: %s", bitmap, _why);					\
	EXPECT_EQ(bt_model_count_bytes(m), count(bitmap));			\
} while (0)

TEST_F(bm, partial_adjacent_and_spanning_writes)
{
	static const struct { uint64_t off, len; } w[] = {
		{ 0, 512 },			/* partial, first cluster */
		{ 64 * KiB - 512, 512 },	/* same cluster, its end */
		{ 128 * KiB - 512, 1024 },	/* spans clusters 1 and 2 */
		{ 192 * KiB, 64 * KiB },	/* exactly cluster 3 */
		{ 256 * KiB, 64 * KiB },	/* adjacent: cluster 4 */
		{ 1 * MiB - 512, 1 * MiB + 1024 }, /* long, unaligned both ends */
		{ SIZE - 512, 512 },		/* last sector */
	};
	struct bt_model m64, m4;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a"));		/* default 64 KiB */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b 4k"));
	ASSERT_EQ(0, bt_model_init(&m64, SIZE, 64 * KiB));
	ASSERT_EQ(0, bt_model_init(&m4, SIZE, 4 * KiB));
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		wr(self, w[i].off, w[i].len);
		bt_model_mark(&m64, w[i].off, w[i].len);
		bt_model_mark(&m4, w[i].off, w[i].len);
		EXPECT_MODEL(&m64, "a");
		EXPECT_MODEL(&m4, "b");
	}
	/* Reads dirty nothing. */
	ASSERT_EQ(0, bt_pread_full(self->fd, self->buf, 4 * MiB, 8 * MiB));
	EXPECT_MODEL(&m64, "a");
	bt_model_free(&m64);
	bt_model_free(&m4);
}

TEST_F(bm, discard_and_write_zeroes_dirty)
{
	uint64_t zr[2] = { 5 * MiB + 4096, 200 * KiB };
	uint64_t dr[2] = { 9 * MiB, 1 * MiB };
	struct bt_model m;

	ASSERT_EQ(0, make_dev(self, SIZE, ""));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a 64k"));
	ASSERT_EQ(0, bt_model_init(&m, SIZE, 64 * KiB));
	ASSERT_EQ(0, ioctl(self->fd, BLKZEROOUT, zr));
	bt_model_mark(&m, zr[0], zr[1]);
	EXPECT_MODEL(&m, "a");
	if (ioctl(self->fd, BLKDISCARD, dr) == 0) {
		bt_model_mark(&m, dr[0], dr[1]);
		EXPECT_MODEL(&m, "a");
	} else {
		TH_LOG("origin has no discard (%s); discard not checked", strerror(errno));
	}
	bt_model_free(&m);
}

TEST_F(bm, last_partial_cluster_is_tracked)
{
	uint64_t bytes = SIZE - 3 * 512;	/* not a multiple of any granularity */
	struct bt_model m;

	ASSERT_EQ(0, make_dev(self, bytes, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a 1m"));
	ASSERT_EQ(0, bt_model_init(&m, bytes, 1 * MiB));
	wr(self, bytes - 512, 512);
	bt_model_mark(&m, bytes - 512, 512);
	EXPECT_MODEL(&m, "a");		/* the extent ends at the device end */
	EXPECT_EQ(1 * MiB, count("a"));
	bt_model_free(&m);
}

TEST_F(bm, random_bios_match_model_at_every_granularity)
{
	static const char *const names[] = { "g512", "g4k", "g64k", "g1m" };
	static const uint64_t grans[] = { 512, 4 * KiB, 64 * KiB, 1 * MiB };
	struct bt_model m[4], alloc;
	int i, n;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add %s %" PRIu64, names[i], grans[i]));
		ASSERT_EQ(0, bt_model_init(&m[i], SIZE, grans[i]));
	}
	ASSERT_EQ(0, bt_model_init(&alloc, SIZE, 64 * KiB));
	for (n = 0; n < 3000; n++) {
		uint64_t len = (1 + bt_rand(&self->rng) % 512) * 512;	/* up to 256 KiB */
		uint64_t off = (bt_rand(&self->rng) % ((SIZE - len) / 512 + 1)) * 512;

		wr(self, off, len);
		for (i = 0; i < 4; i++)
			bt_model_mark(&m[i], off, len);
		bt_model_mark(&alloc, off, len);
	}
	for (i = 0; i < 4; i++) {
		EXPECT_MODEL(&m[i], names[i]);
		bt_model_free(&m[i]);
	}
	{
		char why[256] = "";

		EXPECT_EQ(0, bt_model_check_extents(&alloc, DEV, NULL, why, sizeof(why)))
			TH_LOG("allocation map: %s", why);
	}
	bt_model_free(&alloc);
}

TEST_F(bm, merge_across_granularities)
{
	struct bt_model m64, m4;
	int n;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add src 4k"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add other 1m disabled"));
	ASSERT_EQ(0, bt_model_init(&m4, SIZE, 4 * KiB));
	ASSERT_EQ(0, bt_model_init(&m64, SIZE, 64 * KiB));
	for (n = 0; n < 200; n++) {
		uint64_t off = (bt_rand(&self->rng) % (SIZE / 512 - 8)) * 512;

		wr(self, off, 512 * (1 + n % 8));
		bt_model_mark(&m4, off, 512 * (1 + n % 8));
	}
	/* A 4 KiB source dirties every 64 KiB cluster it overlaps. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add dst 64k disabled"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "merge dst src other"));
	for (uint64_t c = 0; c < m4.nr; c++)
		if (m4.bits[c])
			bt_model_mark(&m64, c * m4.gran, m4.gran);
	EXPECT_MODEL(&m64, "dst");
	EXPECT_MODEL(&m4, "src");		/* the source is unchanged */
	/* And back: a 64 KiB source dirties 16 clusters of a 4 KiB target. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add fine 4k disabled"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "merge fine dst"));
	EXPECT_EQ(count("dst"), count("fine"));
	bt_model_free(&m4);
	bt_model_free(&m64);
}

TEST_F(bm, freeze_then_abdicate_reclaim_always)
{
	struct bt_bitmap_info i;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a"));
	wr(self, 0, 3 * 64 * KiB);				/* B0 = clusters 0-2 */

	/* Writes after the freeze go to the successor only. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a"));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "a", &i));
	EXPECT_TRUE(i.busy);
	EXPECT_TRUE(i.recording);
	EXPECT_TRUE(i.has_successor);
	EXPECT_EQ(0ULL, i.succ_count);
	wr(self, 10 * MiB, 64 * KiB);
	wr(self, 0, 512);					/* also in B0 */
	ASSERT_EQ(0, bt_bitmap_info(DEV, "a", &i));
	EXPECT_EQ(3 * 64 * KiB, i.count);
	EXPECT_EQ(2 * 64 * KiB, i.succ_count);
	/* abdicate: bitmap := successor */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a abdicate"));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "a", &i));
	EXPECT_FALSE(i.busy);
	EXPECT_FALSE(i.has_successor);
	EXPECT_EQ(2 * 64 * KiB, i.count);

	/* reclaim: bitmap := B0 | successor */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a"));
	wr(self, 20 * MiB, 64 * KiB);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a reclaim"));
	EXPECT_EQ(3 * 64 * KiB, count("a"));

	/* always: bitmap := successor | (B0 - copied) */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a bitmap"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "copied a 0 65536 %llu 65536", 20 * MiB));
	/* A range that covers no whole cluster copies nothing. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "copied a %llu 512", 10 * MiB));
	wr(self, 30 * MiB, 64 * KiB);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a always"));
	EXPECT_EQ(2 * 64 * KiB, count("a"));			/* 10M, 30M */

	/* always with "all": every cluster not copied comes back. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a all"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "copied a 0 %llu", SIZE - 64 * KiB));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a always"));
	EXPECT_EQ(64 * KiB, count("a"));

	/* always with "allocated": written clusters not copied come back. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "clear a"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a allocated"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a always"));
	EXPECT_EQ(6 * 64 * KiB, count("a"));		/* 0-2, 10M, 20M, 30M */
}

TEST_F(bm, disabled_bitmap_freeze_keeps_disabled)
{
	struct bt_bitmap_info i;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add d disabled"));
	wr(self, 0, 512);
	EXPECT_EQ(0ULL, count("d"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "enable d"));
	wr(self, 0, 512);
	EXPECT_EQ(64 * KiB, count("d"));
	/* Verbs in any case mean the same: CLEAR clears and leaves it recording. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "CLEAR d"));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "d", &i));
	EXPECT_EQ(0ULL, i.count);
	EXPECT_TRUE(i.recording);
	wr(self, 0, 512);
	EXPECT_EQ(64 * KiB, count("d"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "disable d"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze d"));
	wr(self, 1 * MiB, 512);
	ASSERT_EQ(0, bt_bitmap_info(DEV, "d", &i));
	EXPECT_FALSE(i.recording);
	EXPECT_FALSE(i.succ_recording);
	EXPECT_EQ(0ULL, i.succ_count);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze d abdicate"));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "d", &i));
	EXPECT_FALSE(i.recording);
	EXPECT_EQ(0ULL, i.count);
}

TEST_F(bm, busy_bitmap_refuses_changes)
{
	static const char *const refused[] = {
		"clear a", "remove a", "enable a", "disable a", "merge a b", "merge b a",
		"freeze a",
	};
	char *before, *after;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b"));
	wr(self, 0, 512);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a"));
	before = list();
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		EXPECT_EQ(-EBUSY, bt_msg(DEV, NULL, 0, "%s", refused[i]))
			TH_LOG("%s", refused[i]);
	}
	after = list();
	EXPECT_STREQ(before, after);
	free(before);
	free(after);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a reclaim"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "remove a"));
}

TEST_F(bm, bad_messages_fail_precisely_and_change_nothing)
{
	static const struct { const char *msg; int err; } bad[] = {
		{ "frobnicate", EINVAL },
		{ "add", EINVAL },
		{ "add a", EEXIST },
		{ "add x 3000", EINVAL },		/* not a power of two */
		{ "add x 256", ERANGE },		/* below 512 */
		{ "add x 2g", ERANGE },			/* above 1 GiB */
		{ "add x 64k 64k", EINVAL },		/* granularity twice */
		{ "add x disabled disabled", EINVAL },
		{ "add x bogus", EINVAL },
		{ "add x/y", EINVAL },			/* bad character */
		{ "add x 64k disabled extra", EINVAL },
		{ "remove", EINVAL },
		{ "remove nosuch", ENOENT },
		{ "remove a b", EINVAL },
		{ "clear nosuch", ENOENT },
		{ "enable nosuch", ENOENT },
		{ "merge a", EINVAL },
		{ "merge a nosuch", ENOENT },
		{ "merge nosuch a", ENOENT },
		{ "freeze nosuch", ENOENT },
		{ "freeze a sideways", EINVAL },
		{ "unfreeze a abdicate", EINVAL },	/* not frozen */
		{ "unfreeze a", EINVAL },
		{ "copied a 0 512", EINVAL },		/* not frozen */
		{ "extents a", EINVAL },
		{ "extents a 100", EINVAL },		/* not sector aligned */
		{ "extents a 0 0", EINVAL },
		{ "extents nosuch 0", ENOENT },
		{ "alloc_extents x", EINVAL },
		{ "list extra", EINVAL },
	};
	char longname[200], *before, *after, st1[512], st2[512];
	struct dmctl_table t;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a"));
	wr(self, 0, 4096);
	before = list();
	ASSERT_EQ(0, dmctl_status(DEV, false, &t));
	snprintf(st1, sizeof(st1), "%s", t.params);
	dmctl_table_free(&t);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		EXPECT_EQ(-bad[i].err, bt_msg(DEV, NULL, 0, "%s", bad[i].msg))
			TH_LOG("message \"%s\"", bad[i].msg);
	}
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	EXPECT_EQ(-ENAMETOOLONG, bt_msg(DEV, NULL, 0, "add %s", longname));
	/* copied: only on a frozen bitmap, ranges sector aligned and inside. */
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze a"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "copied a 0"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "copied a 0 100"));
	EXPECT_EQ(-ERANGE, bt_msg(DEV, NULL, 0, "copied a %llu 512", SIZE));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "unfreeze a sideways"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze a reclaim"));
	after = list();
	EXPECT_STREQ(before, after);
	ASSERT_EQ(0, dmctl_status(DEV, false, &t));
	snprintf(st2, sizeof(st2), "%s", t.params);
	dmctl_table_free(&t);
	EXPECT_STREQ(st1, st2);
	free(before);
	free(after);
}

TEST_F(bm, reload_and_resize_keep_state)
{
	struct dmctl_table t;
	char *before, *after, params[256];
	struct bt_model m;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add a"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b 4k disabled"));
	ASSERT_EQ(0, bt_model_init(&m, 2 * SIZE, 64 * KiB));
	for (int n = 0; n < 50; n++) {
		uint64_t off = (bt_rand(&self->rng) % (SIZE / 4096)) * 4096;

		wr(self, off, 4096);
		bt_model_mark(&m, off, 4096);
	}
	/* The TABLE status is a line the constructor accepts. */
	ASSERT_EQ(0, dmctl_status(DEV, true, &t));
	snprintf(params, sizeof(params), "%s", t.params);
	dmctl_table_free(&t);
	EXPECT_NE(NULL, strstr(params, " 1 zeroed"));
	before = list();
	ASSERT_EQ(0, dmctl_reload(DEV, SIZE >> 9, "bsync", params));
	after = list();
	EXPECT_STREQ(before, after);
	free(after);

	/* Grow: bits kept, new space tracked. */
	ASSERT_EQ(0, dmctl_reload(DEV, 2 * SIZE >> 9, "bsync", params));
	m.dev_bytes = 2 * SIZE;
	wr(self, 2 * SIZE - 4096, 4096);
	bt_model_mark(&m, 2 * SIZE - 4096, 4096);
	EXPECT_MODEL(&m, "a");

	/* Shrink: bits past the end are gone. */
	ASSERT_EQ(0, dmctl_reload(DEV, SIZE / 2 >> 9, "bsync", params));
	m.dev_bytes = SIZE / 2;
	m.nr = m.dev_bytes / m.gran;
	EXPECT_MODEL(&m, "a");

	/* Another origin would lose the bitmaps: refused. */
	if (bt_disk(1)) {
		snprintf(params, sizeof(params), "%s 1 zeroed", bt_disk(1));
		EXPECT_EQ(-EINVAL, dmctl_reload(DEV, SIZE / 2 >> 9, "bsync", params));
	}
	EXPECT_MODEL(&m, "a");
	free(before);
	bt_model_free(&m);
}

TEST_F(bm, allocation_map_starts_full_unless_zeroed)
{
	struct bt_model m;
	char why[256] = "";

	ASSERT_EQ(0, make_dev(self, SIZE, ""));
	ASSERT_EQ(0, bt_model_init(&m, SIZE, 64 * KiB));
	bt_model_mark(&m, 0, SIZE);
	EXPECT_EQ(0, bt_model_check_extents(&m, DEV, NULL, why, sizeof(why))) TH_LOG("%s", why);
	close(self->fd);
	self->fd = -1;
	ASSERT_EQ(0, bt_remove(DEV));

	ASSERT_EQ(0, make_dev(self, SIZE, "3 zeroed alloc_granularity 1m"));
	bt_model_free(&m);
	ASSERT_EQ(0, bt_model_init(&m, SIZE, 1 * MiB));
	EXPECT_EQ(0, bt_model_check_extents(&m, DEV, NULL, why, sizeof(why))) TH_LOG("%s", why);
	wr(self, 5 * MiB + 512, 512);
	bt_model_mark(&m, 5 * MiB + 512, 512);
	EXPECT_EQ(0, bt_model_check_extents(&m, DEV, NULL, why, sizeof(why))) TH_LOG("%s", why);
	bt_model_free(&m);
}

TEST_F(bm, many_bitmaps_and_long_replies)
{
	char *reply = NULL;
	int i, lines = 0;

	ASSERT_EQ(0, make_dev(self, SIZE, "1 zeroed"));
	for (i = 0; i < 64; i++)
		ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add bitmap-with-a-long-name-%02d 512", i));
	EXPECT_EQ(-ENOSPC, bt_msg(DEV, NULL, 0, "add one-too-many"));
	ASSERT_EQ(0, dmctl_message(DEV, "list", &reply));
	for (char *p = reply; (p = strchr(p, '\n')); p++)
		lines++;
	EXPECT_EQ(64, lines);
	free(reply);
	/* Every other sector dirty: the extents reply is bounded and continues. */
	for (i = 0; i < 2000; i++)
		wr(self, (uint64_t)i * 1024, 512);
	{
		struct bt_model m;
		char why[256] = "";

		ASSERT_EQ(0, bt_model_init(&m, SIZE, 512));
		for (i = 0; i < 2000; i++)
			bt_model_mark(&m, (uint64_t)i * 1024, 512);
		EXPECT_EQ(0, bt_model_check_extents(&m, DEV, "bitmap-with-a-long-name-07",
						    why, sizeof(why))) TH_LOG("%s", why);
		bt_model_free(&m);
	}
	ASSERT_EQ(0, dmctl_message(DEV, "extents bitmap-with-a-long-name-00 0 65536", &reply));
	EXPECT_NE(NULL, strchr(reply, ':'));
	free(reply);
}

TEST_HARNESS_MAIN
