// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl chain verify: a backup chain's images read with the library's
 * own qcow2 reader (lib/qcow2-read.h); the daemon is not asked.  The walk
 * (cmd-chain.h) is shared with restore and chain merge, which act only on
 * a valid chain, and with backup --fallback (chain_check_base()).
 *
 * A chain is valid when every link exists, every image is structurally
 * sound and finished (not marked incomplete), every image has the tip's
 * virtual size, and no partial image (a failed or cancelled job's, see
 * "image info") is where it cannot be: never the tip (it is not a point in
 * time), and a link only when its job ran with bitmap-mode always (the
 * bitmap then kept nothing of what it copied, so the next incremental
 * builds on it; otherwise the bitmap kept clusters the image lacks, and
 * the image above it misses them).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"
#include "cmd-chain.h"
#include "qcow2-read.h"

static const char *status_name(int status)
{
	switch (status) {
	case EXIT_OK:
		return "ok";
	case EXIT_CHAIN_DAMAGED:
		return "damaged";
	case EXIT_CHAIN_BROKEN:
		return "missing";
	case EXIT_CHAIN_PARTIAL:
		return "partial";
	case EXIT_CHAIN_SIZE:
		return "size-mismatch";
	default:
		return "error";
	}
}

void chain_problem(struct link *l, int status, const char *fmt, ...)
{
	va_list ap;

	if (l->status)
		return;		/* the first problem of a link is the one told */
	l->status = status;
	va_start(ap, fmt);
	vsnprintf(l->problem, sizeof(l->problem), fmt, ap);
	va_end(ap);
}

/* A value of the partial record's "key=value" lines, in buf. */
static const char *record_field(const char *text, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);
	const char *p = text;

	buf[0] = 0;
	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			size_t n = strcspn(p + kl + 1, "\n");

			snprintf(buf, len, "%.*s", (int)n, p + kl + 1);
			break;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return buf;
}

/* Why an image could not be opened: which status, and what to do. */
static void open_failed(struct link *l, const struct link *above, int rc, const char *err)
{
	if (rc == -ENOENT || rc == -ENOTDIR || rc == -ELOOP) {
		if (above && rc != -ELOOP) {
			chain_problem(l, EXIT_CHAIN_BROKEN, "missing: %s names it as its backing file (%s)",
				above->path, strerror(-rc));
			snprintf(l->hint, sizeof(l->hint),
				 "put the image back at that path; if it was moved, point the image above at it: "
				 "qemu-img rebase -u -F qcow2 -b NEW-PATH %s", above->path);
		} else {
			chain_problem(l, EXIT_CHAIN_BROKEN, "%s", err);
		}
	} else if (rc == -EINVAL || rc == -EUCLEAN) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "%s", err);
		snprintf(l->hint, sizeof(l->hint),
			 "the image cannot be read: the chain above it cannot be restored; "
			 "start a new chain with a full backup");
	} else {
		chain_problem(l, EXIT_FAILED, "%s", err);
	}
}

