// SPDX-License-Identifier: GPL-2.0
/*
 * One instant across several bsync devices: gate_close holds a device's
 * write gate closed after the message, gate_open ends the hold. Writes
 * wait while held and reads do not; control messages act at the held
 * instant without opening it; a hold opens by itself at its timeout and
 * on suspend, and a removed device leaves no hold behind. Then the point
 * of it all: a writer alternating between two devices, each write after
 * the previous completed, and sessions started on both at a group instant
 * again and again; the two views always show a consistent cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "bsync_test.h"

#define NDEV	2
#define SIZE	(4 * MiB)
#define BLK	4096
#define NSLOT	256		/* the causality writer's blocks per device */
#define ROUNDS	20

static const char *const org[NDEV] = { "bt-grp-org0", "bt-grp-org1" };
static const char *const store[NDEV] = { "bt-grp-store0", "bt-grp-store1" };
static const char *const dev[NDEV] = { "bt-grp0", "bt-grp1" };
static const char *const view[NDEV] = { "bt-grp-view0", "bt-grp-view1" };

static const char *mapper(const char *name)
{
	static char buf[8][64];
	static int i;

	i = (i + 1) % 8;
	return bt_path(name, buf[i], sizeof(buf[i]));
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* Device i over a slice of disk 0, its store a slice of disk 1. */
static int make_devices(void)
{
	char p[256];
	int i, r = 0;

	for (i = 0; i < NDEV && !r; i++) {
		snprintf(p, sizeof(p), "%s %llu", bt_disk(0), i * (SIZE >> 9));
		r = dmctl_create(org[i], SIZE >> 9, "linear", p);
		snprintf(p, sizeof(p), "%s %llu", bt_disk(1), i * (SIZE >> 9));
		if (!r)
			r = dmctl_create(store[i], SIZE >> 9, "linear", p);
		if (!r)
			r = bt_create(dev[i], mapper(org[i]), "");
	}
	return r;
}

static void remove_devices(void)
{
	int i;

	for (i = 0; i < NDEV; i++) {
		if (dmctl_exists(view[i]) > 0)
			dmctl_remove(view[i]);
		if (dmctl_exists(dev[i]) > 0)
			dmctl_remove(dev[i]);
		if (dmctl_exists(store[i]) > 0)
			dmctl_remove(store[i]);
		if (dmctl_exists(org[i]) > 0)
			dmctl_remove(org[i]);
	}
}

/* One O_DIRECT write of a block of @val in a thread of its own. */
struct aw {
	const char *path;
	uint64_t off, val;
	pthread_t thread;
	atomic_bool done;
	int err;
};

static void *aw_fn(void *arg)
{
	struct aw *w = arg;
	uint64_t *buf = bt_alloc_aligned(BLK);
	int fd = open(w->path, O_WRONLY | O_DIRECT);
	size_t i;

	if (!buf || fd < 0) {
		w->err = -ENOMEM;
	} else {
		for (i = 0; i < BLK / sizeof(*buf); i++)
			buf[i] = w->val;
		w->err = bt_pwrite_full(fd, buf, BLK, w->off);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	atomic_store(&w->done, true);
	return NULL;
}

static int aw_start(struct aw *w, const char *name, uint64_t off, uint64_t val)
{
	w->path = mapper(name);
	w->off = off;
	w->val = val;
	w->err = 0;
	atomic_store(&w->done, false);
	return pthread_create(&w->thread, NULL, aw_fn, w);
}

/* Wait up to @ms for the write: its result, or -ETIMEDOUT (then still joined later). */
static int aw_wait(struct aw *w, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (!atomic_load(&w->done) && now_ms() < end)
		usleep(2000);
	if (!atomic_load(&w->done))
		return -ETIMEDOUT;
	pthread_join(w->thread, NULL);
	return w->err;
}

/* The first u64 of the block at @off, read with O_DIRECT; UINT64_MAX on error. */
static uint64_t read_val(const char *name, uint64_t off)
{
	uint64_t *buf = bt_alloc_aligned(BLK), v = UINT64_MAX;
	int fd = open(mapper(name), O_RDONLY | O_DIRECT);

	if (buf && fd >= 0 && !bt_pread_full(fd, buf, BLK, off))
		v = buf[0];
	if (fd >= 0)
		close(fd);
	free(buf);
	return v;
}

static int gate_status(const char *name, char *reply, size_t len)
{
	return bt_msg(name, reply, len, "gate_status");
}

FIXTURE(group) {
	uint64_t seed;
};

FIXTURE_SETUP(group)
{
	if (!bt_wanted(_metadata->name))
		BT_SKIP_SETUP("not in $BSYNC_TESTS");
	if (!bt_disk(0) || !bt_disk(1))
		BT_SKIP_SETUP("needs two scratch disks");
	self->seed = bt_seed();
	ASSERT_EQ(0, make_devices());
}

FIXTURE_TEARDOWN(group)
{
	remove_devices();
}

/* Writes to both devices wait until each one's gate opens; reads pass. */
TEST_F(group, writes_wait_for_open)
{
	struct aw w[NDEV];
	char st[128];
	int i;

	for (i = 0; i < NDEV; i++)
		ASSERT_EQ(0, bt_msg(dev[i], NULL, 0, "gate_close %d 10000", 11 + i));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=held token=11 expiries=0", st);
	for (i = 0; i < NDEV; i++)
		ASSERT_EQ(0, aw_start(&w[i], dev[i], 0, 0xa0 + i));
	usleep(300000);
	for (i = 0; i < NDEV; i++)
		EXPECT_FALSE(atomic_load(&w[i].done)) TH_LOG("a write to device %d passed a held gate", i);
	/* Reads are not held. */
	for (i = 0; i < NDEV; i++)
		EXPECT_NE(UINT64_MAX, read_val(dev[i], 64 * KiB));

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_open 11"));
	EXPECT_EQ(0, aw_wait(&w[0], 5000));
	usleep(100000);
	EXPECT_FALSE(atomic_load(&w[1].done)) TH_LOG("opening device 0 released device 1");
	ASSERT_EQ(0, bt_msg(dev[1], NULL, 0, "gate_open 12"));
	EXPECT_EQ(0, aw_wait(&w[1], 5000));
	for (i = 0; i < NDEV; i++) {
		EXPECT_EQ(0xa0ULL + i, read_val(dev[i], 0));
		ASSERT_EQ(0, gate_status(dev[i], st, sizeof(st)));
		EXPECT_STREQ("state=open expiries=0", st);
	}
}

/*
 * Messages that close the gate themselves act at the held instant and
 * leave it held: the write held before them lands after all of them, so
 * the bitmap added then records it and the session started then preserves
 * its cluster.
 */
TEST_F(group, messages_act_at_the_held_instant)
{
	struct bt_bitmap_info info;
	char st[256];
	struct aw w;

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 21 10000"));
	ASSERT_EQ(0, aw_start(&w, dev[0], 64 * KiB, 0x21));
	usleep(100000);
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "add x"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "clear x"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "disable x"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "enable x"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "add y"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "freeze y"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_start %s 64k none -", mapper(store[0])));
	usleep(100000);
	EXPECT_FALSE(atomic_load(&w.done)) TH_LOG("a message opened the held gate");
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=held token=21 expiries=0", st);

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_open 21"));
	ASSERT_EQ(0, aw_wait(&w, 5000));
	ASSERT_EQ(0, bt_bitmap_info(dev[0], "x", &info));
	EXPECT_EQ(64 * KiB, info.count);
	/* Frozen at the instant: the write went to its successor. */
	ASSERT_EQ(0, bt_bitmap_info(dev[0], "y", &info));
	EXPECT_EQ(0ULL, info.count);
	EXPECT_EQ(64 * KiB, info.succ_count);
	ASSERT_EQ(0, bt_msg(dev[0], st, sizeof(st), "session_status"));
	EXPECT_NE(NULL, strstr(st, " preserved=1 ")) TH_LOG("session_status: %s", st);
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_end"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "unfreeze y reclaim"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "remove x"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "remove y"));
}

/*
 * A session started and ended under one hold (bsyncd's rollback of a
 * transaction): the write held across both lands once the gate opens,
 * later writes pass, and a later session works.
 */
TEST_F(group, session_started_and_ended_under_a_hold)
{
	char st[256];
	struct aw w;

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 41 10000"));
	ASSERT_EQ(0, aw_start(&w, dev[0], 64 * KiB, 0x41));
	usleep(100000);
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_start %s 64k full -", mapper(store[0])));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_end"));
	EXPECT_FALSE(atomic_load(&w.done)) TH_LOG("a session message opened the held gate");
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_open 41"));
	ASSERT_EQ(0, aw_wait(&w, 5000));
	ASSERT_EQ(0, aw_start(&w, dev[0], 128 * KiB, 0x42));
	ASSERT_EQ(0, aw_wait(&w, 5000));
	EXPECT_EQ(0x41ULL, read_val(dev[0], 64 * KiB));
	EXPECT_EQ(0x42ULL, read_val(dev[0], 128 * KiB));

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_start %s 64k full -", mapper(store[0])));
	ASSERT_EQ(0, aw_start(&w, dev[0], 192 * KiB, 0x43));
	ASSERT_EQ(0, aw_wait(&w, 5000));
	ASSERT_EQ(0, bt_msg(dev[0], st, sizeof(st), "session_status"));
	EXPECT_NE(NULL, strstr(st, " preserved=1 ")) TH_LOG("session_status: %s", st);
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "session_end"));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=open expiries=0", st);
}

