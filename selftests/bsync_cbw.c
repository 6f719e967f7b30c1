// SPDX-License-Identifier: GPL-2.0
/*
 * Copy-before-write sessions and the bsync-snap view.
 *
 * The device is filled with random data and remembered; a session starts;
 * fio writes, discards and write-zeroes land all over the device while a
 * reader copies the view in random order. Every cluster the backup needs
 * must read back as it was at the start. Then the failure policies: a full
 * store, a failing store, a failing origin, a stuck store, and ending or
 * removing things while I/O is in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "bsync_test.h"

#define ORG	"bt-cbw-org"
#define STORE	"bt-cbw-store"
#define DEV	"bt-cbw"
#define VIEW	"bt-cbw-view"
#define SIZE	(64 * MiB)

static const char *mapper(const char *name)
{
	static char buf[4][64];
	static int i;

	i = (i + 1) % 4;
	return bt_path(name, buf[i], sizeof(buf[i]));
}

/*
 * fio runs in the background, its pid kept so that it is waited for and
 * killed directly: polling with pgrep costs a process start each time.
 */
static pid_t fio_pid;

static int fio_spawn(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -EINVAL;
	fio_pid = fork();
	if (fio_pid < 0)
		return -errno;
	if (fio_pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return 0;
}

static int fio_start(unsigned int secs)
{
	return fio_spawn("exec fio --ioengine=libaio --direct=1 --time_based --runtime=%u "
			 "--filename=%s --randrepeat=0 --name=w --rw=randwrite --bsrange=512-1m "
			 "--iodepth=8 --name=t --rw=randtrim --bsrange=4k-256k --iodepth=2 "
			 ">/tmp/cbw-fio.out 2>&1", secs, mapper(DEV));
}

static void fio_kill(void)
{
	if (fio_pid <= 0)
		return;
	kill(fio_pid, SIGTERM);
	waitpid(fio_pid, NULL, 0);
	fio_pid = 0;
}

/* 0 if fio exited 0 and every job reported err= 0. */
static int fio_wait(void)
{
	char out[16384], *p;
	unsigned int jobs = 0;
	ssize_t n;
	int st, fd;

	if (fio_pid <= 0 || waitpid(fio_pid, &st, 0) != fio_pid)
		return -1;
	fio_pid = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	fd = open("/tmp/cbw-fio.out", O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, out, sizeof(out) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	for (p = strstr(out, "err="); p; p = strstr(p, "err=")) {
		p += 4;
		if (strtol(p, &p, 10))
			return -1;
		jobs++;
	}
	return jobs ? 0 : -1;
}

/* ORG: 64 MiB of disk 0; STORE: the given table on disk 1; DEV: bsync on ORG. */
static int make_devices(const char *store_type, const char *store_params, uint64_t store_bytes)
{
	char p[256];
	int r;

	snprintf(p, sizeof(p), "%s 0", bt_disk(0));
	r = dmctl_create(ORG, SIZE >> 9, "linear", p);
	if (!r)
		r = dmctl_create(STORE, store_bytes >> 9, store_type, store_params);
	if (!r)
		r = bt_create(DEV, mapper(ORG), "");
	return r;
}

static void remove_devices(void)
{
	fio_kill();
	dmctl_remove(VIEW);
	dmctl_remove(DEV);
	dmctl_remove(STORE);
	dmctl_remove(ORG);
}

static int view_create(void)
{
	return dmctl_create_ro(VIEW, SIZE >> 9, "bsync-snap", mapper(DEV));
}

/*
 * Fill the first @len bytes of the device with random data; returns the
 * device's content as a SIZE buffer (zero past @len, not to be compared).
 */
static uint8_t *fill_random(uint64_t seed, uint64_t len)
{
	uint8_t *img = bt_alloc_aligned(SIZE);
	uint64_t rng = seed, *w;
	int fd = open(mapper(DEV), O_WRONLY | O_DIRECT);

	if (!img || fd < 0)
		return NULL;
	memset(img + len, 0, SIZE - len);
	for (w = (uint64_t *)img; w < (uint64_t *)(img + len); w++)
		*w = bt_rand(&rng);
	if (bt_pwrite_full(fd, img, len, 0)) {
		free(img);
		img = NULL;
	}
	close(fd);
	return img;
}

static int status_field(const char *key, char *val, size_t len)
{
	char reply[1024], *p;
	size_t n;
	int r = bt_msg(DEV, reply, sizeof(reply), "session_status");

	if (r)
		return r;
	p = strstr(reply, key);
	if (!p || p[strlen(key)] != '=')
		return -ENOENT;
	p += strlen(key) + 1;
	n = strcspn(p, " ");
	snprintf(val, len, "%.*s", (int)(n < len ? n : len - 1), p);
	return 0;
}

static uint64_t status_u64(const char *key)
{
	char v[64];

	return status_field(key, v, sizeof(v)) ? UINT64_MAX : strtoull(v, NULL, 10);
}

static bool state_is(const char *state, const char *reason)
{
	char s[64], why[64];

	if (status_field("state", s, sizeof(s)) || strcmp(s, state))
		return false;
	return !reason || (!status_field("reason", why, sizeof(why)) && !strcmp(why, reason));
}

/* Background writers: fio (writes of 512 B..1 MiB, discards) and write-zeroes. */
struct zeroer {
	atomic_bool stop;
	uint64_t seed;
	int errors;
};

static void *zeroer_fn(void *arg)
{
	struct zeroer *z = arg;
	uint64_t rng = z->seed, range[2];
	int fd = open(mapper(DEV), O_WRONLY);

	if (fd < 0)
		return (void *)1;
	while (!atomic_load(&z->stop)) {
		range[1] = (1 + bt_rand(&rng) % 512) * 512;
		range[0] = (bt_rand(&rng) % ((SIZE - range[1]) / 512)) * 512;
		if (ioctl(fd, BLKZEROOUT, range))
			z->errors++;
		usleep(20000);
	}
	close(fd);
	return NULL;
}

struct pit {
	uint64_t cluster;
	const char *set;	/* full, bitmap, none */
	unsigned int secs;
};

FIXTURE(cbw) {
	uint64_t seed;
	uint8_t *img;
};

FIXTURE_SETUP(cbw)
{
	if (!bt_wanted(_metadata->name))
		BT_SKIP_SETUP("not in $BSYNC_TESTS");
	if (!bt_disk(0) || !bt_disk(1))
		BT_SKIP_SETUP("needs two scratch disks");
	self->seed = bt_seed();
	self->img = NULL;
	TH_LOG("seed %" PRIu64, self->seed);
}

FIXTURE_TEARDOWN(cbw)
{
	remove_devices();
	free(self->img);
}

/* Read cluster @c of the view and compare it with the image; 0, 1 (differs) or -errno. */
static int check_cluster(int vfd, const uint8_t *img, uint8_t *buf, uint64_t cluster, uint64_t c)
{
	int r = bt_pread_full(vfd, buf, cluster, c * cluster);

	if (r)
		return r;
	return memcmp(buf, img + c * cluster, cluster) ? 1 : 0;
}

/*
 * Read the view in 1 MiB requests, several clusters each, for @secs seconds
 * while the load's copy-before-write moves clusters from the origin to the
 * store under them: every byte must equal the start. Counts as
 * point_in_time() does.
 */
static void read_in_runs(int vfd, const uint8_t *img, uint64_t cluster, unsigned int secs,
			 unsigned int *bad, uint64_t *first_bad, unsigned int *errors)
{
	uint8_t *buf = bt_alloc_aligned(MiB);
	time_t end = time(NULL) + secs;
	uint64_t off = 0;

	if (!buf) {
		(*errors)++;
		return;
	}
	while (time(NULL) < end) {
		if (bt_pread_full(vfd, buf, MiB, off))
			(*errors)++;
		else if (memcmp(buf, img + off, MiB) && !(*bad)++)
			*first_bad = off / cluster;
		off = (off + MiB) % SIZE;
	}
	free(buf);
}

/*
 * The point-in-time test: which clusters the backup needs depends on the
 * set; the reader copies those in random order while the load runs and
 * each must equal the content at the start.
 */
static void point_in_time(struct __test_metadata *_metadata, FIXTURE_DATA(cbw) *self,
			  const struct pit *t)
{
	uint64_t nr = SIZE / t->cluster, rng = self->seed, n = 0, i, j, tmp;
	uint8_t *buf = bt_alloc_aligned(t->cluster);
	uint8_t *needed = calloc(nr, 1);
	uint64_t *order = calloc(nr, sizeof(*order));
	struct zeroer z = { .seed = self->seed ^ 0x5a5a };
	bool bitmap = !strcmp(t->set, "bitmap"), none = !strcmp(t->set, "none");
	unsigned int bad = 0, errors = 0;
	uint64_t first_bad = 0;
	char store[256];
	pthread_t zt;
	void *ret;
	int fd, vfd, r;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, needed);
	ASSERT_NE(NULL, order);
	snprintf(store, sizeof(store), "%s 0", bt_disk(1));
	ASSERT_EQ(0, make_devices("linear", store, SIZE));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b0 64k"));
	self->img = fill_random(self->seed, SIZE);
	ASSERT_NE(NULL, self->img);

	if (bitmap) {
		/* Only some clusters changed since the last backup. */
		ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "clear b0"));
		fd = open(mapper(DEV), O_WRONLY | O_DIRECT);
		ASSERT_LE(0, fd);
		for (i = 0; i < 64; i++) {
			j = bt_rand(&rng) % nr;
			memset(self->img + j * t->cluster, 0xa0 + i, t->cluster);
			ASSERT_EQ(0, bt_pwrite_full(fd, self->img + j * t->cluster,
						    t->cluster, j * t->cluster));
			needed[j] = 1;
		}
		close(fd);
	} else {
		memset(needed, 1, nr);
	}
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_start %s %" PRIu64 " %s %s",
			    mapper(STORE), t->cluster, t->set, bitmap ? "b0" : "-"));
	ASSERT_EQ(0, view_create());
	vfd = open(mapper(VIEW), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, vfd);

	for (i = 0; i < nr; i++)
		if (needed[i] && !none)
			order[n++] = i;
	for (i = n; i > 1; i--) {
		j = bt_rand(&rng) % i;
		tmp = order[i - 1];
		order[i - 1] = order[j];
		order[j] = tmp;
	}

	ASSERT_EQ(0, fio_start(t->secs));
	ASSERT_EQ(0, pthread_create(&zt, NULL, zeroer_fn, &z));
	/* Copy the needed clusters over the whole load, spread out. */
	for (i = 0; i < n; i++) {
		usleep(t->secs * 1000000ULL / n / 2);
		r = check_cluster(vfd, self->img, buf, t->cluster, order[i]);
		if (r < 0)
			errors++;
		if (r > 0 && !bad++)
			first_bad = order[i];
		ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_done %" PRIu64 " %" PRIu64,
				    order[i] * t->cluster, t->cluster));
	}
	if (none)
		read_in_runs(vfd, self->img, t->cluster, t->secs, &bad, &first_bad, &errors);
	EXPECT_EQ(0, fio_wait()) TH_LOG("fio reported errors, see /tmp/cbw-fio.out");
	atomic_store(&z.stop, true);
	ASSERT_EQ(0, pthread_join(zt, &ret));
	EXPECT_EQ(NULL, ret);
	EXPECT_EQ(0, z.errors);

	if (none) {
		/* Nothing was copied during the load: the whole view is the past. */
		for (i = 0; i < nr; i++) {
			r = check_cluster(vfd, self->img, buf, t->cluster, i);
			if (r < 0)
				errors++;
			if (r > 0 && !bad++)
				first_bad = i;
		}
	}
	if (bitmap) {
		/* A cluster the backup does not need cannot be read from the past. */
		for (i = 0; i < nr && needed[i]; i++)
			;
		EXPECT_NE(0, bt_pread_full(vfd, buf, t->cluster, i * t->cluster));
	}
	EXPECT_EQ(0U, errors) TH_LOG("%u view reads failed", errors);
	EXPECT_EQ(0U, bad) TH_LOG("%u clusters differ from the start, first %" PRIu64, bad,
				 first_bad);
	EXPECT_TRUE(state_is("active", "-"));
	if (!bitmap)
		EXPECT_LT(0ULL, status_u64("preserved"));
	TH_LOG("needed %" PRIu64 " copied %" PRIu64 " preserved %" PRIu64 " delayed %" PRIu64
	       " delay_us %" PRIu64, status_u64("needed"), status_u64("copied"),
	       status_u64("preserved"), status_u64("delayed"), status_u64("delay_us"));
	close(vfd);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	if (bitmap)
		ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze b0 abdicate"));
	free(buf);
	free(needed);
	free(order);
}

