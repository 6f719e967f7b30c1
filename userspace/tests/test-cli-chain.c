// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl chain verify and restore on real chains: images written by our
 * qcow2 writer (three levels, three cluster sizes, zero clusters hiding
 * backing data, a virtual size that ends inside a cluster) and by
 * qemu-img/qemu-io.  A good chain verifies and restores to what
 * `qemu-img convert` makes of it; a damaged header or L2 table, zeroed
 * refcounts, a cluster used twice, a missing link, a loop, an unfinished
 * image, a partial image as tip or as a link and a size mismatch are each
 * reported with their exit status, and qemu-img check agrees that the
 * damaged images are damaged.  The CLI's sources are compiled in.
 */
#include <signal.h>

#include "test-qcow2-common.h"

#include "../cli/args.c"
#include "../cli/bsynctab.c"
#include "../cli/cmd-activate.c"
#include "../cli/cmd-backup.c"
#include "../cli/cmd-bitmap.c"
#include "../cli/cmd-chain-merge.c"
#include "../cli/cmd-chain-sums.c"
#include "../cli/cmd-chain.c"
#include "../cli/cmd-device.c"
#include "../cli/cmd-export.c"
#include "../cli/cmd-image.c"
#include "../cli/cmd-job.c"
#include "../cli/cmd-restore.c"
#include "../cli/commands.c"
#include "../cli/conn.c"
#include "../cli/output.c"
#include "../cli/progress.c"

#define SIZE ((3u << 20) + 1536)	/* ends inside a cluster */

static char out_buf[65536], err_buf[65536];

/* Run "chain verify"/"restore" with words (NULL-terminated); exit status. */
static int run(bool json, const char *const *words)
{
	struct cli c = { .json = json };
	const struct cli_cmd *cmd;
	char *argv[16], *ob = NULL, *eb = NULL;
	size_t ol = 0, el = 0;
	int argc = 0, r;

	cmd = !strcmp(words[0], "restore") || !strcmp(words[0], "backup") ?
		cli_find_cmd(words[0], NULL) : cli_find_cmd("chain", words[0]);
	while (argc < 15 && words[argc]) {
		argv[argc] = (char *)words[argc];
		argc++;
	}
	argv[argc] = NULL;
	c.out = open_memstream(&ob, &ol);
	c.err = open_memstream(&eb, &el);
	cli_set_what(&c, "test");
	r = cmd->run(&c, cmd, argc, argv);
	fclose(c.out);
	fclose(c.err);
	snprintf(out_buf, sizeof(out_buf), "%s", ob ? ob : "");
	snprintf(err_buf, sizeof(err_buf), "%s", eb ? eb : "");
	free(ob);
	free(eb);
	return r < 0 ? 0 : r;
}

static int run_verify(const char *tip)
{
	const char *w[] = { "verify", tip, NULL };

	return run(false, w);
}

/* verify --json: the exit status; *doc the parsed output (caller puts). */
static int run_verify_json(const char *tip, json_object **doc)
{
	const char *w[] = { "verify", tip, NULL };
	int r = run(true, w);

	*doc = json_tokener_parse(out_buf);
	return r;
}

/* images[i].key of a verify document, as a string ("" if absent). */
static const char *image_field(json_object *doc, size_t i, const char *key)
{
	json_object *a, *o, *v;

	if (!doc || !json_object_object_get_ex(doc, "images", &a) ||
	    i >= json_object_array_length(a))
		return "";
	o = json_object_array_get_idx(a, i);
	if (!json_object_object_get_ex(o, key, &v) || !v)
		return "";
	return json_object_get_string(v);
}

static size_t image_count(json_object *doc)
{
	json_object *a;

	return doc && json_object_object_get_ex(doc, "images", &a) ? json_object_array_length(a) : 0;
}

static bool with_sums;	/* make_level() keeps a checksum record */

/*
 * One level of a chain, written by our writer: for each cluster, data
 * (40%), zero (15%) or nothing (a full image writes zero instead).
 */
