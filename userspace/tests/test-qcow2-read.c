// SPDX-License-Identifier: GPL-2.0
/*
 * The qcow2 reader on hostile input: an image written by our writer, then
 * damaged at random (bytes of its header, L1, L2 and refcount clusters, and
 * its length), is opened, checked and read whole, under ASan and UBSan.
 * Each run must end in a clean error or a read; none may crash, read out
 * of bounds or hang.  An undamaged image checks clean and reads as written.
 */
#include "test-qcow2-common.h"
#include "qcow2-read.h"

#define SIZE (1u << 20)
#define CS 4096u
#define RUNS 300

static uint8_t ref[SIZE];

static int make_image(const char *path)
{
	struct qcow2_create_opts o = { .virtual_size = SIZE, .cluster_size = CS };
	struct qcow2_image *img;
	char err[256];
	int cr, rc = qcow2_create(path, &o, &img, err, sizeof(err));

	if (rc)
		return rc;
	memset(ref, 0, sizeof(ref));
	for (uint64_t off = 0; off < SIZE && !rc; off += CS) {
		if (tq_below(3) == 0) {
			tq_fill(ref + off, CS);
			rc = qcow2_write_cluster(img, off, ref + off, CS);
		} else if (tq_below(2) == 0) {
			rc = qcow2_write_zero(img, off, CS);
		}
	}
	cr = qcow2_close(img, true, err, sizeof(err));
	return rc ? rc : cr;
}

/* Open, check and read the image at path; the outcome: 0 read, < 0 refused. */
static int exercise(const char *path, uint8_t *buf, struct qcow2_check *chk)
{
	struct qcow2_chain c;
	char failed[512], err[512];
	int rc = qcow2_chain_open(path, &c, failed, sizeof(failed), err, sizeof(err));

	memset(chk, 0, sizeof(*chk));
	if (!rc)
		rc = qcow2_reader_check(c.level[0].r, chk);
	if (!rc)
		rc = qcow2_chain_pread(&c, buf, c.level[0].size < SIZE ? c.level[0].size : SIZE, 0,
				       NULL, err, sizeof(err));
	qcow2_chain_close(&c);
	return rc;
}

int main(void)
{
	char path[512], copy[512];
	static uint8_t buf[SIZE], img[1u << 20];
	struct qcow2_check chk;
	int fd, refused = 0, corrupt = 0, clean = 0, disagree = 0, rc, q;
	ssize_t len;

	tq_setup("test-qcow2-read");
	tq_path(path, sizeof(path), "good.qcow2");
	tq_path(copy, sizeof(copy), "bad.qcow2");
	if (!tap_ok(make_image(path) == 0, "an image of 1 MiB, 4 KiB clusters, written"))
		return tap_done();
	rc = exercise(path, buf, &chk);
	tap_ok(rc == 0 && !chk.corruptions && !chk.leaks && chk.refcounts_checked &&
	       !memcmp(buf, ref, SIZE), "undamaged: checks clean, reads as written");
	fd = open(path, O_RDONLY);
	len = fd >= 0 ? read(fd, img, sizeof(img)) : -1;
	if (fd >= 0)
		close(fd);
	if (!tap_ok(len > 0 && (size_t)len < sizeof(img), "the image (%zd bytes) read", len))
		return tap_done();
	for (int run = 0; run < RUNS; run++) {
		static uint8_t bad[sizeof(img)];
		ssize_t blen = len;
		int n = 1 + (int)tq_below(8);

		memcpy(bad, img, (size_t)len);
		for (int k = 0; k < n; k++) {
			/* mostly metadata: the first clusters and the end of the file */
			uint64_t at = tq_below(2) ? tq_below(4 * CS) : (uint64_t)len - 1 - tq_below(4 * CS);

			bad[at % (uint64_t)len] ^= (uint8_t)(1u << tq_below(8));
		}
		if (tq_below(8) == 0)
			blen = (ssize_t)tq_below((uint64_t)len);	/* truncated */
		fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, bad, (size_t)blen) != blen) {
			tap_ok(0, "write the damaged copy");
			break;
		}
		close(fd);
		rc = exercise(copy, buf, &chk);
		if (rc < 0) {
			refused++;
			continue;
		}
		if (chk.corruptions ? ++corrupt > 40 : ++clean > 40)
			continue;
		/* qemu-img check must agree on the first 40 of each */
		q = tq_run("qemu-img check -q '%s'", copy);
		if (chk.corruptions ? q != 2 && q != 1 : q != 0 && q != 3) {
			disagree++;
			tap_diag("run %d: qemu-img check exits %d, we find %llu errors (%s): %s", run, q,
				 (unsigned long long)chk.corruptions, chk.first, tq_out);
		}
	}
	tap_ok(refused + corrupt + clean == RUNS,
	       "%d damaged copies: %d refused, %d found corrupt, %d clean, no crash", RUNS, refused,
	       corrupt, clean);
	tap_ok(refused + corrupt > RUNS / 2, "most damage is noticed");
	tap_ok(!disagree, "qemu-img check agrees on the first 40 copies we find clean and corrupt (%d disagree)",
	       disagree);
	tq_cleanup();
	return tap_done();
}
