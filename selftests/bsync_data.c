// SPDX-License-Identifier: GPL-2.0
/*
 * Data path: whatever is written through a bsync device lands on the
 * origin at the same offset, byte for byte, and reads back the same.
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

#define DEV "bt-data"

FIXTURE(data) {
	char path[64];
	const char *origin;
	uint64_t bytes;
	uint8_t *model;		/* what the origin must hold */
	int fd;			/* bsync device, O_DIRECT */
	int ofd;		/* origin, O_DIRECT */
	uint64_t rng;
};

FIXTURE_SETUP(data)
{
	self->origin = NULL;
	if (!bt_wanted(_metadata->name))
		BT_SKIP_SETUP("not in $BSYNC_TESTS");
	self->origin = bt_disk(0);
	if (!self->origin)
		BT_SKIP_SETUP("no scratch disk (run under scripts/vm-run --disk)");
	self->bytes = bt_dev_bytes(self->origin);
	ASSERT_GT(self->bytes, 8 * MiB);
	ASSERT_EQ(0, bt_create(DEV, self->origin, ""));
	bt_path(DEV, self->path, sizeof(self->path));
	self->fd = open(self->path, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->fd);
	self->ofd = open(self->origin, O_RDWR | O_DIRECT);
	ASSERT_LE(0, self->ofd);
	self->model = bt_alloc_aligned(self->bytes);
	ASSERT_NE(NULL, self->model);
	/* Start from whatever the origin holds. */
	ASSERT_EQ(0, bt_pread_full(self->ofd, self->model, self->bytes, 0));
	self->rng = bt_seed();
	TH_LOG("seed %" PRIu64 " (BSYNC_SEED reproduces)", self->rng);
}

FIXTURE_TEARDOWN(data)
{
	if (!self->origin)
		return;
	close(self->fd);
	close(self->ofd);
	free(self->model);
	EXPECT_EQ(0, bt_remove(DEV));
}

/* Sizes around the 64 KiB default cluster and up to 4 MiB. */
static uint64_t pick_size(uint64_t *rng)
{
	static const uint64_t sizes[] = {
		512, 4096, 64 * KiB - 512, 64 * KiB, 64 * KiB + 512, 128 * KiB,
		1 * MiB, 4 * MiB,
	};
	uint64_t r = bt_rand(rng);

	if (r % 4 == 0)
		return (1 + bt_rand(rng) % (8 * KiB)) * 512;	/* 512 B .. 4 MiB */
	return sizes[bt_rand(rng) % (sizeof(sizes) / sizeof(sizes[0]))];
}

static uint64_t pick_offset(uint64_t *rng, uint64_t bytes, uint64_t size)
{
	uint64_t off = bt_rand(rng) % (bytes - size + 1);

	if (bt_rand(rng) % 2)
		off &= ~(64 * KiB - 1);		/* cluster aligned */
	else
		off &= ~511ULL;			/* only sector aligned */
	return off;
}

static int compare(const uint8_t *want, const uint8_t *got, uint64_t len, uint64_t *at)
{
	/* memcmp() first: a byte loop over the device is slow under TCG */
	if (!memcmp(want, got, len))
		return 0;
	for (uint64_t i = 0; i < len; i++) {
		if (want[i] != got[i]) {
			*at = i;
			return -1;
		}
	}
	return 0;
}

/* Seconds of TCG when the host is busy: the harness's 30 s default is not. */
TEST_F_TIMEOUT(data, random_direct_writes_land_on_origin, 180)
{
	uint8_t *buf = bt_alloc_aligned(4 * MiB), *check = bt_alloc_aligned(self->bytes);
	uint64_t at = 0;
	int i;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, check);
	for (i = 0; i < 400; i++) {
		uint64_t size = pick_size(&self->rng);
		uint64_t off = pick_offset(&self->rng, self->bytes, size);

		for (uint64_t j = 0; j < size; j += 8)
			*(uint64_t *)(buf + j) = bt_rand(&self->rng);
		ASSERT_EQ(0, bt_pwrite_full(self->fd, buf, size, off)) {
			TH_LOG("write %d: %" PRIu64 "+%" PRIu64, i, off, size);
		}
		memcpy(self->model + off, buf, size);
		/* Read back at once, through the device. */
		ASSERT_EQ(0, bt_pread_full(self->fd, check, size, off));
		ASSERT_EQ(0, compare(buf, check, size, &at)) {
			TH_LOG("write %d: %" PRIu64 "+%" PRIu64 " reads back wrong at +%" PRIu64,
			       i, off, size, at);
		}
	}
	ASSERT_EQ(0, fsync(self->fd));

	ASSERT_EQ(0, bt_pread_full(self->ofd, check, self->bytes, 0));
	EXPECT_EQ(0, compare(self->model, check, self->bytes, &at)) {
		TH_LOG("origin differs from what was written at byte %" PRIu64, at);
	}
	ASSERT_EQ(0, bt_pread_full(self->fd, check, self->bytes, 0));
	EXPECT_EQ(0, compare(self->model, check, self->bytes, &at)) {
		TH_LOG("device reads differ from what was written at byte %" PRIu64, at);
	}
	free(buf);
	free(check);
}

TEST_F(data, write_zeroes_and_flush_pass_through)
{
	uint64_t range[2] = { 3 * MiB + 4096, 2 * MiB + 512 };
	uint8_t *buf = bt_alloc_aligned(range[1] + 4096);
	uint64_t at;

	ASSERT_NE(NULL, buf);
	memset(buf, 0xa5, range[1]);
	ASSERT_EQ(0, bt_pwrite_full(self->fd, buf, range[1], range[0]));
	ASSERT_EQ(0, ioctl(self->fd, BLKZEROOUT, range));
	ASSERT_EQ(0, fsync(self->fd));
	memset(self->model, 0, range[1]);
	ASSERT_EQ(0, bt_pread_full(self->ofd, buf, range[1], range[0]));
	EXPECT_EQ(0, compare(self->model, buf, range[1], &at)) {
		TH_LOG("origin not zeroed at +%" PRIu64, at);
	}
	free(buf);
}

TEST_HARNESS_MAIN