static int make_level(const char *name, const char *backing, uint64_t size, uint32_t cs,
		      const char *partial, bool complete)
{
	struct qcow2_create_opts o = { .virtual_size = size, .cluster_size = cs,
				       .backing_file = backing };
	struct qcow2_image *img;
	char path[512], err[512];
	uint8_t *buf = malloc(cs);
	int rc, cr;

	rc = buf ? qcow2_create(tq_path(path, sizeof(path), name), &o, &img, err, sizeof(err))
		 : -ENOMEM;
	if (rc) {
		tap_diag("create %s: %s", name, err);
		free(buf);
		return rc;
	}
	if (with_sums && qcow2_enable_sums(img, err, sizeof(err)))
		tap_diag("sums %s: %s", name, err);
	for (uint64_t off = 0; off < size && !rc; off += cs) {
		uint64_t n = size - off < cs ? size - off : cs, pick = tq_below(100);

		if (pick < 40) {
			tq_fill(buf, cs);
			rc = qcow2_write_cluster(img, off, buf, n);
		} else if (pick < 55 || !backing) {
			rc = qcow2_write_zero(img, off, n);
		}
	}
	if (!rc && partial)
		rc = qcow2_set_partial(img, partial);
	if (rc)
		tap_diag("write %s: %s", name, qcow2_errmsg(img));
	cr = qcow2_close(img, complete, err, sizeof(err));
	rc = rc ? rc : cr;
	free(buf);
	return rc;
}

/* full (64K) <- inc1 (4K) <- inc2 (512 B), relative backing names. */
static int make_chain(const char *partial1, uint64_t size1)
{
	tq_run("rm -f '%s'/*.qcow2 '%s'/*.sums '%s'/*.merging", tq_dir, tq_dir, tq_dir);
	return make_level("full.qcow2", NULL, SIZE, 65536, NULL, true) ||
	       make_level("inc1.qcow2", "full.qcow2", size1, 4096, partial1, true) ||
	       make_level("inc2.qcow2", "inc1.qcow2", SIZE, 512, NULL, true);
}

static uint64_t rd64(int fd, uint64_t off)
{
	uint8_t b[8] = { 0 };

	if (pread(fd, b, 8, (off_t)off) != 8)
		return 0;
	return q_be64(b);
}

static void wr64(int fd, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	if (pwrite(fd, b, 8, (off_t)off) != 8)
		tap_diag("pwrite: %s", strerror(errno));
}

/*
 * The host offsets of the first two data entries of image path's first L2
 * table that has two: where they are stored (*e1, *e2).  0 or -1.
 */
static int find_data_entries(int fd, uint64_t *e1, uint64_t *e2)
{
	uint32_t bits = (uint32_t)(rd64(fd, 16) & 0xffffffffu), l1n = (uint32_t)(rd64(fd, 32));
	uint64_t cs = 1ull << bits, l1 = rd64(fd, 40);

	for (uint32_t i = 0; i < l1n; i++) {
		uint64_t l2 = rd64(fd, l1 + 8ull * i) & 0x00fffffffffffe00ull;
		int found = 0;

		if (!l2)
			continue;
		for (uint64_t j = 0; j < cs / 8 && found < 2; j++) {
			uint64_t e = rd64(fd, l2 + 8 * j);

			if ((e & 0x00fffffffffffe00ull) && !(e & 1))
				*(found++ ? e2 : e1) = l2 + 8 * j;
		}
		if (found == 2)
			return 0;
	}
	return -1;
}

static int open_img(const char *name)
{
	char p[512];

	return open(tq_path(p, sizeof(p), name), O_RDWR | O_CLOEXEC);
}