/*
 * Load seconds: 8 for the main case, 3 for the variants, or
 * $BSYNC_CBW_SECS for all (the mutation check runs shorter).
 */
static unsigned int load_secs(unsigned int dflt)
{
	const char *e = getenv("BSYNC_CBW_SECS");

	return e ? (unsigned int)strtoul(e, NULL, 10) : dflt;
}

TEST_F_TIMEOUT(cbw, point_in_time_full_64k, 300)
{
	struct pit t = { 64 * KiB, "full", load_secs(8) };

	point_in_time(_metadata, self, &t);
}

TEST_F_TIMEOUT(cbw, point_in_time_full_256k, 300)
{
	struct pit t = { 256 * KiB, "full", load_secs(3) };

	point_in_time(_metadata, self, &t);
}

TEST_F_TIMEOUT(cbw, point_in_time_full_1m, 300)
{
	struct pit t = { 1 * MiB, "full", load_secs(3) };

	point_in_time(_metadata, self, &t);
}

TEST_F_TIMEOUT(cbw, point_in_time_bitmap, 300)
{
	struct pit t = { 64 * KiB, "bitmap", load_secs(3) };

	point_in_time(_metadata, self, &t);
}

TEST_F_TIMEOUT(cbw, point_in_time_none, 300)
{
	struct pit t = { 64 * KiB, "none", load_secs(3) };

	point_in_time(_metadata, self, &t);
}