/* The checks of one opened qcow2 link (level i). */
static void check_link(struct verify *v, size_t i)
{
	struct link *l = &v->links[i];
	struct qcow2_reader *r = v->chain.level[i].r;
	const struct qcow2_info *info = l->info;
	char job[128], mode[32], result[32];
	int rc;

	if (info->incomplete) {
		chain_problem(l, EXIT_CHAIN_DAMAGED,
			"marked incomplete: the backup writing it did not finish (the daemon or the host died)");
		snprintf(l->hint, sizeof(l->hint),
			 "delete it: its bitmap was given back, so the next backup copies what it missed");
	} else if (info->dirty) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "marked dirty: its refcounts were not written back");
		snprintf(l->hint, sizeof(l->hint), "qemu-img check -r all %s repairs it", l->path);
	}
	rc = qcow2_reader_check(r, &l->chk);
	if (rc) {
		chain_problem(l, EXIT_FAILED, "cannot check: %s", qcow2_reader_errmsg(r));
	} else if (l->chk.corruptions) {
		chain_problem(l, EXIT_CHAIN_DAMAGED, "%llu error%s in its structure, the first: %s",
			(unsigned long long)l->chk.corruptions, l->chk.corruptions > 1 ? "s" : "",
			l->chk.first);
		snprintf(l->hint, sizeof(l->hint),
			 "the image cannot be trusted: restore an older point, and start a new chain with a full backup");
	} else if (l->chk.leaks) {
		snprintf(l->note, sizeof(l->note), "%llu leaked cluster%s (harmless)",
			 (unsigned long long)l->chk.leaks, l->chk.leaks > 1 ? "s" : "");
	}
	if (i && l->size != v->links[0].size) {
		char a[32], b[32];

		chain_problem(l, EXIT_CHAIN_SIZE,
			"virtual size %s differs from the tip's %s: the device was resized between these backups",
			fmt_size(l->size, a, sizeof(a)), fmt_size(v->links[0].size, b, sizeof(b)));
		snprintf(l->hint, sizeof(l->hint),
			 "an incremental cannot span a resize: start a new chain with a full backup");
	}
	if (!info->partial)
		return;
	record_field(info->partial_text, "job", job, sizeof(job));
	record_field(info->partial_text, "bitmap-mode", mode, sizeof(mode));
	record_field(info->partial_text, "result", result, sizeof(result));
	if (i == 0 && v->as_base && !strcmp(mode, "always")) {
		snprintf(l->note, sizeof(l->note), "partial (job '%s' %s), a valid base: bitmap-mode always",
			 job, result);
	} else if (i == 0) {
		chain_problem(l, EXIT_CHAIN_PARTIAL,
			"a partial backup (job '%s' %s): it is not a point in time", job, result);
		if (!strcmp(mode, "always"))
			snprintf(l->hint, sizeof(l->hint),
				 "with bitmap-mode always the next incremental builds on it; until then "
				 "the last complete point is %s", v->n > 1 ? v->links[1].path : "none");
		else
			snprintf(l->hint, sizeof(l->hint),
				 "delete it (its bitmap kept what it missed); the last complete point is %s",
				 v->n > 1 ? v->links[1].path : "none");
	} else if (strcmp(mode, "always")) {
		chain_problem(l, EXIT_CHAIN_PARTIAL,
			"a partial backup (job '%s' %s, bitmap-mode %s) used as a link: its bitmap kept "
			"clusters it lacks, so %s above it misses them", job, result, mode[0] ? mode : "none",
			v->links[i - 1].path);
		snprintf(l->hint, sizeof(l->hint),
			 "the points above it cannot be restored whole: restore %s or older, and start a new chain with a full backup",
			 i + 1 < v->n ? v->links[i + 1].path : "an older chain");
	} else {
		snprintf(l->note, sizeof(l->note), "partial (job '%s' %s), a valid link: bitmap-mode always",
			 job, result);
	}
}

void verify_free(struct verify *v)
{
	qcow2_chain_close(&v->chain);
	free(v->links);
	memset(v, 0, sizeof(*v));
}

/*
 * Open and check the chain of tip; 0 (v->status tells) or -ENOMEM.  With
 * as_base, a tip made partial with bitmap-mode always is valid: it is no
 * point in time, but the next incremental builds on it.
 */