static void test_good_chain(void)
{
	char tip[512], dest[512], ref[512];
	const char *w[] = { "restore", tip, dest, NULL };
	json_object *doc;
	struct stat st;
	int r;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(dest, sizeof(dest), "restored.raw");
	tq_path(ref, sizeof(ref), "ref.raw");
	if (!tap_ok(make_chain(NULL, SIZE) == 0, "a chain of three images written"))
		return;
	tap_ok(tq_run("qemu-img check -q '%s/full.qcow2' && qemu-img check -q '%s/inc1.qcow2' && "
		      "qemu-img check -q '%s'", tq_dir, tq_dir, tip) == 0,
	       "qemu-img check finds each image clean");
	r = run_verify(tip);
	tap_ok(r == 0 && strstr(out_buf, "chain ok: 3 images") && !err_buf[0],
	       "a good chain verifies (exit %d)", r);
	r = run_verify_json(tip, &doc);
	tap_ok(r == 0 && doc && !strcmp(jstr(doc, "status"), "ok") && image_count(doc) == 3 &&
	       strstr(image_field(doc, 2, "path"), "full.qcow2") &&
	       !strcmp(image_field(doc, 1, "cluster-size"), "4096"),
	       "--json: status ok, three levels, the base last, each its cluster size");
	json_object_put(doc);

	r = run(false, w);
	tap_ok(r == 0 && strstr(out_buf, "restored "), "restore to a new file (exit %d: %s)", r,
	       err_buf);
	tap_ok(tq_run("qemu-img convert -f qcow2 -O raw '%s' '%s'", tip, ref) == 0 &&
	       tq_run("qemu-img compare -q -f raw -F raw '%s' '%s'", ref, dest) == 0,
	       "the restored file equals qemu-img convert of the chain");
	tap_ok(tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, dest) == 0 &&
	       stat(dest, &st) == 0 && (uint64_t)st.st_size == SIZE,
	       "qemu-img compare: chain and file identical, the file has the virtual size");
	r = run(false, w);
	tap_ok(r == EXIT_FAILED && strstr(err_buf, "exists"),
	       "restore refuses to overwrite an existing file (exit %d)", r);
	unlink(dest);
	r = run(true, w);
	doc = json_tokener_parse(out_buf);
	tap_ok(r == 0 && doc && jint(doc, "size") == SIZE && jint(doc, "images") == 3 &&
	       jint(doc, "written") + jint(doc, "sparse") == SIZE && !jstr(doc, "bsync-device"),
	       "restore --json: size, images, written + sparse = size, no bsync device");
	json_object_put(doc);
	unlink(dest);
	unlink(ref);
}

/* A chain made by qemu-img and qemu-io reads the same through our reader. */
static void test_qemu_chain(void)
{
	char tip[512], dest[512];
	const char *w[] = { "restore", tip, dest, NULL };
	struct stat st;
	int r;

	tq_path(tip, sizeof(tip), "q2.qcow2");
	tq_path(dest, sizeof(dest), "q.raw");
	r = tq_run("cd '%s' && qemu-img create -q -f qcow2 q0.qcow2 5M && "
		   "qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x12 4M 4k' q0.qcow2 && "
		   "qemu-img create -q -f qcow2 -o cluster_size=4096 -b q0.qcow2 -F qcow2 q1.qcow2 && "
		   "qemu-io -c 'write -P 0x21 1M 8k' -c 'write -z 2M 64k' q1.qcow2 && "
		   "qemu-img create -q -f qcow2 -b q1.qcow2 -F qcow2 q2.qcow2 && "
		   "qemu-io -c 'write -P 0x31 2000k 100k' -c 'write -z 0 4k' q2.qcow2", tq_dir);
	if (!tap_ok(r == 0, "a chain made by qemu-img and qemu-io"))
		return;
	r = run_verify(tip);
	tap_ok(r == 0, "it verifies (exit %d: %s)", r, err_buf);
	r = run(false, w);
	tap_ok(r == 0 && tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, dest) == 0,
	       "its restore equals the chain (qemu-img compare)");
	/* 3M-4M and 4M+64K-5M read as zeroes: about 1.9 MiB never written */
	tap_ok(stat(dest, &st) == 0 && (uint64_t)st.st_blocks * 512 <= (3u << 20) + (192u << 10) &&
	       strstr(out_buf, "left sparse"),
	       "the new file is sparse (%llu of 5 MiB allocated)", (unsigned long long)st.st_blocks * 512);
	tap_ok(strstr(out_buf, "all read back and compared") != NULL, "and read back: %s", out_buf);
	{
		const char *nv[] = { "restore", tip, dest, "--no-verify", NULL };
		json_object *doc = NULL, *x;

		unlink(dest);
		r = run(true, nv);
		doc = json_tokener_parse(out_buf);
		tap_ok(r == 0 && doc && json_object_object_get_ex(doc, "verified", &x) &&
		       !json_object_get_boolean(x) &&
		       tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, dest) == 0,
		       "--no-verify: restored equal, \"verified\": false (exit %d)", r);
		json_object_put(doc);
	}
	tq_run("rm -f '%s'/q*.qcow2 '%s'", tq_dir, dest);

	/* a raw base, as --backing-fmt raw makes */
	tq_path(tip, sizeof(tip), "r1.qcow2");
	r = tq_run("cd '%s' && qemu-img create -q -f raw r0.raw 3M && "
		   "qemu-io -f raw -c 'write -P 0x41 0 1M' r0.raw && "
		   "qemu-img create -q -f qcow2 -b r0.raw -F raw r1.qcow2 && "
		   "qemu-io -c 'write -P 0x42 512k 64k' r1.qcow2", tq_dir);
	r = r ?: run_verify(tip);
	tap_ok(r == 0 && strstr(out_buf, "raw"), "a chain on a raw base verifies (exit %d)", r);
	r = run(false, w);
	tap_ok(r == 0 && tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, dest) == 0,
	       "and restores equal to it");
	tq_run("rm -f '%s'/r0.raw '%s'/r1.qcow2 '%s'", tq_dir, tq_dir, dest);
}