/*
 * Failure policies, ending and removal, refusals
 */

/*
 * A session over a device with the given store; the view is open. The
 * cases below write and read clusters 0-149 only: the first SIMPLE_FILL
 * bytes are filled.
 */
#define SIMPLE_FILL	(16 * MiB)

static void start_simple(struct __test_metadata *_metadata, FIXTURE_DATA(cbw) *self,
			 const char *store_type, const char *store_params, uint64_t store_bytes,
			 const char *options)
{
	ASSERT_EQ(0, make_devices(store_type, store_params, store_bytes));
	self->img = fill_random(self->seed, SIMPLE_FILL);
	ASSERT_NE(NULL, self->img);
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_start %s 65536 full - %s", mapper(STORE),
			    options));
	ASSERT_EQ(0, view_create());
}

/* Write 4 KiB at the start of clusters [first, first + n); how many failed. */
static int write_clusters(uint64_t first, unsigned int n, int *err)
{
	uint8_t *buf = bt_alloc_aligned(4096);
	int fd = open(mapper(DEV), O_WRONLY | O_DIRECT), failed = 0;
	unsigned int i;

	memset(buf, 0xee, 4096);
	for (i = 0; i < n; i++) {
		if (pwrite(fd, buf, 4096, (first + i) * 64 * KiB) != 4096) {
			*err = errno;
			failed++;
		}
	}
	close(fd);
	free(buf);
	return failed;
}