static int verify_chain(const char *tip, struct verify *v, bool as_base, bool sums)
{
	char err[512];
	size_t extra;
	int rc;

	memset(v, 0, sizeof(*v));
	v->as_base = as_base;
	rc = qcow2_chain_open(tip, &v->chain, v->failed, sizeof(v->failed), err, sizeof(err));
	if (rc == -ENOMEM)
		return rc;
	/* a link that failed before it was opened (stat) is not a level */
	extra = rc && (!v->chain.n || strcmp(v->chain.level[v->chain.n - 1].path, v->failed));
	v->n = v->chain.n + extra;
	v->links = calloc(v->n, sizeof(*v->links));
	if (!v->links)
		return -ENOMEM;
	for (size_t i = 0; i < v->chain.n; i++) {
		struct qcow2_chain_level *lv = &v->chain.level[i];

		v->links[i].path = lv->path;
		v->links[i].size = lv->size;
		v->links[i].raw = !lv->r && lv->raw_fd >= 0;
		v->links[i].info = lv->r ? qcow2_reader_info(lv->r) : NULL;
	}
	if (extra)
		v->links[v->n - 1].path = v->failed;
	if (rc)
		open_failed(&v->links[v->n - 1], v->n > 1 ? &v->links[v->n - 2] : NULL, rc, err);
	for (size_t i = 0; i < v->n; i++) {
		struct link *l = &v->links[i];

		if (l->info)
			check_link(v, i);
		/* only a sound image's data is read; a partial one's record covers what it holds */
		if (l->info && sums && !l->status)
			chain_check_sums(l, v->chain.level[i].r);
		else if (l->raw && i && l->size != v->links[0].size)
			chain_problem(l, EXIT_CHAIN_SIZE, "raw base of %llu bytes, the tip has %llu",
				(unsigned long long)l->size, (unsigned long long)v->links[0].size);
		if (l->status && !v->status)
			v->status = l->status;
	}
	return 0;
}

/* verify_chain() for a command: 0, or EXIT_FAILED with the error printed. */
static int verify_cli(struct cli *c, const char *tip, struct verify *v, bool as_base)
{
	if (!verify_chain(tip, v, as_base, true))
		return 0;
	cli_error(c, "%s: %s", c->what, strerror(ENOMEM));
	verify_free(v);
	return EXIT_FAILED;
}

static json_object *link_json(const struct link *l, size_t level)
{
	json_object *o = json_object_new_object();
	const struct qcow2_info *i = l->info;

	json_object_object_add(o, "path", json_object_new_string(l->path));
	json_object_object_add(o, "level", json_object_new_int64((int64_t)level));
	json_object_object_add(o, "format", i ? json_object_new_string("qcow2") :
				l->raw ? json_object_new_string("raw") : NULL);
	json_object_object_add(o, "status", json_object_new_string(status_name(l->status)));
	if (i || l->raw)
		json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)l->size));
	if (i) {
		json_object_object_add(o, "cluster-size", json_object_new_int64(i->cluster_size));
		json_object_object_add(o, "file-size", json_object_new_int64((int64_t)i->file_size));
		json_object_object_add(o, "backing", i->backing[0] ?
				       json_object_new_string(i->backing) : NULL);
		json_object_object_add(o, "data-bytes",
				       json_object_new_int64((int64_t)l->chk.data_bytes));
		json_object_object_add(o, "zero-bytes",
				       json_object_new_int64((int64_t)l->chk.zero_bytes));
		json_object_object_add(o, "corruptions",
				       json_object_new_int64((int64_t)l->chk.corruptions));
		json_object_object_add(o, "leaks", json_object_new_int64((int64_t)l->chk.leaks));
		json_object_object_add(o, "incomplete", json_object_new_boolean(i->incomplete));
		json_object_object_add(o, "partial", json_object_new_boolean(i->partial));
		if (i->partial) {
			char text[QCOW2_TEXT_MAX];

			memcpy(text, i->partial_text, sizeof(text));
			json_object_object_add(o, "partial-record", image_record_json(text));
		}
	}
	if (i)
		json_object_object_add(o, "checksums", chain_sums_json(l));
	if (l->status) {
		json_object_object_add(o, "problem", json_object_new_string(l->problem));
		json_object_object_add(o, "hint", l->hint[0] ? json_object_new_string(l->hint) : NULL);
	}
	if (l->note[0])
		json_object_object_add(o, "note", json_object_new_string(l->note));
	return o;
}

