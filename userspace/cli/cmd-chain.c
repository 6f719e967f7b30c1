// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl chain verify, restore: a backup chain's images read with the
 * library's own qcow2 reader (lib/qcow2-read.h); the daemon is not asked.
 *
 * A chain is valid when every link exists, every image is structurally
 * sound and finished (not marked incomplete), every image has the tip's
 * virtual size, and no partial image (a failed or cancelled job's, see
 * "image info") is where it cannot be: never the tip (it is not a point in
 * time), and a link only when its job ran with bitmap-mode always (the
 * bitmap then kept nothing of what it copied, so the next incremental
 * builds on it; otherwise the bitmap kept clusters the image lacks, and
 * the image above it misses them).  Restore refuses a chain that is not
 * valid, before writing anything.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>

#include "bsyncctl.h"
#include "dmctl.h"
#include "qcow2-read.h"

/* One link's findings. */
struct link {
	const char *path;
	const struct qcow2_info *info;	/* NULL: not opened (or raw) */
	bool raw;
	uint64_t size;
	struct qcow2_check chk;
	int status;			/* EXIT_OK, EXIT_FAILED or EXIT_CHAIN_* */
	char problem[640];
	char hint[512];
	char note[256];			/* not a problem: leaks, a partial valid link */
};

struct verify {
	struct qcow2_chain chain;
	struct link *links;
	size_t n;
	int status;			/* the first problem's, from the tip */
	bool as_base;			/* the tip is to be the next backup's base */
	char failed[PATH_MAX];
};

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