/* Compare clusters [first, first + n) of the view with the image; mismatches or -1. */
static int view_matches(const uint8_t *img, uint64_t first, unsigned int n)
{
	uint8_t *buf = bt_alloc_aligned(64 * KiB);
	int fd = open(mapper(VIEW), O_RDONLY | O_DIRECT), bad = 0;
	unsigned int i;

	if (fd < 0)
		return -1;
	for (i = 0; i < n; i++)
		bad += check_cluster(fd, img, buf, 64 * KiB, first + i) != 0;
	close(fd);
	free(buf);
	return bad;
}

static bool view_read_fails(uint64_t cluster)
{
	uint8_t *buf = bt_alloc_aligned(64 * KiB);
	int fd = open(mapper(VIEW), O_RDONLY | O_DIRECT);
	bool failed = fd < 0 || pread(fd, buf, 64 * KiB, cluster * 64 * KiB) >= 0 ? false : true;

	if (fd >= 0)
		close(fd);
	free(buf);
	return failed;
}

/* The store may stay busy until copies still in flight land. */
static int remove_when_idle(const char *name)
{
	int i, r = -EBUSY;

	for (i = 0; i < 200 && r; i++) {
		r = dmctl_remove(name);
		if (r)
			usleep(100000);
	}
	return r;
}

