// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl restore: a backup chain's point in time written onto a new file
 * (sparse) or a block device (zeroes by BLKZEROOUT), read with the
 * library's qcow2 reader; the daemon is not asked.  Restore refuses a chain
 * that is not valid (cmd-chain.c), before writing anything.  Each chunk
 * written is read back from the destination (not from the page cache) and
 * compared, unless --no-verify: a disk that stores other data than it was
 * given fails the restore, at the offset.  Written onto a bsync device, it
 * reports what became of the device's bitmaps, which decides whether the
 * next backup can be incremental.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>

#include "bsyncctl.h"
#include "cmd-chain.h"
#include "dmctl.h"
#include "qcow2-read.h"

#define SPARSE_PIECE (64u << 10)	/* what a new file skips when it reads zero */

struct dest {
	const char *path;
	int fd;
	int rfd;		/* read back: O_DIRECT, or -1 (rbfd after a flush) */
	int rbfd;		/* read back, buffered: when O_DIRECT is refused */
	bool verify;
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

/* The read-back descriptors (d->verify): O_DIRECT if the destination takes it. */
static int open_read_back(struct cli *c, struct dest *d)
{
	if (!d->verify)
		return 0;
	d->rfd = open(d->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	d->rbfd = open(d->path, O_RDONLY | O_CLOEXEC);
	if (d->rbfd >= 0)
		return 0;
	cli_error(c, "%s: cannot open %s to read back what is written: %s ('--no-verify' "
		  "restores without reading back)", c->what, d->path, strerror(errno));
	return EXIT_FAILED;
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
		return open_read_back(c, d);
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
	return open_read_back(c, d);
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
		json_object_object_add(o, "verified", json_object_new_boolean(d->verify));
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
	fprintf(c->out, "restored %s (%zu image%s, %s) onto %s: %s written, %s left sparse, %s\n",
		v->links[0].path, v->n, v->n > 1 ? "s" : "",
		fmt_size_c(c, v->links[0].size, sz, sizeof(sz)), d->path,
		fmt_size_c(c, written, wr, sizeof(wr)), fmt_size_c(c, skipped, sk, sizeof(sk)),
		d->verify ? "all read back and compared" : "not read back (--no-verify)");
	if (d->bsync)
		json_object_put(bsync_bitmaps(c, d, true));
}

static int read_all(int fd, uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;	/* the destination shrank under us */
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * Read back [off, off + n) of the destination as stored, not as the page
 * cache holds it: with O_DIRECT (the kernel writes the range back first),
 * else (a file system or length O_DIRECT refuses) after fdatasync and
 * POSIX_FADV_DONTNEED dropped the cached pages.  0 or -errno.
 */
static int read_back(struct dest *d, uint8_t *rbuf, uint64_t n, uint64_t off)
{
	if (d->rfd >= 0) {
		int rc = read_all(d->rfd, rbuf, n, off);

		if (rc != -EINVAL)
			return rc;
		close(d->rfd);	/* refused after all: buffered from now on */
		d->rfd = -1;
	}
	if (fdatasync(d->fd) < 0)
		return -errno;
	(void)posix_fadvise(d->rbfd, (off_t)off, (off_t)n, POSIX_FADV_DONTNEED);
	return read_all(d->rbfd, rbuf, n, off);
}

/* Check the chunk just written at off: 0, or EXIT_RESTORE_MISMATCH/FAILED told. */
static int verify_chunk(struct cli *c, struct dest *d, const uint8_t *buf, uint8_t *rbuf,
			uint64_t n, uint64_t off)
{
	uint64_t i = 0;
	int rc = read_back(d, rbuf, n, off);

	if (rc) {
		cli_error(c, "%s: reading back %s at offset %llu: %s", c->what, d->path,
			  (unsigned long long)off, strerror(-rc));
		return EXIT_FAILED;
	}
	if (!memcmp(buf, rbuf, n))
		return 0;
	while (buf[i] == rbuf[i])
		i++;
	cli_error(c, "%s: %s reads back other data than was written at offset %llu (in the %llu "
		  "bytes written at %llu): the destination does not keep what it is given; check "
		  "the disk (its kernel log, SMART) or restore onto another one", c->what, d->path,
		  (unsigned long long)(off + i), (unsigned long long)n, (unsigned long long)off);
	return EXIT_RESTORE_MISMATCH;
}

static int restore_copy(struct cli *c, struct verify *v, struct dest *d, uint64_t *written,
			uint64_t *skipped)
{
	uint64_t size = v->links[0].size;
	uint8_t *buf = aligned_alloc(4096, CHAIN_CHUNK), *zeroes = calloc(1, CHAIN_CHUNK);
	uint8_t *rbuf = d->verify ? aligned_alloc(4096, CHAIN_CHUNK) : NULL;
	char err[512];
	int r = 0;

	if (!buf || !zeroes || (d->verify && !rbuf)) {
		cli_error(c, "%s: %s", c->what, strerror(ENOMEM));
		r = EXIT_FAILED;
		goto out;
	}
	for (uint64_t off = 0; off < size && !r; off += CHAIN_CHUNK) {
		uint64_t n = size - off < CHAIN_CHUNK ? size - off : CHAIN_CHUNK;
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
		if (!r && d->verify)
			r = verify_chunk(c, d, buf, rbuf, n, off);
		if (!d->created)
			*written += n;
	}
	if (!r && fsync(d->fd) < 0) {
		cli_error(c, "%s: flushing %s: %s", c->what, d->path, strerror(errno));
		r = EXIT_FAILED;
	}
out:
	free(buf);
	free(rbuf);
	free(zeroes);
	return r;
}

enum { OPT_NO_VERIFY = 1 };

static int restore_opt(void *arg, int id, const char *val)
{
	((struct dest *)arg)->verify = false;
	return 0;
}

int cmd_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "no-verify", 0, false, OPT_NO_VERIFY },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "CHAIN-TIP", "DEST" };
	struct dest d = { .fd = -1, .rfd = -1, .rbfd = -1, .verify = true };
	uint64_t written = 0, skipped = 0;
	struct verify v;
	char **pos;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, restore_opt, &d, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 2, 2, names);
	if (r)
		return r;
	cli_set_what(c, "restore");
	d.path = pos[1];
	r = verify_or_refuse(c, pos[0], &v, false,
			     " ('bsyncctl chain verify' tells more): nothing was written");
	if (r)
		return r;
	r = open_dest(c, &d, v.links[0].size);
	if (!r)
		r = restore_copy(c, &v, &d, &written, &skipped);
	if (r && d.created) {
		unlink(d.path);
		cli_error(c, "%s: %s removed: it was not restored whole", c->what, d.path);
	} else if (r == EXIT_RESTORE_MISMATCH) {
		cli_error(c, "%s: %s was not restored whole", c->what, d.path);
	}
	if (!r)
		restore_report(c, &v, &d, written, skipped);
	if (d.fd >= 0)
		close(d.fd);
	if (d.rfd >= 0)
		close(d.rfd);
	if (d.rbfd >= 0)
		close(d.rbfd);
	verify_free(&v);
	return r;
}
