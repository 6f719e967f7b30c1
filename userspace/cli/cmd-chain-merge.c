// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl chain merge: the oldest incremental of a valid chain folded into
 * its full backup, crash-safe.  full <- inc1 <- ... becomes inc1 <- ...,
 * inc1 now a full backup of its own point: inc1 and full merged are written
 * into INC1.merging, checked, and renamed over inc1 with the directory
 * flushed, the one step that changes the chain; then full is deleted
 * unless --keep.  A kill at any moment leaves a valid chain that reads the
 * same; a leftover .merging file stops the next merge until deleted.
 * The merged image gets a checksum record of its own (qcow2-sums.h),
 * renamed into place after it; inc1's old record goes first, so that a
 * kill between never leaves inc1 beside another image's record.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsyncctl.h"
#include "cmd-chain.h"
#include "qcow2-read.h"
#include "qcow2-sums.h"
#include "qcow2.h"

/*
 * Write the image top's chain describes into the new standalone image tmp
 * (top's cluster size): what reads as zeroes stays unallocated.  0 or an
 * exit status, the error printed; tmp is removed on failure.
 */
static int merge_write(struct cli *c, const char *top, const char *tmp, uint64_t size, uint32_t cs)
{
	struct qcow2_create_opts o = { .virtual_size = size, .cluster_size = cs };
	struct qcow2_image *img = NULL;
	struct qcow2_chain ch;
	uint64_t chunk = CHAIN_CHUNK > cs ? CHAIN_CHUNK : cs;
	uint8_t *buf = aligned_alloc(4096, chunk);
	char err[512], failed[PATH_MAX];
	int rc;

	rc = buf ? qcow2_chain_open(top, &ch, failed, sizeof(failed), err, sizeof(err)) : -ENOMEM;
	if (!rc)
		rc = qcow2_create(tmp, &o, &img, err, sizeof(err));
	if (!rc)
		rc = qcow2_enable_sums(img, err, sizeof(err));
	for (uint64_t off = 0; !rc && off < size; off += chunk) {
		uint64_t n = size - off < chunk ? size - off : chunk, at = 0;

		rc = qcow2_chain_pread(&ch, buf, n, off, NULL, err, sizeof(err));
		while (!rc && at < n) {		/* each run of clusters not reading zero */
			uint64_t end = at;

			while (end < n && !qcow2_is_zero(buf + end, n - end < cs ? n - end : cs))
				end += n - end < cs ? n - end : cs;
			if (end > at && (rc = qcow2_write_cluster(img, off + at, buf + at, end - at)))
				snprintf(err, sizeof(err), "%s", qcow2_errmsg(img));
			at = end + (end < n ? (n - end < cs ? n - end : cs) : 0);
		}
	}
	if (img) {
		int cr = qcow2_close(img, !rc, rc ? NULL : err, sizeof(err));
		char sums[PATH_MAX + 32];

		rc = rc ? rc : cr;
		qcow2_sums_path(tmp, sums, sizeof(sums));
		if (rc) {
			unlink(tmp);
			unlink(sums);
		}
	}
	if (buf)
		qcow2_chain_close(&ch);
	free(buf);
	if (rc)
		cli_error(c, "%s: %s", c->what, rc == -ENOMEM ? strerror(ENOMEM) : err);
	return rc ? EXIT_FAILED : 0;
}

/* The new image must check clean before it replaces anything. */
static int merge_check(struct cli *c, const char *tmp)
{
	struct qcow2_reader *r;
	struct qcow2_check chk;
	char err[512];
	int rc = qcow2_reader_open(tmp, &r, err, sizeof(err));

	if (!rc) {
		rc = qcow2_reader_check(r, &chk);
		if (!rc && (chk.corruptions || !chk.refcounts_checked)) {
			rc = -EUCLEAN;
			snprintf(err, sizeof(err), "%s", chk.first[0] ? chk.first : "refcounts not written");
		} else if (rc) {
			snprintf(err, sizeof(err), "%s", qcow2_reader_errmsg(r));
		}
		qcow2_reader_close(r);
	}
	if (!rc)
		return 0;
	cli_error(c, "%s: the merged image %s does not check clean, nothing replaced: %s", c->what,
		  tmp, err);
	unlink(tmp);
	qcow2_sums_path(tmp, err, sizeof(err));
	unlink(err);
	return EXIT_FAILED;
}