__attribute__((format(printf, 3, 4)))
static void problem(struct link *l, int status, const char *fmt, ...)
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
			problem(l, EXIT_CHAIN_BROKEN, "missing: %s names it as its backing file (%s)",
				above->path, strerror(-rc));
			snprintf(l->hint, sizeof(l->hint),
				 "put the image back at that path; if it was moved, point the image above at it: "
				 "qemu-img rebase -u -F qcow2 -b NEW-PATH %s", above->path);
		} else {
			problem(l, EXIT_CHAIN_BROKEN, "%s", err);
		}
	} else if (rc == -EINVAL || rc == -EUCLEAN) {
		problem(l, EXIT_CHAIN_DAMAGED, "%s", err);
		snprintf(l->hint, sizeof(l->hint),
			 "the image cannot be read: the chain above it cannot be restored; "
			 "start a new chain with a full backup");
	} else {
		problem(l, EXIT_FAILED, "%s", err);
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
		problem(l, EXIT_CHAIN_DAMAGED,
			"marked incomplete: the backup writing it did not finish (the daemon or the host died)");
		snprintf(l->hint, sizeof(l->hint),
			 "delete it: its bitmap was given back, so the next backup copies what it missed");
	} else if (info->dirty) {
		problem(l, EXIT_CHAIN_DAMAGED, "marked dirty: its refcounts were not written back");
		snprintf(l->hint, sizeof(l->hint), "qemu-img check -r all %s repairs it", l->path);
	}
	rc = qcow2_reader_check(r, &l->chk);
	if (rc) {
		problem(l, EXIT_FAILED, "cannot check: %s", qcow2_reader_errmsg(r));
	} else if (l->chk.corruptions) {
		problem(l, EXIT_CHAIN_DAMAGED, "%llu error%s in its structure, the first: %s",
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

		problem(l, EXIT_CHAIN_SIZE,
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
		problem(l, EXIT_CHAIN_PARTIAL,
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
		problem(l, EXIT_CHAIN_PARTIAL,
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

static void verify_free(struct verify *v)
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
static int verify_chain(const char *tip, struct verify *v, bool as_base)
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
		else if (l->raw && i && l->size != v->links[0].size)
			problem(l, EXIT_CHAIN_SIZE, "raw base of %llu bytes, the tip has %llu",
				(unsigned long long)l->size, (unsigned long long)v->links[0].size);
		if (l->status && !v->status)
			v->status = l->status;
	}
	return 0;
}

/* verify_chain() for a command: 0, or EXIT_FAILED with the error printed. */
static int verify_cli(struct cli *c, const char *tip, struct verify *v, bool as_base)
{
	if (!verify_chain(tip, v, as_base))
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

static void print_table(struct cli *c, const struct verify *v)
{
	static const char *const head[] = { "LEVEL", "IMAGE", "SIZE", "DATA", "STATUS" };
	static const enum align al[] = { ALIGN_RIGHT, ALIGN_LEFT, ALIGN_RIGHT, ALIGN_RIGHT,
					  ALIGN_LEFT };
	struct table t;

	table_init(&t, 5, head, al);
	for (size_t i = 0; i < v->n; i++) {
		const struct link *l = &v->links[i];
		char lvl[24], size[32] = "-", data[32] = "-", st[320];
		const char *row[5] = { lvl, l->path, size, data, st };

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
	if (verify_chain(path, &v, true)) {
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

/* ------------------------------------------------------------------ */
/* restore                                                             */

#define RESTORE_CHUNK (1u << 20)
#define SPARSE_PIECE (64u << 10)	/* what a new file skips when it reads zero */

struct dest {
	const char *path;
	int fd;
	bool created;		/* a new file: reads as zeroes, unlinked on failure */
	bool blockdev;
	uint64_t size;
	char dm_name[128];	/* a device-mapper device's name, or "" */
	bool bsync;		/* it is a bsync device */
};

/* Is the block device st a device-mapper one, and which? Its name in d->dm_name. */
static void dm_name_of(const struct stat *st, struct dest *d)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/dm/name", major(st->st_rdev),
		 minor(st->st_rdev));
	f = fopen(p, "re");
	if (!f)
		return;
	if (fgets(d->dm_name, sizeof(d->dm_name), f))
		d->dm_name[strcspn(d->dm_name, "\n")] = 0;
	else
		d->dm_name[0] = 0;
	fclose(f);
}

static int open_dest(struct cli *c, struct dest *d, uint64_t need)
{
	struct stat st;
	char sz[32], nd[32];

	if (stat(d->path, &st) < 0) {
		if (errno != ENOENT) {
			cli_error(c, "%s: %s: %s", c->what, d->path, strerror(errno));
			return EXIT_FAILED;
		}
		d->fd = open(d->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (d->fd < 0) {
			cli_error(c, "%s: cannot create %s: %s", c->what, d->path, strerror(errno));
			return EXIT_FAILED;
		}
		d->created = true;
		d->size = need;
		if (ftruncate(d->fd, (off_t)need) < 0) {
			cli_error(c, "%s: cannot size %s to %llu bytes: %s", c->what, d->path,
				  (unsigned long long)need, strerror(errno));
			return EXIT_FAILED;
		}
		return 0;
	}
	if (!S_ISBLK(st.st_mode)) {
		cli_error(c, "%s: %s exists: restore writes a new file or a block device; "
			  "remove it or name another", c->what, d->path);
		return EXIT_FAILED;
	}
	d->blockdev = true;
	/* O_EXCL: refused while mounted, or held by md, LVM, a dm table... */
	d->fd = open(d->path, O_WRONLY | O_EXCL | O_CLOEXEC);
	if (d->fd < 0) {
		cli_error(c, "%s: cannot open %s for writing: %s%s", c->what, d->path, strerror(errno),
			  errno == EBUSY ? " (it is in use: mounted, or part of another device; "
					   "stop what uses it first)" : "");
		return EXIT_FAILED;
	}
	if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
		cli_error(c, "%s: cannot get the size of %s: %s", c->what, d->path, strerror(errno));
		return EXIT_FAILED;
	}
	if (d->size < need) {
		cli_error(c, "%s: %s is too small: %s, the chain's image is %s", c->what, d->path,
			  fmt_size(d->size, sz, sizeof(sz)), fmt_size(need, nd, sizeof(nd)));
		return EXIT_FAILED;
	}
	dm_name_of(&st, d);
	if (d->dm_name[0]) {
		struct dmctl_table t;
		int opens = dmctl_open_count(d->dm_name);

		/* a VM's QEMU opens its disk without O_EXCL: the open count tells */
		if (opens > 1) {
			cli_error(c, "%s: %s is in use: it is open %d more time%s (a VM, a backup?); "
				  "stop what uses it first", c->what, d->path, opens - 1,
				  opens > 2 ? "s" : "");
			return EXIT_FAILED;
		}
		if (!dmctl_status(d->dm_name, true, &t)) {
			d->bsync = t.type && !strcmp(t.type, "bsync");
			dmctl_table_free(&t);
		}
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* Into a file that reads as zeroes: only the pieces that are not zero. */
static int write_sparse(int fd, const uint8_t *p, uint64_t len, uint64_t off, uint64_t *written,
			uint64_t *skipped)
{
	for (uint64_t at = 0; at < len; at += SPARSE_PIECE) {
		uint64_t n = len - at < SPARSE_PIECE ? len - at : SPARSE_PIECE;
		int rc;

		if (qcow2_is_zero(p + at, n)) {
			*skipped += n;
			continue;
		}
		rc = write_all(fd, p + at, n, off + at);
		if (rc)
			return rc;
		*written += n;
	}
	return 0;
}

/* Zeroes over [off, off + len) of a block device: BLKZEROOUT, else writes. */
static int zero_blockdev(int fd, uint64_t off, uint64_t len, const uint8_t *zeroes)
{
	uint64_t range[2] = { off, len };

	if (!ioctl(fd, BLKZEROOUT, range))
		return 0;
	return write_all(fd, zeroes, len, off);
}

/*
 * What became of the bitmaps of a bsync device written through: the
 * recording ones saw every write, the others did not.
 */
static json_object *bsync_bitmaps(struct cli *c, const struct dest *d, bool print)
{
	json_object *a = json_object_new_array();
	char *reply = NULL, *save = NULL, *line;

	if (dmctl_message(d->dm_name, "list", &reply)) {
		if (print)
			fprintf(c->out, "note: %s is a bsync device, but its bitmaps cannot be listed: "
				"take a full backup next\n", d->dm_name);
		return a;
	}
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[160] = "";
		int recording = 0, inconsistent = 0;
		const char *p;
		json_object *o;

		if (strncmp(line, "bitmap ", 7))
			continue;
		p = strstr(line, "name=");
		if (p)
			sscanf(p + 5, "%159s", name);
		p = strstr(line, " recording=");
		recording = p ? atoi(p + 11) : 0;
		p = strstr(line, " inconsistent=");
		inconsistent = p ? atoi(p + 14) : 0;
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(name));
		json_object_object_add(o, "recording", json_object_new_boolean(recording));
		json_object_object_add(o, "inconsistent", json_object_new_boolean(inconsistent));
		json_object_object_add(o, "next-backup", json_object_new_string(
			recording && !inconsistent ? "incremental" : "full"));
		json_object_array_add(a, o);
		if (!print)
			continue;
		if (recording && !inconsistent) {
			fprintf(c->out, "bitmap %s: every restored cluster is dirty in it; its next "
				"incremental copies the whole device\n", name);
		} else {
			fprintf(c->out, "bitmap %s: %s: it did not see the restore; run 'bsyncctl bitmap "
				"clear %s %s' and take a full backup before any incremental with it\n",
				name, inconsistent ? "inconsistent" : "not recording", d->dm_name, name);
		}
	}
	if (print && !json_object_array_length(a))
		fprintf(c->out, "note: %s has no bitmap: add one and take a full backup to start a "
			"new chain\n", d->dm_name);
	free(reply);
	return a;
}

static void restore_report(struct cli *c, const struct verify *v, const struct dest *d,
			   uint64_t written, uint64_t skipped)
{
	char sz[32], wr[32], sk[32];

	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "tip", json_object_new_string(v->links[0].path));
		json_object_object_add(o, "images", json_object_new_int64((int64_t)v->n));
		json_object_object_add(o, "dest", json_object_new_string(d->path));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)v->links[0].size));
		json_object_object_add(o, "written", json_object_new_int64((int64_t)written));
		json_object_object_add(o, "sparse", json_object_new_int64((int64_t)skipped));
		json_object_object_add(o, "bsync-device",
				       d->bsync ? json_object_new_string(d->dm_name) : NULL);
		if (d->bsync)
			json_object_object_add(o, "bitmaps", bsync_bitmaps(c, d, false));
		print_json(c, o);
		json_object_put(o);
		return;
	}
	if (c->quiet)
		return;
	fprintf(c->out, "restored %s (%zu image%s, %s) onto %s: %s written, %s left sparse\n",
		v->links[0].path, v->n, v->n > 1 ? "s" : "",
		fmt_size_c(c, v->links[0].size, sz, sizeof(sz)), d->path,
		fmt_size_c(c, written, wr, sizeof(wr)), fmt_size_c(c, skipped, sk, sizeof(sk)));
	if (d->bsync)
		json_object_put(bsync_bitmaps(c, d, true));
}