static char store_line[256];

static const char *disk1(const char *fmt)
{
	snprintf(store_line, sizeof(store_line), fmt, bt_disk(1));
	return store_line;
}

TEST_F(cbw, store_full_breaks_snapshot)
{
	int err = 0;

	/* 16 clusters of store for 40 first writes. */
	start_simple(_metadata, self, "linear", disk1("%s 0"), 1 * MiB, "");
	EXPECT_EQ(0, write_clusters(100, 40, &err));
	EXPECT_TRUE(state_is("broken", "enospc"));
	EXPECT_TRUE(view_read_fails(0));
	EXPECT_EQ(16ULL, status_u64("preserved"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

TEST_F(cbw, store_full_fails_guest_writes)
{
	int err = 0;

	start_simple(_metadata, self, "linear", disk1("%s 0"), 1 * MiB,
		     "on_error=break-guest-write");
	EXPECT_EQ(24, write_clusters(100, 40, &err));
	EXPECT_EQ(EIO, err);
	EXPECT_TRUE(state_is("active", "-"));
	/* The snapshot is intact: preserved and never-written clusters alike. */
	EXPECT_EQ(0, view_matches(self->img, 90, 60));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

TEST_F(cbw, store_error_breaks_snapshot)
{
	int err = 0;

	start_simple(_metadata, self, "flakey", disk1("%s 0 0 1 1 error_writes"), SIZE, "");
	EXPECT_EQ(0, write_clusters(7, 3, &err));
	EXPECT_TRUE(state_is("broken", "store-eio"));
	EXPECT_TRUE(view_read_fails(7));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

TEST_F(cbw, store_error_fails_guest_write_then_retries)
{
	int err = 0;

	start_simple(_metadata, self, "flakey", disk1("%s 0 0 1 1 error_writes"), SIZE,
		     "on_error=break-guest-write");
	EXPECT_EQ(3, write_clusters(7, 3, &err));
	EXPECT_EQ(EIO, err);
	EXPECT_TRUE(state_is("active", "-"));
	/* The store recovers: the same writes now preserve and pass. */
	ASSERT_EQ(0, dmctl_reload(STORE, SIZE >> 9, "linear", disk1("%s 0")));
	EXPECT_EQ(0, write_clusters(7, 3, &err));
	EXPECT_EQ(3ULL, status_u64("preserved"));
	EXPECT_EQ(0, view_matches(self->img, 0, 16));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

TEST_F(cbw, origin_read_error_breaks_snapshot)
{
	char p[256];
	int err = 0;

	start_simple(_metadata, self, "linear", disk1("%s 0"), SIZE, "");
	/* From now on the origin fails every I/O. */
	snprintf(p, sizeof(p), "%s 0 0 1", bt_disk(0));
	ASSERT_EQ(0, dmctl_reload(ORG, SIZE >> 9, "flakey", p));
	write_clusters(3, 1, &err);
	EXPECT_TRUE(state_is("broken", "origin-eio"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

TEST_F(cbw, origin_read_error_fails_guest_write)
{
	char p[256];
	int err = 0;

	start_simple(_metadata, self, "linear", disk1("%s 0"), SIZE,
		     "on_error=break-guest-write");
	snprintf(p, sizeof(p), "%s 0 0 1", bt_disk(0));
	ASSERT_EQ(0, dmctl_reload(ORG, SIZE >> 9, "flakey", p));
	EXPECT_EQ(1, write_clusters(3, 1, &err));
	EXPECT_TRUE(state_is("active", "-"));
	EXPECT_EQ(0ULL, status_u64("preserved"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A store that takes 4 s per write: the cbw timeout (300 ms) must apply. */
TEST_F_TIMEOUT(cbw, stuck_store_times_out_and_breaks_snapshot, 120)
{
	double t0;
	int err = 0;

	start_simple(_metadata, self, "delay", disk1("%s 0 4000"), SIZE, "timeout_ms=300");
	t0 = now();
	EXPECT_EQ(0, write_clusters(9, 1, &err));
	EXPECT_GT(3.0, now() - t0) TH_LOG("the write waited for the stuck copy");
	EXPECT_TRUE(state_is("broken", "timeout"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(0, dmctl_remove(VIEW));
	EXPECT_EQ(0, remove_when_idle(STORE));
}

TEST_F_TIMEOUT(cbw, stuck_store_times_out_and_fails_guest_write, 120)
{
	double t0;
	int err = 0;

	start_simple(_metadata, self, "delay", disk1("%s 0 4000"), SIZE,
		     "on_error=break-guest-write timeout_ms=300");
	t0 = now();
	EXPECT_EQ(1, write_clusters(9, 1, &err));
	EXPECT_EQ(EIO, err);
	EXPECT_GT(3.0, now() - t0) TH_LOG("the write waited for the stuck copy");
	EXPECT_TRUE(state_is("active", "-"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(0, dmctl_remove(VIEW));
	EXPECT_EQ(0, remove_when_idle(STORE));
}

/* Ending while fio's writes are held for copies: all complete, none fails. */
TEST_F(cbw, end_with_writes_in_flight)
{
	char status[64];
	uint64_t delayed = 0;
	int i;

	start_simple(_metadata, self, "linear", disk1("%s 0"), SIZE, "");
	ASSERT_EQ(0, fio_spawn("exec fio --ioengine=libaio --direct=1 --time_based --runtime=4 "
			       "--filename=%s --name=w --rw=randwrite --bs=4k --iodepth=32 "
			       ">/tmp/cbw-fio.out 2>&1", mapper(DEV)));
	/* End only once writes are being held for copies (fio starts slowly). */
	for (i = 0; i < 500 && !(delayed = status_u64("delayed")); i++)
		usleep(20000);
	EXPECT_NE(UINT64_MAX, delayed);
	EXPECT_LT(0ULL, delayed) TH_LOG("no write was held for a copy within 10 s");
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(0, fio_wait()) TH_LOG("fio reported errors, see /tmp/cbw-fio.out");
	EXPECT_EQ(0, bt_msg(DEV, status, sizeof(status), "session_status"));
	EXPECT_STREQ("state=none", status);
	EXPECT_TRUE(view_read_fails(0));
}

/* The device goes away under a live session and view: clean, no crash. */
TEST_F(cbw, remove_device_with_live_session)
{
	int err = 0;

	start_simple(_metadata, self, "linear", disk1("%s 0"), SIZE, "");
	EXPECT_EQ(0, write_clusters(5, 2, &err));
	EXPECT_NE(0, bt_sh("rmmod dm_bsync 2>/dev/null")) TH_LOG("module unloaded under a view");
	EXPECT_EQ(0, dmctl_remove(DEV));
	EXPECT_TRUE(view_read_fails(5));
	EXPECT_EQ(0, dmctl_remove(VIEW));
}

/*
 * One view read over clusters that route differently, each run going on as
 * one bio: needed clusters from the origin (0-3, 8, 10-11), preserved ones
 * from the store (4-5 written in order, then 7 before 6), and cluster 9,
 * which the backup copied. Every byte read equals the start; a read that
 * covers cluster 9 fails, and the clusters after it still read.
 */
TEST_F(cbw, view_read_spans_routes)
{
	const uint64_t c = 64 * KiB;
	uint8_t *buf = bt_alloc_aligned(9 * c);
	int err = 0, fd;

	ASSERT_NE(NULL, buf);
	start_simple(_metadata, self, "linear", disk1("%s 0"), SIZE, "");
	EXPECT_EQ(0, write_clusters(4, 2, &err));
	EXPECT_EQ(0, write_clusters(7, 1, &err));
	EXPECT_EQ(0, write_clusters(6, 1, &err));
	EXPECT_EQ(4ULL, status_u64("preserved"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_done %" PRIu64 " %" PRIu64, 9 * c, c));
	fd = open(mapper(VIEW), O_RDONLY | O_DIRECT);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, bt_pread_full(fd, buf, 9 * c, 0));
	EXPECT_EQ(0, memcmp(buf, self->img, 9 * c));
	/* From inside a preserved cluster to inside a needed one. */
	EXPECT_EQ(0, bt_pread_full(fd, buf, 4 * c, 4 * c + 4096));
	EXPECT_EQ(0, memcmp(buf, self->img + 4 * c + 4096, 4 * c));
	EXPECT_NE(0, bt_pread_full(fd, buf, 3 * c, 8 * c));
	EXPECT_EQ(0, bt_pread_full(fd, buf, 2 * c, 10 * c));
	EXPECT_EQ(0, memcmp(buf, self->img + 10 * c, 2 * c));
	close(fd);
	free(buf);
}

TEST_F(cbw, preserved_extents_list_cbw_copies)
{
	char reply[256];
	int err = 0;

	ASSERT_EQ(0, make_devices("linear", disk1("%s 0"), SIZE));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_start %s 64k none", mapper(STORE)));
	EXPECT_EQ(0, write_clusters(0, 1, &err));
	EXPECT_EQ(0, write_clusters(5, 2, &err));
	EXPECT_EQ(0, write_clusters(5, 2, &err));
	EXPECT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "preserved_extents 0"));
	EXPECT_STREQ("0:65536 327680:131072 end", reply);
	EXPECT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "preserved_extents 65536 1"));
	EXPECT_STREQ("327680:131072 end", reply);
	/* Done clusters leave the list and free their store slots. */
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_done 327680 65536"));
	EXPECT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "preserved_extents 0"));
	EXPECT_STREQ("0:65536 393216:65536 end", reply);
	EXPECT_EQ(2 * 64 * KiB, status_u64("store_used"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
}

/* A bitmap frozen with the session ends by the sync rule, "always" here. */
TEST_F(cbw, bitmap_frozen_at_session_start)
{
	struct bt_bitmap_info info;
	char reply[256], want[256];
	int err = 0;

	ASSERT_EQ(0, make_devices("linear", disk1("%s 0"), SIZE));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b0 64k"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_start %s 64k full b0", mapper(STORE)));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "b0", &info));
	EXPECT_TRUE(info.busy);
	EXPECT_EQ(-EBUSY, bt_msg(DEV, NULL, 0, "clear b0"));
	/* The backup copied the first half; then a write lands in it. */
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_done 0 %llu", SIZE / 2));
	EXPECT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "session_extents 0"));
	snprintf(want, sizeof(want), "%llu:%llu end", SIZE / 2, SIZE / 2);
	EXPECT_STREQ(want, reply);
	/* Preserved clusters stay wanted until done. */
	EXPECT_EQ(0, write_clusters(SIZE / 2 / (64 * KiB) + 1, 1, &err));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_done %llu %llu", SIZE / 2, 64 * KiB));
	EXPECT_EQ(0, bt_msg(DEV, reply, sizeof(reply), "session_extents 0 1"));
	snprintf(want, sizeof(want), "%llu:%llu end", SIZE / 2 + 64 * KiB, SIZE / 2 - 64 * KiB);
	EXPECT_STREQ(want, reply);
	EXPECT_EQ(0, write_clusters(2, 1, &err));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze b0 always"));
	ASSERT_EQ(0, bt_bitmap_info(DEV, "b0", &info));
	/* What the backup did not copy, and the write after the start (cluster 2). */
	EXPECT_EQ(SIZE / 2, info.count);
	EXPECT_FALSE(info.busy);
}

TEST_F(cbw, refusals)
{
	char p[256];
	int fd;

	ASSERT_EQ(0, make_devices("linear", disk1("%s 0"), SIZE));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add b0 64k"));
	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "add big 1m"));
	EXPECT_NE(0, view_create()) TH_LOG("a view without a session");
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_done 0 65536"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "preserved_extents 0"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k full -", mapper(DEV)));
	EXPECT_NE(0, bt_msg(DEV, NULL, 0, "session_start %s 64k full -", mapper(ORG)));
	EXPECT_NE(0, bt_msg(DEV, NULL, 0, "session_start /dev/nonexistent 64k full -"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 3000 full -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 2k full -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 128m full -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k bogus -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k bitmap -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k bitmap big", mapper(STORE)));
	EXPECT_EQ(-ENOENT, bt_msg(DEV, NULL, 0, "session_start %s 64k bitmap nope", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k full - on_error=ignore",
				  mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_start %s 64k full - timeout_ms=x",
				  mapper(STORE)));
	/* None of the refused starts left anything behind. */
	EXPECT_EQ(0, bt_msg(DEV, p, sizeof(p), "session_status"));
	EXPECT_STREQ("state=none", p);

	ASSERT_EQ(0, bt_msg(DEV, NULL, 0, "session_start %s 64k bitmap b0", mapper(STORE)));
	EXPECT_EQ(-EBUSY, bt_msg(DEV, NULL, 0, "session_start %s 64k full -", mapper(STORE)));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_done 0"));
	EXPECT_EQ(-EINVAL, bt_msg(DEV, NULL, 0, "session_done 1 512"));
	EXPECT_EQ(-ERANGE, bt_msg(DEV, NULL, 0, "session_done 0 %llu", SIZE * 2));
	/* The view is read-only. */
	EXPECT_NE(0, dmctl_create(VIEW, SIZE >> 9, "bsync-snap", mapper(DEV)));
	EXPECT_NE(0, dmctl_create_ro(VIEW, SIZE >> 9, "bsync-snap", "/dev/nonexistent"));
	snprintf(p, sizeof(p), "%s extra", mapper(DEV));
	EXPECT_NE(0, dmctl_create_ro(VIEW, SIZE >> 9, "bsync-snap", p));
	EXPECT_NE(0, dmctl_create_ro(VIEW, SIZE >> 8, "bsync-snap", mapper(DEV)));
	ASSERT_EQ(0, view_create());
	fd = open(mapper(VIEW), O_RDWR);
	if (fd >= 0) {
		uint8_t buf[512] = { 0 };

		EXPECT_GT(0, pwrite(fd, buf, sizeof(buf), 0)) TH_LOG("wrote to the view");
		close(fd);
	}
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "session_end"));
	EXPECT_EQ(0, bt_msg(DEV, NULL, 0, "unfreeze b0 reclaim"));
}

TEST_HARNESS_MAIN
