// SPDX-License-Identifier: GPL-2.0
/*
 * The partial-backup record (qcow2-partial.c): a partial image is a
 * well-formed qcow2 that QEMU opens read/write, its record survives QEMU's
 * own header rewrites (qemu-img rebase -u), and the backing file name is
 * moved behind it intact.
 */
#include "test-qcow2-common.h"
#include "qcow2-internal.h"

static char err[1024], text[QCOW2_TEXT_MAX];

/* A 4 MiB image with cluster 0 written, closed with the record text. */
static int partial_image(const char *path, const char *backing, const char *note)
{
	struct qcow2_create_opts o = { .virtual_size = 4 << 20, .backing_file = backing };
	struct qcow2_image *img;
	static uint8_t buf[65536];
	int rc;

	memset(buf, 0x5a, sizeof(buf));
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	if (rc)
		return rc;
	rc = qcow2_write_cluster(img, 0, buf, sizeof(buf));
	if (!rc && note)
		rc = qcow2_set_partial(img, note);
	if (rc) {
		qcow2_abort_and_unlink(img);
		return rc;
	}
	return qcow2_close(img, true, err, sizeof(err));
}

static void test_standalone(void)
{
	char path[512];
	int rc;

	tq_path(path, sizeof(path), "p0.qcow2");
	rc = partial_image(path, NULL, "job=j0\nresult=failed\nerror=Input/output error\n");
	tap_ok(!rc, "a partial image closes (%s)", rc ? err : "");
	tap_ok(tq_check(path) == 0, "qemu-img check passes (%s)", tq_out);
	tap_ok(tq_run("qemu-img info --output=json '%s'", path) == 0 &&
	       strstr(tq_out, "\"corrupt\": false"), "not marked corrupt");
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == 0, "qcow2_check_complete: complete");
	rc = qcow2_read_partial(path, text, sizeof(text), err, sizeof(err));
	tap_ok(rc == 1 && !strcmp(text, "job=j0\nresult=failed\nerror=Input/output error\n"),
	       "the record reads back (%d: %s)", rc, rc < 0 ? err : text);
	tap_ok(tq_run("qemu-io -f qcow2 -c 'write -P 7 64k 64k' '%s'", path) == 0,
	       "QEMU opens it read/write (%s)", tq_out);
	rc = qcow2_read_partial(path, text, sizeof(text), err, sizeof(err));
	tap_ok(rc == 1 && tq_check(path) == 0, "QEMU's header rewrite keeps the record and a clean image");
}

static void test_rebase_keeps(void)
{
	char base[512], top[512], other[512];
	int rc;

	tq_path(base, sizeof(base), "base.qcow2");
	tq_path(top, sizeof(top), "top.qcow2");
	tq_path(other, sizeof(other), "other.qcow2");
	rc = partial_image(base, NULL, NULL);
	rc = rc ? rc : partial_image(other, NULL, NULL);
	rc = rc ? rc : partial_image(top, "base.qcow2", "job=j1\nresult=cancelled\n");
	tap_ok(!rc, "a chain base <- partial top is written (%s)", rc ? err : "");
	tap_ok(qcow2_read_partial(base, text, sizeof(text), err, sizeof(err)) == 0 && !text[0],
	       "a complete image carries no record");
	tap_ok(tq_run("qemu-img info --output=json '%s'", top) == 0 &&
	       strstr(tq_out, "\"backing-filename\": \"base.qcow2\""),
	       "the backing file name is intact behind the record (%s)", tq_out);
	tap_ok(tq_run("qemu-img rebase -u -b other.qcow2 -F qcow2 '%s'", top) == 0,
	       "qemu-img rebase -u accepts the partial image (%s)", tq_out);
	rc = qcow2_read_partial(top, text, sizeof(text), err, sizeof(err));
	tap_ok(rc == 1 && !strcmp(text, "job=j1\nresult=cancelled\n"),
	       "the record survives rebase -u (%d: %s)", rc, rc < 0 ? err : text);
	tap_ok(tq_check(top) == 0 && tq_run("qemu-img info --output=json '%s'", top) == 0 &&
	       strstr(tq_out, "\"backing-filename\": \"other.qcow2\""), "rebased, consistent");
}

/* An image made by qemu-img (mode=existing) with a backing file and its format. */
static void test_existing(void)
{
	char path[512];
	struct qcow2_image *img = NULL;
	int rc;

	tq_path(path, sizeof(path), "ex.qcow2");
	rc = partial_image(tq_path(text, sizeof(text), "exbase.qcow2"), NULL, NULL);
	rc = rc ? rc : tq_run("qemu-img create -q -f qcow2 -b exbase.qcow2 -F qcow2 '%s' 4M", path);
	rc = rc ? rc : qcow2_open_existing(path, 4 << 20, &img, err, sizeof(err));
	rc = rc ? rc : qcow2_set_partial(img, "first");
	rc = rc ? rc : qcow2_set_partial(img, "job=j2\nresult=failed\n");
	rc = rc ? rc : qcow2_close(img, true, err, sizeof(err));
	tap_ok(!rc, "an existing image with backing format closes partial (%s)", rc ? err : "");
	rc = qcow2_read_partial(path, text, sizeof(text), err, sizeof(err));
	tap_ok(rc == 1 && !strcmp(text, "job=j2\nresult=failed\n"), "the last record set is kept");
	tap_ok(tq_check(path) == 0 && tq_run("qemu-img info --output=json '%s'", path) == 0 &&
	       strstr(tq_out, "\"backing-filename-format\": \"qcow2\"") &&
	       strstr(tq_out, "\"backing-filename\": \"exbase.qcow2\""),
	       "its backing file and format are kept (%s)", tq_out);
	tap_ok(qcow2_read_partial("/nonexistent.qcow2", text, sizeof(text), err, sizeof(err)) == -ENOENT,
	       "a missing image: -ENOENT (%s)", err);
	tq_run("echo notqcow2 > '%s/raw.img'", tq_dir);
	tap_ok(qcow2_read_partial(tq_path(path, sizeof(path), "raw.img"), text, sizeof(text), err,
				  sizeof(err)) == -EINVAL, "not a qcow2 image: -EINVAL (%s)", err);
}

int main(void)
{
	tq_setup("test-qcow2-partial");
	test_standalone();
	test_rebase_keeps();
	test_existing();
	tq_cleanup();
	return tap_done();
}