/* A damaged image: verify says 6, qemu-img check (exit 2) agrees, restore writes nothing. */
static void expect_damaged(const char *what, const char *damaged, size_t level)
{
	char tip[512], dest[512], p[512];
	const char *w[] = { "restore", tip, dest, NULL };
	json_object *doc;
	struct stat st;
	int r, q;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(dest, sizeof(dest), "never.raw");
	r = run_verify_json(tip, &doc);
	tap_ok(r == EXIT_CHAIN_DAMAGED && !strcmp(image_field(doc, level, "status"), "damaged"),
	       "%s: verify exits 6, level %zu damaged (exit %d)", what, level, r);
	json_object_put(doc);
	q = tq_run("qemu-img check '%s'", tq_path(p, sizeof(p), damaged));
	tap_ok(q == 2 || q == 1, "%s: qemu-img check agrees (exit %d)", what, q);
	r = run(false, w);
	tap_ok(r == EXIT_CHAIN_DAMAGED && stat(dest, &st) < 0 && strstr(err_buf, "nothing was written"),
	       "%s: restore refuses, writes nothing (exit %d)", what, r);
}

static void test_damage(void)
{
	uint64_t e1 = 0, e2 = 0;
	int fd;

	/* an L2 entry pointing past the end of the file */
	make_chain(NULL, SIZE);
	fd = open_img("inc1.qcow2");
	if (fd >= 0 && !find_data_entries(fd, &e1, &e2))
		wr64(fd, e1, (1ull << 63) | (1ull << 40));
	close(fd);
	expect_damaged("L2 entry past the end of the file", "inc1.qcow2", 1);
	tap_ok(run_verify(tq_path((char[512]){ 0 }, 512, "inc2.qcow2")) == EXIT_CHAIN_DAMAGED &&
	       strstr(err_buf, "inc1.qcow2") && strstr(err_buf, "L2 entry"),
	       "the message names the image and the L2 entry: %s", err_buf);

	/* two L2 entries sharing a data cluster */
	make_chain(NULL, SIZE);
	fd = open_img("full.qcow2");
	if (fd >= 0 && !find_data_entries(fd, &e1, &e2))
		wr64(fd, e2, rd64(fd, e1));
	close(fd);
	expect_damaged("a cluster used twice", "full.qcow2", 2);
	tap_ok(strstr(err_buf, "used 2 times") != NULL, "the message says a cluster is used twice");

	/* the refcount block zeroed */
	make_chain(NULL, SIZE);
	fd = open_img("inc2.qcow2");
	if (fd >= 0) {
		uint64_t rb = rd64(fd, rd64(fd, 48)) & ~511ull;

		for (int i = 0; i < 64; i++)
			wr64(fd, rb + 8 * (uint64_t)i, 0);
		close(fd);
	}
	expect_damaged("zeroed refcounts", "inc2.qcow2", 0);

	/* a header with a bad magic in the base */
	make_chain(NULL, SIZE);
	fd = open_img("full.qcow2");
	if (fd >= 0) {
		wr64(fd, 0, 0x0123456789abcdefull);
		close(fd);
	}
	tap_ok(run_verify(tq_path((char[512]){ 0 }, 512, "inc2.qcow2")) == EXIT_CHAIN_DAMAGED &&
	       strstr(err_buf, "bad magic"), "a base with a bad magic: exit 6, 'bad magic' said");
}