/* A hold nobody opens opens itself at its timeout; the token then reports it. */
TEST_F(group, hold_times_out)
{
	uint64_t t0, waited;
	char st[128];
	struct aw w;

	t0 = now_ms();
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 31 200"));
	ASSERT_EQ(0, aw_start(&w, dev[0], 0, 0x31));
	ASSERT_EQ(0, aw_wait(&w, 5000));
	waited = now_ms() - t0;
	TH_LOG("the held write completed %" PRIu64 " ms after gate_close", waited);
	/* Jiffies round the deadline by a tick at most. */
	EXPECT_LE(190ULL, waited);
	EXPECT_GT(3000ULL, waited);
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=open expiries=1", st);
	EXPECT_EQ(-ETIMEDOUT, bt_msg(dev[0], NULL, 0, "gate_open 31"));
	/* Reported once, then forgotten. */
	EXPECT_EQ(-ENOENT, bt_msg(dev[0], NULL, 0, "gate_open 31"));
	/* A fresh pair works. */
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 32 5000"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_open 32"));
	EXPECT_EQ(0x31ULL, read_val(dev[0], 0));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=open expiries=1", st);
}

TEST_F(group, errors)
{
	static const char bad[][48] = {
		"gate_close 0 100", "gate_close x 100", "gate_close -1 100",
		"gate_close 18446744073709551616 100", "gate_close 1 0", "gate_close 1 60001",
		"gate_close 1 -5", "gate_close 1 1s", "gate_close 1", "gate_close 1 100 2",
		"gate_open", "gate_open 0", "gate_open x", "gate_open 1 2", "gate_status x",
	};
	char st[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		EXPECT_EQ(-EINVAL, bt_msg(dev[0], NULL, 0, "%s", bad[i])) TH_LOG("%s", bad[i]);
	EXPECT_EQ(-ENOENT, bt_msg(dev[0], NULL, 0, "gate_open 5"));
	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 18446744073709551615 60000"));
	EXPECT_EQ(-EBUSY, bt_msg(dev[0], NULL, 0, "gate_close 8 1000"));
	EXPECT_EQ(-EBUSY, bt_msg(dev[0], NULL, 0, "gate_close 18446744073709551615 1000"));
	EXPECT_EQ(-ENOENT, bt_msg(dev[0], NULL, 0, "gate_open 8"));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=held token=18446744073709551615 expiries=0", st);
	/* The other device's gate is its own. */
	EXPECT_EQ(0, bt_msg(dev[1], NULL, 0, "gate_close 8 1000"));
	EXPECT_EQ(0, bt_msg(dev[1], NULL, 0, "gate_open 8"));
	EXPECT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_open 18446744073709551615"));
	EXPECT_EQ(-ENOENT, bt_msg(dev[0], NULL, 0, "gate_open 18446744073709551615"));
}

/*
 * Suspend ends a hold (DM waits for the writes it holds); removing a
 * device with a hold leaves no expiry behind to run on freed state.
 */
TEST_F(group, suspend_and_remove_end_a_hold)
{
	uint64_t t0;
	char st[128];
	struct aw w;
	int i;

	ASSERT_EQ(0, bt_msg(dev[0], NULL, 0, "gate_close 41 20000"));
	ASSERT_EQ(0, aw_start(&w, dev[0], 0, 0x41));
	usleep(100000);
	EXPECT_FALSE(atomic_load(&w.done));
	t0 = now_ms();
	ASSERT_EQ(0, dmctl_suspend(dev[0]));
	EXPECT_GT(5000ULL, now_ms() - t0) TH_LOG("suspend took %" PRIu64 " ms", now_ms() - t0);
	EXPECT_EQ(0, aw_wait(&w, 5000));
	ASSERT_EQ(0, dmctl_resume(dev[0]));
	EXPECT_EQ(-ETIMEDOUT, bt_msg(dev[0], NULL, 0, "gate_open 41"));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=open expiries=1", st);
	EXPECT_EQ(0x41ULL, read_val(dev[0], 0));

	for (i = 0; i < NDEV; i++) {
		ASSERT_EQ(0, bt_msg(dev[i], NULL, 0, "gate_close 42 300"));
		ASSERT_EQ(0, dmctl_remove(dev[i]));
	}
	/* Past the expiries of the removed holds. */
	usleep(500000);
	ASSERT_EQ(0, bt_create(dev[0], mapper(org[0]), ""));
	ASSERT_EQ(0, gate_status(dev[0], st, sizeof(st)));
	EXPECT_STREQ("state=open expiries=0", st);
}

/*
 * The causality writer: sequence number k goes to device k % 2, block
 * (k / 2) % NSLOT, each write issued after the previous one completed.
 */
struct seq_writer {
	pthread_t thread;
	atomic_bool stop;
	atomic_uint_fast64_t last;	/* the last sequence number completed */
	int err;
};

static void *seq_fn(void *arg)
{
	struct seq_writer *s = arg;
	uint64_t *buf = bt_alloc_aligned(BLK), k;
	int fd[NDEV], i;
	size_t j;

	for (i = 0; i < NDEV; i++)
		fd[i] = open(mapper(dev[i]), O_WRONLY | O_DIRECT);
	if (!buf || fd[0] < 0 || fd[1] < 0) {
		s->err = -ENOMEM;
		goto out;
	}
	for (k = 1; !atomic_load(&s->stop); k++) {
		for (j = 0; j < BLK / sizeof(*buf); j++)
			buf[j] = k;
		s->err = bt_pwrite_full(fd[k % 2], buf, BLK, (k / 2 % NSLOT) * BLK);
		if (s->err)
			break;
		atomic_store(&s->last, k);
	}
out:
	for (i = 0; i < NDEV; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(buf);
	return NULL;
}

/* The largest k <= m that the writer puts in block @slot of device @d, or 0. */
static uint64_t expected(uint64_t m, int d, uint64_t slot)
{
	uint64_t j;

	if (m < (uint64_t)d + 2 * slot)
		return 0;
	j = ((m - d) / 2 - slot) / NSLOT;
	return 2 * (slot + j * NSLOT) + d;
}

/* Read the writer's blocks of each view; -errno, or 0 and their values. */
static int read_views(uint64_t vals[NDEV][NSLOT])
{
	uint64_t *buf = bt_alloc_aligned(NSLOT * BLK);
	int i, fd, r = 0;
	size_t s;

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < NDEV && !r; i++) {
		fd = open(mapper(view[i]), O_RDONLY | O_DIRECT);
		if (fd < 0) {
			r = -errno;
			break;
		}
		r = bt_pread_full(fd, buf, NSLOT * BLK, 0);
		close(fd);
		for (s = 0; s < NSLOT && !r; s++) {
			vals[i][s] = buf[s * BLK / sizeof(*buf)];
			/* Torn: a block half before, half after. */
			if (buf[(s + 1) * BLK / sizeof(*buf) - 1] != vals[i][s])
				r = -EILSEQ;
		}
	}
	free(buf);
	return r;
}

/*
 * Sessions start on both devices at one group instant, twenty times under
 * the writer. The views must show exactly the writes 1..m for some m: a
 * write to one device that completed before a write to the other started
 * is never missing from a view that shows the later one. (The harness's
 * default 30 s is too short for twenty rounds on the debug kernel.)
 */
TEST_F_TIMEOUT(group, group_instant_is_a_consistent_cut, 300)
{
	static uint64_t vals[NDEV][NSLOT];
	struct seq_writer s = { 0 };
	uint64_t m, prev = 0, *zero = bt_alloc_aligned(NSLOT * BLK);
	unsigned int round, bad = 0, grew = 0;
	int i, fd;
	size_t slot;

	/* The writer's blocks start at 0, which is "no write yet". */
	ASSERT_NE(NULL, zero);
	memset(zero, 0, NSLOT * BLK);
	for (i = 0; i < NDEV; i++) {
		fd = open(mapper(dev[i]), O_WRONLY | O_DIRECT);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, bt_pwrite_full(fd, zero, NSLOT * BLK, 0));
		close(fd);
	}
	free(zero);

	ASSERT_EQ(0, pthread_create(&s.thread, NULL, seq_fn, &s));
	for (round = 0; round < ROUNDS && !s.err; round++) {
		uint64_t token = 1000 + round;

		usleep(10000);
		for (i = 0; i < NDEV; i++)
			ASSERT_EQ(0, bt_msg(dev[i], NULL, 0, "gate_close %" PRIu64 " 10000", token));
		/*
		 * The actions of a group take their time: writes must not
		 * pass between them. Each round starts the other device first.
		 */
		for (i = 0; i < NDEV; i++) {
			int d = (i + round) % NDEV;

			ASSERT_EQ(0, bt_msg(dev[d], NULL, 0, "session_start %s 4k none -",
					    mapper(store[d])));
			usleep(20000);
		}
		for (i = 0; i < NDEV; i++)
			ASSERT_EQ(0, bt_msg(dev[i], NULL, 0, "gate_open %" PRIu64, token));
		for (i = 0; i < NDEV; i++)
			ASSERT_EQ(0, dmctl_create_ro(view[i], SIZE >> 9, "bsync-snap",
						     mapper(dev[i])));
		ASSERT_EQ(0, read_views(vals));
		for (i = 0; i < NDEV; i++) {
			ASSERT_EQ(0, dmctl_remove(view[i]));
			ASSERT_EQ(0, bt_msg(dev[i], NULL, 0, "session_end"));
		}

		m = 0;
		for (i = 0; i < NDEV; i++)
			for (slot = 0; slot < NSLOT; slot++)
				m = vals[i][slot] > m ? vals[i][slot] : m;
		for (i = 0; i < NDEV; i++)
			for (slot = 0; slot < NSLOT; slot++) {
				if (vals[i][slot] == expected(m, i, slot))
					continue;
				if (!bad++)
					TH_LOG("round %u: the cut is at %" PRIu64 " but %s block %zu shows %" PRIu64 ", not %" PRIu64,
					       round, m, dev[i], slot, vals[i][slot],
					       expected(m, i, slot));
			}
		grew += m > prev;
		prev = m;
	}
	atomic_store(&s.stop, true);
	pthread_join(s.thread, NULL);
	EXPECT_EQ(0, s.err);
	EXPECT_EQ(0U, bad);
	/* The instants fell among the writes, not before them all. */
	EXPECT_LE(ROUNDS / 2U, grew);
	TH_LOG("%u rounds, the last cut at write %" PRIu64 " of %" PRIu64, round, prev,
	       (uint64_t)atomic_load(&s.last));
}

TEST_HARNESS_MAIN
