// SPDX-License-Identifier: GPL-2.0
/*
 * The writer's per-cluster checksum record (lib/qcow2-sums.h) and XXH64:
 * values the reference library (libxxhash) gives; a record
 * holds one right checksum per data cluster however the clusters were
 * written (copied, O_DIRECT, pieces, the disk's partial last cluster) and
 * none for zero clusters; it is complete only when the image is; an
 * aborted image takes its record with it; a damaged header is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xxh64.h"
#include "qcow2.h"
#include "qcow2-sums.h"
#include "tap.h"
#include "test-qcow2-common.h"

#define CS 65536u
#define SIZE (8 * 1024 * 1024 + 4096)	/* a partial last cluster */

static void test_hash(void)
{
	uint8_t b[1000];

	for (int i = 0; i < 1000; i++)
		b[i] = (uint8_t)(i * 131 + 7);
	/* the values libxxhash's XXH64() gives (checked against it when written) */
	tap_ok(xxh64("", 0, 0) == 0xef46db3751d8e999ull && xxh64("abc", 3, 0) == 0x44bc2cf5ad770999ull &&
	       xxh64(b, 1000, 0) == 0x0bf0bdbcc82eb373ull,
	       "XXH64 of \"\", \"abc\" and 1000 patterned bytes: the reference values");
	tap_ok(xxh64(b + 1, 999, 0) != xxh64(b, 999, 0) && xxh64(b, 999, 1) != xxh64(b, 999, 0),
	       "a shifted buffer or another seed hash differently");
}

/* The image at path written: data runs by qcow2_write_sparse (O_DIRECT), single clusters
 * copied, zeroes, and the partial last cluster; the data kept in ref (SIZE bytes). */
static int write_image(const char *path, uint8_t *ref, bool complete, bool abort_it)
{
	struct qcow2_create_opts o = { .virtual_size = SIZE, .cluster_size = CS };
	struct qcow2_image *img;
	uint8_t *buf = aligned_alloc(4096, 1 << 20);
	bool zero[16] = { false, false, true, false };
	char err[512];
	int rc;

	memset(ref, 0, SIZE);
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	if (!rc)
		rc = qcow2_enable_sums(img, err, sizeof(err));
	if (rc) {
		tap_diag("%s", err);
		free(buf);
		return rc;
	}
	tq_fill(buf, 1 << 20);
	memcpy(ref, buf, 1 << 20);
	memset(ref + 2 * CS, 0, CS);
	rc = qcow2_write_sparse(img, 0, buf, 1 << 20, zero);		/* 15 data, 1 zero */
	tq_fill(buf, CS);
	memcpy(ref + (3u << 20), buf, CS);
	rc = rc ?: qcow2_write_cluster(img, 3u << 20, buf, CS);	/* copied */
	rc = rc ?: qcow2_write_zero(img, 4u << 20, 1 << 20);
	tq_fill(buf, 4096);
	memcpy(ref + SIZE - 4096, buf, 4096);
	rc = rc ?: qcow2_write_cluster(img, SIZE - 4096, buf, 4096);	/* the disk's end */
	free(buf);
	if (abort_it) {
		qcow2_abort_and_unlink(img);
		return rc;
	}
	return qcow2_close(img, complete, err, sizeof(err)) ?: rc;
}

static void test_record(void)
{
	uint8_t *ref = malloc(SIZE);
	char path[512], sums[600];
	struct qcow2_sums s;
	char err[512];
	size_t right = 0;

	tq_path(path, sizeof(path), "a.qcow2");
	qcow2_sums_path(path, sums, sizeof(sums));
	tap_ok(write_image(path, ref, true, false) == 0 && tq_check(path) == 0,
	       "an image written with a record; qemu-img check finds it clean");
	tap_ok(qcow2_sums_load(path, &s, err, sizeof(err)) == 1 && s.complete && s.n == 17 &&
	       s.cluster_size == CS && s.virtual_size == SIZE,
	       "its record: complete, 17 data clusters, the geometry %s", err);
	for (size_t i = 0; i < s.n; i++) {
		uint64_t off = s.e[i].off, n = SIZE - off < CS ? SIZE - off : CS;

		right += s.e[i].hash == qcow2_sum_of(ref + off, n);
	}
	tap_ok(right == s.n && s.n && !qcow2_sums_find(&s, 2 * CS) && !qcow2_sums_find(&s, 4u << 20) &&
	       qcow2_sums_find(&s, SIZE - 4096),
	       "each checksum is its cluster's (%zu of %zu), none for zero clusters, the last one "
	       "over the bytes up to the disk's end", right, s.n);
	qcow2_sums_free(&s);
	{
		int fd = open(sums, O_RDWR);
		uint8_t b = 0x5a;

		tap_ok(fd >= 0 && pwrite(fd, &b, 1, 21) == 1 &&
		       qcow2_sums_load(path, &s, err, sizeof(err)) == -EUCLEAN,
		       "a record whose header was changed is refused: %s", err);
		if (fd >= 0)
			close(fd);
	}
	unlink(path);
	unlink(sums);

	tap_ok(write_image(path, ref, false, false) == 0 &&
	       qcow2_sums_load(path, &s, err, sizeof(err)) == 1 && !s.complete && s.n == 17,
	       "an image closed incomplete: its record says so (state 0), its entries kept");
	qcow2_sums_free(&s);
	unlink(path);
	unlink(sums);
	tap_ok(write_image(path, ref, true, true) == 0 && access(path, F_OK) && access(sums, F_OK),
	       "an aborted image takes its record with it");
	tap_ok(qcow2_sums_load(path, &s, err, sizeof(err)) == 0, "no record: 0");
	free(ref);
}

int main(void)
{
	tq_setup("test-qcow2-sums");
	test_hash();
	test_record();
	tq_cleanup();
	return tap_done();
}