static void test_links(void)
{
	char tip[512], a[512], b[512];
	json_object *doc;
	int r;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	make_chain(NULL, SIZE);
	rename(tq_path(a, sizeof(a), "full.qcow2"), tq_path(b, sizeof(b), "moved.qcow2"));
	r = run_verify_json(tip, &doc);
	tap_ok(r == EXIT_CHAIN_BROKEN && image_count(doc) == 3 &&
	       !strcmp(image_field(doc, 2, "status"), "missing") &&
	       !strcmp(image_field(doc, 1, "status"), "ok") && strstr(image_field(doc, 2, "hint"), "rebase"),
	       "a missing base: exit 7, level 2 missing, a rebase hint (exit %d)", r);
	json_object_put(doc);
	tap_ok(tq_run("qemu-img info --backing-chain '%s'", tip) != 0,
	       "qemu-img cannot open that chain either");
	r = run_verify(tq_path(a, sizeof(a), "nonexistent.qcow2"));
	tap_ok(r == EXIT_CHAIN_BROKEN, "a missing tip: exit 7 (%d)", r);

	/* an image whose backing file is itself */
	r = make_level("loop.qcow2", "loop.qcow2", SIZE, 65536, NULL, true);
	r = r ?: run_verify(tq_path(a, sizeof(a), "loop.qcow2"));
	tap_ok(r == EXIT_CHAIN_BROKEN && strstr(err_buf, "loops"), "a loop: exit 7 (%d)", r);
	unlink(a);

	/* an unfinished image (its writer died) as a link */
	tq_run("rm -f '%s'/*.qcow2 '%s'/*.sums", tq_dir, tq_dir);
	make_level("full.qcow2", NULL, SIZE, 65536, NULL, true);
	make_level("inc1.qcow2", "full.qcow2", SIZE, 65536, NULL, false);
	make_level("inc2.qcow2", "inc1.qcow2", SIZE, 65536, NULL, true);
	r = run_verify(tip);
	tap_ok(r == EXIT_CHAIN_DAMAGED && strstr(err_buf, "incomplete"),
	       "an unfinished link: exit 6, 'incomplete' (%d)", r);

	/* a size mismatch: the device grew between full and inc1 */
	make_chain(NULL, SIZE - 65536 - 1536);
	r = run_verify_json(tip, &doc);
	tap_ok(r == EXIT_CHAIN_SIZE && !strcmp(image_field(doc, 1, "status"), "size-mismatch") &&
	       !strcmp(jstr(doc, "status"), "size-mismatch"),
	       "a size mismatch: exit 9, level 1 named (exit %d)", r);
	json_object_put(doc);
}

#define REC(mode) "job=nightly\nresult=failed\nerror=Input/output error\ndevice=vm1\n" \
		  "sync=incremental\nbitmap=b0\nbitmap-mode=" mode "\ncopied=65536\nlen=1048576\n"