enum { OPT_KEEP = 1 };

static int merge_opt(void *arg, int id, const char *val)
{
	*(bool *)arg = true;
	return 0;
}

int cmd_chain_merge(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "keep", 0, false, OPT_KEEP },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "CHAIN-TIP" };
	char tmp[PATH_MAX + 16], sums[PATH_MAX + 32], tmp_sums[PATH_MAX + 32];
	const struct link *top, *base;
	bool keep = false;
	struct verify v;
	char **pos;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, merge_opt, &keep, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 1, 1, names);
	if (r)
		return r;
	cli_set_what(c, "chain merge");
	r = verify_or_refuse(c, pos[0], &v, true, ": nothing was merged");
	if (r)
		return r;
	r = EXIT_FAILED;
	if (v.n < 2) {
		cli_error(c, "%s: %s is a full backup: nothing to merge", c->what, pos[0]);
		goto out;
	}
	top = &v.links[v.n - 2];
	base = &v.links[v.n - 1];
	if (!base->info) {
		cli_error(c, "%s: the base %s is a raw file: merge folds into qcow2 images only",
			  c->what, base->path);
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.merging", top->path);
	if (!access(tmp, F_OK)) {
		cli_error(c, "%s: %s exists: a merge was interrupted, or one is running; delete it "
			  "if none runs (the chain is valid either way)", c->what, tmp);
		goto out;
	}
	r = merge_write(c, top->path, tmp, top->size, top->info->cluster_size);
	if (!r)
		r = merge_check(c, tmp);
	if (r)
		goto out;
	qcow2_sums_path(top->path, sums, sizeof(sums));
	qcow2_sums_path(tmp, tmp_sums, sizeof(tmp_sums));
	if (unlink(sums) < 0 && errno != ENOENT) {
		cli_error(c, "%s: cannot delete %s, the record of the image being replaced: %s",
			  c->what, sums, strerror(errno));
		unlink(tmp);
		unlink(tmp_sums);
		r = EXIT_FAILED;
		goto out;
	}
	/* the one step that changes the chain: top's name now holds top and base merged */
	if (rename(tmp, top->path) < 0 || qcow2_sync_dir(top->path)) {
		cli_error(c, "%s: cannot put %s in place of %s: %s", c->what, tmp, top->path,
			  strerror(errno));
		unlink(tmp);
		unlink(tmp_sums);
		r = EXIT_FAILED;
		goto out;
	}
	if (rename(tmp_sums, sums) < 0 || qcow2_sync_dir(sums))
		cli_error(c, "%s: merged, but the checksum record %s could not be put in place (%s): "
			  "%s verifies without checksums", c->what, tmp_sums, strerror(errno), top->path);
	if (!keep && (unlink(base->path) < 0 || qcow2_sync_dir(base->path)))
		cli_error(c, "%s: merged, but cannot delete the old base %s (no longer in the chain): %s",
			  c->what, base->path, strerror(errno));
	if (!keep) {	/* the old base's record, if any, goes with it */
		qcow2_sums_path(base->path, sums, sizeof(sums));
		unlink(sums);
	}
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "merged", json_object_new_string(top->path));
		json_object_object_add(o, "base", json_object_new_string(base->path));
		json_object_object_add(o, "base-deleted", json_object_new_boolean(!keep));
		json_object_object_add(o, "images", json_object_new_int64((int64_t)v.n - 1));
		print_json(c, o);
		json_object_put(o);
	} else if (!c->quiet) {
		fprintf(c->out, "merged %s into %s: %s is now a full backup, the chain has %zu image%s; "
			"%s %s\n", top->path, base->path, top->path, v.n - 1, v.n > 2 ? "s" : "",
			base->path, keep ? "is kept (no longer in this chain)" : "deleted");
	}
out:
	verify_free(&v);
	return r;
}