static int restore_copy(struct cli *c, struct verify *v, struct dest *d, uint64_t *written,
			uint64_t *skipped)
{
	uint64_t size = v->links[0].size;
	uint8_t *buf = aligned_alloc(4096, RESTORE_CHUNK), *zeroes = calloc(1, RESTORE_CHUNK);
	char err[512];
	int r = 0;

	if (!buf || !zeroes) {
		cli_error(c, "%s: %s", c->what, strerror(ENOMEM));
		r = EXIT_FAILED;
		goto out;
	}
	for (uint64_t off = 0; off < size && !r; off += RESTORE_CHUNK) {
		uint64_t n = size - off < RESTORE_CHUNK ? size - off : RESTORE_CHUNK;
		bool zero;
		int rc = qcow2_chain_pread(&v->chain, buf, n, off, &zero, err, sizeof(err));

		if (rc) {
			cli_error(c, "%s: %s", c->what, err);
			r = rc == -EUCLEAN ? EXIT_CHAIN_DAMAGED : EXIT_FAILED;
			break;
		}
		if (d->created)	/* a new file reads as zeroes already: write the rest */
			rc = write_sparse(d->fd, buf, n, off, written, skipped);
		else if (zero && d->blockdev)
			rc = zero_blockdev(d->fd, off, n, zeroes);
		else
			rc = write_all(d->fd, buf, n, off);
		if (rc) {
			cli_error(c, "%s: writing %s at offset %llu: %s", c->what, d->path,
				  (unsigned long long)off, strerror(-rc));
			r = EXIT_FAILED;
		}
		if (!d->created)
			*written += n;
	}
	if (!r && fsync(d->fd) < 0) {
		cli_error(c, "%s: flushing %s: %s", c->what, d->path, strerror(errno));
		r = EXIT_FAILED;
	}
out:
	free(buf);
	free(zeroes);
	return r;
}