static void test_partial(void)
{
	char tip[512], p1[512];
	json_object *doc;
	int r;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(p1, sizeof(p1), "inc1.qcow2");
	make_chain(REC("on-success"), SIZE);
	r = run_verify_json(tip, &doc);
	tap_ok(r == EXIT_CHAIN_PARTIAL && !strcmp(image_field(doc, 1, "status"), "partial") &&
	       !strcmp(image_field(doc, 1, "partial"), "true"),
	       "a partial on-success image as a link: exit 8 (%d)", r);
	json_object_put(doc);
	r = run_verify(p1);
	tap_ok(r == EXIT_CHAIN_PARTIAL && strstr(err_buf, "delete it") &&
	       strstr(err_buf, "not a point in time"), "the same image as the tip: exit 8, 'delete it'");

	make_chain(REC("always"), SIZE);
	r = run_verify(tip);
	tap_ok(r == 0 && strstr(out_buf, "valid link"),
	       "a partial bitmap-mode always image is a valid link (exit %d)", r);
	r = run_verify(p1);
	tap_ok(r == EXIT_CHAIN_PARTIAL && strstr(err_buf, "builds on it"),
	       "but as the tip it is not a point in time: exit 8 (%d)", r);
}

static int run_merge(const char *tip)
{
	const char *w[] = { "merge", tip, NULL };

	return run(false, w);
}

static bool exists(const char *name)
{
	char p[512];

	return !access(tq_path(p, sizeof(p), name), F_OK);
}

static void test_merge(void)
{
	char tip[512], ref[512], p[512];
	json_object *doc;
	int r;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(ref, sizeof(ref), "ref.raw");
	make_chain(NULL, SIZE);
	tq_run("qemu-img convert -O raw '%s' '%s'", tip, ref);
	r = run_merge(tip);
	tap_ok(r == 0 && strstr(out_buf, "is now a full backup") && !exists("full.qcow2") &&
	       !exists("inc1.qcow2.merging"),
	       "merge folds inc1 into full, full deleted (exit %d: %s)", r, err_buf);
	r = run_verify_json(tip, &doc);
	tap_ok(r == 0 && image_count(doc) == 2 && !strcmp(image_field(doc, 1, "backing"), ""),
	       "the chain is inc2 <- inc1, inc1 standalone, and verifies");
	json_object_put(doc);
	tap_ok(tq_run("qemu-img check -q '%s'", tq_path(p, sizeof(p), "inc1.qcow2")) == 0 &&
	       tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, ref) == 0,
	       "qemu-img: the merged image is clean and the chain reads as before");
	tap_ok(run_merge(tip) == 0 && tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, ref) == 0,
	       "merged again: inc2 alone, the same disk");
	r = run_merge(tip);
	tap_ok(r == EXIT_FAILED && strstr(err_buf, "nothing to merge"), "a full backup alone: nothing to merge");

	make_chain(REC("on-success"), SIZE);
	r = run_merge(tip);
	tap_ok(r == EXIT_CHAIN_PARTIAL && exists("full.qcow2") && strstr(err_buf, "nothing was merged"),
	       "a chain that is not valid is left alone (exit %d)", r);
	unlink(ref);
}

