// SPDX-License-Identifier: GPL-2.0
/*
 * Writers hammer a bsync device (threads of our own plus fio) while the
 * control path adds, removes, clears, merges, freezes and unfreezes
 * bitmaps. Afterwards every cluster written since a bitmap was last
 * cleared must be dirty in it: no write may slip between a bitmap and its
 * successor, or past a clear that returned before the write was issued.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "bsync_test.h"

#define DEV "bt-conc"
#define SIZE (64 * MiB)
#define WRITERS 3
#define MAX_LOG 200000

struct wlog {
	uint64_t off, len;
	unsigned int epoch;	/* epoch read before the write was issued */
};

struct shared {
	const char *path;
	atomic_uint epoch;
	atomic_bool stop;
	struct wlog *log[WRITERS];
	unsigned int n[WRITERS];
	uint64_t seed;
};

struct writer {
	struct shared *sh;
	int id;
};

static void *writer_fn(void *arg)
{
	struct writer *w = arg;
	struct shared *sh = w->sh;
	uint64_t rng = sh->seed + w->id * 7919 + 1;
	uint8_t *buf = bt_alloc_aligned(128 * KiB);
	int fd = open(sh->path, O_WRONLY | O_DIRECT);

	if (fd < 0 || !buf)
		return (void *)1;
	memset(buf, w->id, 128 * KiB);
	while (!atomic_load(&sh->stop) && sh->n[w->id] < MAX_LOG) {
		uint64_t len = (1 + bt_rand(&rng) % 256) * 512;
		uint64_t off = (bt_rand(&rng) % ((SIZE - len) / 512)) * 512;
		struct wlog *l = &sh->log[w->id][sh->n[w->id]];

		l->epoch = atomic_load(&sh->epoch);
		l->off = off;
		l->len = len;
		if (bt_pwrite_full(fd, buf, len, off))
			return (void *)2;
		sh->n[w->id]++;
	}
	close(fd);
	free(buf);
	return NULL;
}

/* Parse fio's write_iolog: version 3 lines are "<usec> <file> write <offset> <length>". */
static int mark_iolog(const char *file, struct bt_model *m)
{
	char line[512], fn[256], act[32];
	uint64_t usec, off, len;
	int n = 0;
	FILE *f = fopen(file, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNu64 " %255s %31s %" SCNu64 " %" SCNu64,
			   &usec, fn, act, &off, &len) == 5 && !strcmp(act, "write")) {
			bt_model_mark(m, off, len);
			n++;
		}
	}
	fclose(f);
	return n;
}

struct collect {
	struct bt_model *m;
};

static void collect_fn(uint64_t off, uint64_t len, void *arg)
{
	bt_model_mark(((struct collect *)arg)->m, off, len);
}

static int missing(const struct bt_model *want, const char *bitmap, uint64_t *first)
{
	struct bt_model have;
	struct collect c = { &have };
	int n = 0;

	if (bt_model_init(&have, want->dev_bytes, want->gran) ||
	    bt_extents(DEV, bitmap, 1000, collect_fn, &c))
		return -1;
	for (uint64_t i = 0; i < want->nr; i++) {
		if (want->bits[i] && !have.bits[i]) {
			if (!n++)
				*first = i * want->gran;
		}
	}
	bt_model_free(&have);
	return n;
}

/* No state of its own: a fixture only for TEST_F_TIMEOUT (a debug kernel takes >30 s). */
FIXTURE(conc) {
	int unused;
};

FIXTURE_SETUP(conc) { }
FIXTURE_TEARDOWN(conc) { }