static json_object *verify_json(const struct verify *v, const char *tip)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	json_object_object_add(o, "tip", json_object_new_string(tip));
	json_object_object_add(o, "status", json_object_new_string(status_name(v->status)));
	json_object_object_add(o, "exit", json_object_new_int(v->status));
	json_object_object_add(o, "images", a);
	for (size_t i = 0; i < v->n; i++)
		json_object_array_add(a, link_json(&v->links[i], i));
	return o;
}

/* Each problem on stderr: "bsyncctl: <what>: PATH: problem; hint". */
static void print_problems(struct cli *c, const struct verify *v)
{
	for (size_t i = 0; i < v->n; i++) {
		const struct link *l = &v->links[i];

		if (l->status)
			cli_error(c, "%s: %s: %s%s%s", c->what, l->path, l->problem,
				  l->hint[0] ? "; " : "", l->hint);
	}
}

int verify_or_refuse(struct cli *c, const char *tip, struct verify *v, bool as_base,
		     const char *refusal)
{
	int r = verify_cli(c, tip, v, as_base);

	if (r)
		return r;
	if (!v->status)
		return 0;
	print_problems(c, v);
	cli_error(c, "%s: the chain of %s is not valid%s", c->what, tip, refusal);
	r = v->status;
	verify_free(v);
	return r;
}

static void print_table(struct cli *c, const struct verify *v)
{
	static const char *const head[] = { "LEVEL", "IMAGE", "SIZE", "DATA", "CHECKSUMS", "STATUS" };
	static const enum align al[] = { ALIGN_RIGHT, ALIGN_LEFT, ALIGN_RIGHT, ALIGN_RIGHT,
					  ALIGN_LEFT, ALIGN_LEFT };
	struct table t;

	table_init(&t, 6, head, al);
	for (size_t i = 0; i < v->n; i++) {
		const struct link *l = &v->links[i];
		char lvl[24], size[32] = "-", data[32] = "-", st[320], sums[48];
		const char *row[6] = { lvl, l->path, size, data, chain_sums_text(l, sums, sizeof(sums)),
				       st };

		snprintf(lvl, sizeof(lvl), "%zu", i);
		if (l->info || l->raw)
			fmt_size_c(c, l->size, size, sizeof(size));
		if (l->info)
			fmt_size_c(c, l->chk.data_bytes, data, sizeof(data));
		else if (l->raw)
			snprintf(data, sizeof(data), "raw");
		snprintf(st, sizeof(st), "%s%s%s", l->status ? status_name(l->status) : "ok",
			 l->note[0] ? ": " : "", l->note);
		if (table_add(&t, row))
			break;
	}
	table_print(&t, c->out);
	table_free(&t);
}

int cmd_chain_verify(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "CHAIN-TIP" };
	struct verify v;
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 1, 1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "chain verify");
	r = verify_cli(c, pos[0], &v, false);
	if (r)
		return r;
	r = v.status;
	if (c->json) {
		json_object *o = verify_json(&v, pos[0]);

		print_json(c, o);
		json_object_put(o);
	} else {
		if (!c->quiet)
			print_table(c, &v);
		print_problems(c, &v);
		if (!r && !c->quiet)
			fprintf(c->out, "chain ok: %zu image%s, %s is a complete point in time\n", v.n,
				v.n > 1 ? "s" : "", pos[0]);
	}
	verify_free(&v);
	return r;
}

int chain_check_base(const char *path, uint64_t *vsize, char *detail, size_t len)
{
	struct verify v;
	int r;

	*vsize = 0;
	detail[0] = 0;
	/* before each nightly backup: the structure only, not every data cluster */
	if (verify_chain(path, &v, true, false)) {
		verify_free(&v);
		snprintf(detail, len, "%s: %s", path, strerror(ENOMEM));
		return EXIT_FAILED;
	}
	r = v.status;
	for (size_t i = 0; i < v.n && r; i++)
		if (v.links[i].status) {
			snprintf(detail, len, "%s: %s", v.links[i].path, v.links[i].problem);
			break;
		}
	if (v.n && (v.links[0].info || v.links[0].raw))
		*vsize = v.links[0].size;
	verify_free(&v);
	return r;
}