/* Kill merges at moments spread over their run: the chain stays valid and the same. */
static void test_merge_kill(void)
{
	char tip[512], ref[512];
	int runs = 16, bad = 0, midway = 0;
	double t0, dur;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(ref, sizeof(ref), "ref.raw");
	tq_run("rm -f '%s'/*.qcow2 '%s'/pristine.*", tq_dir, tq_dir);
	if (make_level("full.qcow2", NULL, 16u << 20, 65536, NULL, true) ||
	    make_level("inc1.qcow2", "full.qcow2", 16u << 20, 65536, NULL, true) ||
	    make_level("inc2.qcow2", "inc1.qcow2", 16u << 20, 65536, NULL, true) ||
	    tq_run("cd '%s' && mkdir pristine && cp full.qcow2 inc1.qcow2 inc2.qcow2 pristine/ && "
		   "qemu-img convert -O raw inc2.qcow2 ref.raw", tq_dir)) {
		tap_ok(0, "a chain of 16 MiB images");
		return;
	}
	t0 = progress_now();
	tap_ok(run_merge(tip) == 0, "an uninterrupted merge of 16 MiB images");
	dur = progress_now() - t0;
	for (int i = 0; i < runs; i++) {
		pid_t pid;
		int st;

		tq_run("cd '%s' && rm -f *.qcow2 *.merging *.sums && cp pristine/*.qcow2 .", tq_dir);
		fflush(stdout);
		pid = fork();
		if (pid == 0)
			_exit(run_merge(tip));
		usleep((useconds_t)(dur * 1e6 * 1.2 * i / runs));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		midway += exists("inc1.qcow2.merging");
		if (run_verify(tip) != 0 ||
		    tq_run("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", tip, ref) != 0) {
			bad++;
			tap_diag("kill %d after %.0f ms: %s", i, dur * 1e3 * 1.2 * i / runs, err_buf);
		}
	}
	tap_ok(!bad, "%d merges killed at moments over %.0f ms: the chain verifies and reads the same "
	       "every time (%d killed while writing)", runs, dur * 1e3, midway);
	tap_ok(midway > 0, "some kills landed while the merged image was being written");
	tq_run("rm -rf '%s'/pristine '%s'", tq_dir, ref);
}

/* Missing arguments. */
/* The guest and host offsets of image name's first data cluster (qemu-img map's line of it). */
static int first_data(const char *name, uint64_t *guest, uint64_t *host)
{
	const char *st, *of;

	if (tq_run("qemu-img map -f qcow2 --output=json '%s/%s' | "
		   "grep -m1 '\"depth\": 0, .*\"data\": true'", tq_dir, name))
		return -1;
	st = strstr(tq_out, "\"start\": ");
	of = strstr(tq_out, "\"offset\": ");
	if (!st || !of)
		return -1;
	*guest = strtoull(st + 9, NULL, 10);
	*host = strtoull(of + 10, NULL, 10);
	return 0;
}