int cmd_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "CHAIN-TIP", "DEST" };
	struct dest d = { .fd = -1 };
	uint64_t written = 0, skipped = 0;
	struct verify v;
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 2, 2, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "restore");
	d.path = pos[1];
	r = verify_cli(c, pos[0], &v, false);
	if (r)
		return r;
	r = v.status;
	if (r) {
		print_problems(c, &v);
		cli_error(c, "%s: the chain of %s is not valid ('bsyncctl chain verify' tells more): "
			  "nothing was written", c->what, pos[0]);
		goto out;
	}
	r = open_dest(c, &d, v.links[0].size);
	if (!r)
		r = restore_copy(c, &v, &d, &written, &skipped);
	if (r && d.created) {
		unlink(d.path);
		cli_error(c, "%s: %s removed: it was not restored whole", c->what, d.path);
	}
	if (!r)
		restore_report(c, &v, &d, written, skipped);
out:
	if (d.fd >= 0)
		close(d.fd);
	verify_free(&v);
	return r;
}

/* ------------------------------------------------------------------ */
/* merge                                                               */

/* fsync the directory holding path: a rename or unlink in it is durable. */
static int sync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

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
	uint64_t chunk = RESTORE_CHUNK > cs ? RESTORE_CHUNK : cs;
	uint8_t *buf = aligned_alloc(4096, chunk);
	char err[512], failed[PATH_MAX];
	int rc;

	rc = buf ? qcow2_chain_open(top, &ch, failed, sizeof(failed), err, sizeof(err)) : -ENOMEM;
	if (!rc)
		rc = qcow2_create(tmp, &o, &img, err, sizeof(err));
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

		rc = rc ? rc : cr;
		if (rc)
			unlink(tmp);
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
	char tmp[PATH_MAX + 16];
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
	r = verify_cli(c, pos[0], &v, true);
	if (r)
		return r;
	r = v.status;
	if (r) {
		print_problems(c, &v);
		cli_error(c, "%s: the chain of %s is not valid: nothing was merged", c->what, pos[0]);
		goto out;
	}
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
	/* the one step that changes the chain: top's name now holds top and base merged */
	if (rename(tmp, top->path) < 0 || sync_dir_of(top->path)) {
		cli_error(c, "%s: cannot put %s in place of %s: %s", c->what, tmp, top->path,
			  strerror(errno));
		unlink(tmp);
		r = EXIT_FAILED;
		goto out;
	}
	if (!keep && (unlink(base->path) < 0 || sync_dir_of(base->path)))
		cli_error(c, "%s: merged, but cannot delete the old base %s (no longer in the chain): %s",
			  c->what, base->path, strerror(errno));
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