TEST_F_TIMEOUT(conc, bitmaps_lose_no_write_under_concurrent_control, 300)
{
	struct shared sh = { 0 };
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	const char *origin = bt_disk(0);
	char path[64], fio[1024];
	struct bt_model keep, churn;
	unsigned int churn_since = 0, ops = 0;
	uint64_t rng, first = 0;
	int i, fio_st, n;

	if (!origin)
		SKIP(return, "no scratch disk");
	sh.seed = rng = bt_seed();
	TH_LOG("seed %" PRIu64, sh.seed);
	ASSERT_EQ(0, dmctl_create(DEV, SIZE >> 9, "bsync", origin));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add keep 64k"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add churn 4k"));
	sh.path = bt_path(DEV, path, sizeof(path));

	/*
	 * Two fio jobs as background load, each in its own process so that
	 * each logs its writes to its own file for the check.
	 */
	for (i = 0; i < 2; i++) {
		snprintf(fio, sizeof(fio),
			 "fio --name=load%d --filename=%s --rw=randwrite --bsrange=%s --direct=1 "
			 "--ioengine=libaio --iodepth=16 --time_based --runtime=8 "
			 "--write_iolog=/tmp/conc-fio%d.log >/tmp/conc-fio%d.out 2>&1 &",
			 i, path, i ? "512-16k" : "4k-64k", i, i);
		ASSERT_EQ(0, bt_sh("%s", fio));
	}
	for (i = 0; i < WRITERS; i++) {
		sh.log[i] = calloc(MAX_LOG, sizeof(struct wlog));
		ASSERT_NE(NULL, sh.log[i]);
		w[i].sh = &sh;
		w[i].id = i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, writer_fn, &w[i]));
	}

	/* The control loop: every operation a backup tool or admin may do. */
	for (time_t end = time(NULL) + 8; time(NULL) < end; ops++) {
		switch (bt_rand(&rng) % 8) {
		case 0:
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "clear churn"));
			churn_since = atomic_fetch_add(&sh.epoch, 1) + 1;
			break;
		case 1:	/* a backup that fails: keep loses nothing */
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze keep"));
			usleep(2000);
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze keep reclaim"));
			break;
		case 2: { /* a backup that succeeds: churn := writes since the freeze */
			unsigned int e;

			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze churn"));
			e = atomic_fetch_add(&sh.epoch, 1) + 1;
			usleep(2000);
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze churn abdicate"));
			churn_since = e;
			break;
		}
		case 3: { /* "always" after a partial copy */
			unsigned int e;

			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "freeze churn all"));
			e = atomic_fetch_add(&sh.epoch, 1) + 1;
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "copied churn 0 %llu", SIZE / 2));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze churn always"));
			churn_since = e;
			break;
		}
		case 4:
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add tmp%u 512", ops));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "merge tmp%u churn keep", ops));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "remove tmp%u", ops));
			break;
		case 5:
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add t%u 1m", ops));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "disable t%u", ops));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "enable t%u", ops));
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "remove t%u", ops));
			break;
		case 6:
			ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "merge keep churn"));
			break;
		default: {
			char reply[4096];

			ASSERT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "list"));
			break;
		}
		}
	}
	atomic_store(&sh.stop, true);
	for (i = 0; i < WRITERS; i++) {
		void *ret;

		ASSERT_EQ(0, pthread_join(th[i], &ret));
		ASSERT_EQ(NULL, ret);
	}
	fio_st = bt_sh("wait; while pgrep -x fio >/dev/null; do sleep 0.2; done");
	ASSERT_EQ(0, fio_st);
	TH_LOG("%u control operations; writers did %u/%u/%u writes", ops, sh.n[0], sh.n[1], sh.n[2]);

	ASSERT_EQ(0, bt_model_init(&keep, SIZE, 64 * KiB));
	ASSERT_EQ(0, bt_model_init(&churn, SIZE, 4 * KiB));
	for (i = 0; i < WRITERS; i++) {
		for (unsigned int j = 0; j < sh.n[i]; j++) {
			bt_model_mark(&keep, sh.log[i][j].off, sh.log[i][j].len);
			if (sh.log[i][j].epoch >= churn_since)
				bt_model_mark(&churn, sh.log[i][j].off, sh.log[i][j].len);
		}
		free(sh.log[i]);
	}
	for (i = 0; i < 2; i++) {
		char log[64];

		snprintf(log, sizeof(log), "/tmp/conc-fio%d.log", i);
		n = mark_iolog(log, &keep);
		EXPECT_LT(100, n) TH_LOG("fio job %d logged only %d writes", i, n);
	}

	n = missing(&keep, "keep", &first);
	EXPECT_EQ(0, n) TH_LOG("keep misses %d written clusters, first at %" PRIu64, n, first);
	n = missing(&churn, "churn", &first);
	EXPECT_EQ(0, n) TH_LOG("churn misses %d clusters written since its last clear, first at %" PRIu64,
			       n, first);
	bt_model_free(&keep);
	bt_model_free(&churn);
	EXPECT_EQ(0, bt_remove(DEV));
}

TEST_HARNESS_MAIN