/* Checksum records: a good chain's, a cluster changed after the backup, none, another image's. */
static void test_sums(void)
{
	char tip[512], dest[512];
	const char *w[] = { "restore", tip, dest, NULL };
	uint64_t guest = 0, host = 0;
	json_object *doc, *imgs, *ck, *x;
	uint8_t b;
	int r, fd;

	tq_path(tip, sizeof(tip), "inc2.qcow2");
	tq_path(dest, sizeof(dest), "sums.raw");
	with_sums = true;
	r = make_chain(NULL, SIZE);
	with_sums = false;
	if (!tap_ok(r == 0, "a chain of three images written with checksum records"))
		return;
	r = run_verify_json(tip, &doc);
	json_object_object_get_ex(doc, "images", &imgs);
	tap_ok(r == 0 && json_object_object_get_ex(json_object_array_get_idx(imgs, 1), "checksums", &ck) &&
	       json_object_object_get_ex(ck, "clusters", &x) && json_object_get_int64(x) > 0 &&
	       json_object_object_get_ex(ck, "bad", &x) && !json_object_get_int64(x),
	       "it verifies, each image's data clusters checked against its record (exit %d)", r);
	json_object_put(doc);

	/* a byte of a data cluster of inc1 changes on the backup disk */
	fd = open_img("inc1.qcow2");
	r = first_data("inc1.qcow2", &guest, &host);
	tap_ok(r == 0 && fd >= 0 && pread(fd, &b, 1, (off_t)host + 100) == 1 && (b ^= 0x40, 1) &&
	       pwrite(fd, &b, 1, (off_t)host + 100) == 1 && tq_check(tip) == 0,
	       "a byte of inc1's data cluster at guest offset %llu flipped: qemu-img check sees nothing",
	       (unsigned long long)guest);
	if (fd >= 0)
		close(fd);
	r = run_verify_json(tip, &doc);
	json_object_object_get_ex(doc, "images", &imgs);
	tap_ok(r == EXIT_CHAIN_DAMAGED &&
	       json_object_object_get_ex(json_object_array_get_idx(imgs, 1), "checksums", &ck) &&
	       json_object_object_get_ex(ck, "bad-offsets", &x) &&
	       (uint64_t)json_object_get_int64(json_object_array_get_idx(x, 0)) == guest &&
	       !strcmp(image_field(doc, 1, "status"), "damaged") &&
	       !strcmp(image_field(doc, 0, "status"), "ok"),
	       "chain verify: exit 6, inc1 damaged, --json names the cluster's guest offset");
	json_object_put(doc);
	r = run_verify(tip);
	snprintf(dest, sizeof(dest), "at guest offset %llu", (unsigned long long)guest);
	tap_ok(r == EXIT_CHAIN_DAMAGED && strstr(err_buf, "inc1.qcow2: 1 data cluster differs") &&
	       strstr(err_buf, dest) && strstr(out_buf, "1 bad"),
	       "and says it on stderr: %.300s", err_buf);
	tq_path(dest, sizeof(dest), "sums.raw");
	r = run(false, w);
	tap_ok(r == EXIT_CHAIN_DAMAGED && access(dest, F_OK) && strstr(err_buf, "nothing was written"),
	       "restore refuses the chain, writes nothing (exit %d)", r);

	/* no record: as before; another image's record: named */
	tq_run("rm '%s/inc1.qcow2.sums'", tq_dir);
	r = run_verify(tip);
	tap_ok(r == 0 && strstr(out_buf, "no checksums"), "without its record, inc1 verifies as before: "
	       "\"no checksums\" (exit %d)", r);
	tq_run("cp '%s/full.qcow2.sums' '%s/inc1.qcow2.sums'", tq_dir, tq_dir);
	r = run_verify(tip);
	tap_ok(r == EXIT_CHAIN_DAMAGED && strstr(err_buf, "is of another image"),
	       "another image's record beside it: exit 6, said (%.200s)", err_buf);
	tq_run("rm '%s/inc1.qcow2.sums'", tq_dir);

	/* a merge gives the merged image a record of its own, and drops the base's */
	with_sums = true;
	r = make_chain(NULL, SIZE);
	with_sums = false;
	r = r ?: run_merge(tip);
	tap_ok(r == 0 && !exists("full.qcow2.sums") && run_verify(tip) == 0 &&
	       strstr(out_buf, "no checksums") == NULL,
	       "merge: the merged inc1 has its own record, which verifies; full's is gone (exit %d: %.300s)", r, err_buf);
	tq_run("rm -f '%s'/*.qcow2 '%s'/*.sums", tq_dir, tq_dir);
}

static void test_usage(void)
{
	const char *w1[] = { "verify", NULL };
	const char *w2[] = { "restore", "a", NULL };
	const char *w3[] = { "backup", "vm1", "t.qcow2", "--sync", "incremental", "--bitmap", "b",
			     "--fallback", "partial", NULL };
	const char *w4[] = { "backup", "vm1", "t.qcow2", "--sync", "full", "--fallback", "full", NULL };
	const char *w5[] = { "backup", "vm1", "t.qcow2", "--sync", "incremental", "--fallback", "full",
			     NULL };

	tap_ok(run(false, w1) == EXIT_USAGE, "verify without CHAIN-TIP: usage error");
	tap_ok(run(false, w2) == EXIT_USAGE, "restore without DEST: usage error");
	tap_ok(run(false, w3) == EXIT_USAGE && strstr(err_buf, "--fallback: 'partial' is not full"),
	       "backup --fallback partial: usage error");
	tap_ok(run(false, w4) == EXIT_USAGE && strstr(err_buf, "goes with --sync incremental"),
	       "backup --fallback full with --sync full: usage error");
	tap_ok(run(false, w5) == EXIT_USAGE, "backup --fallback full without --bitmap: usage error");
}

int main(void)
{
	tq_setup("test-cli-chain");
	test_usage();
	test_good_chain();
	test_qemu_chain();
	test_damage();
	test_links();
	test_partial();
	test_merge();
	test_merge_kill();
	test_sums();
	tq_cleanup();
	return tap_done();
}
