// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer API: argument checks, refusals of images we cannot extend,
 * error paths (target exists, missing directory, permission, no space),
 * huge virtual sizes at small cost.
 */
#include <sys/resource.h>
#include <signal.h>

#include "test-qcow2-common.h"
#include "qcow2-internal.h"

static char err[1024];

static int create_simple(const char *name, uint64_t size, uint32_t cs,
			 struct qcow2_image **img)
{
	char path[512];
	struct qcow2_create_opts o = { .virtual_size = size, .cluster_size = cs };

	return qcow2_create(tq_path(path, sizeof(path), name), &o, img, err,
			    sizeof(err));
}

static void test_create_args(void)
{
	static const struct {
		uint64_t size;
		uint32_t cs;
		const char *backing, *fmt;
		int rc;
		const char *what;
	} cases[] = {
		{ 1 << 20, 3000, NULL, NULL, -EINVAL, "cluster size not a power of two" },
		{ 1 << 20, 256, NULL, NULL, -EINVAL, "cluster size 256" },
		{ 1 << 20, 4u << 20, NULL, NULL, -EINVAL, "cluster size 4 MiB" },
		{ 0, 0, NULL, NULL, -EINVAL, "virtual size 0" },
		{ 1000, 0, NULL, NULL, -EINVAL, "virtual size not a multiple of 512" },
		{ 1ull << 60, 0, NULL, NULL, -EFBIG, "virtual size 2^60" },
		{ 1ull << 40, 512, NULL, NULL, -EFBIG, "1 TiB with 512-byte clusters (L1 over 32 MiB)" },
		{ 1 << 20, 0, "", NULL, -ENAMETOOLONG, "empty backing name" },
		{ 1 << 20, 0, NULL, "qcow2", -EINVAL, "backing format without backing file" },
		{ 1 << 20, 0, "b", "0123456789abcdef", -EINVAL, "backing format of 16 bytes" },
	};
	struct qcow2_image *img;
	char name[1100];
	int rc;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[512];
		struct qcow2_create_opts o = {
			.virtual_size = cases[i].size, .cluster_size = cases[i].cs,
			.backing_file = cases[i].backing, .backing_fmt = cases[i].fmt,
		};

		img = NULL;
		err[0] = 0;
		rc = qcow2_create(tq_path(path, sizeof(path), "args.qcow2"), &o,
				  &img, err, sizeof(err));
		tap_ok(rc == cases[i].rc && !img && err[0] && access(path, F_OK) != 0,
		       "create refuses %s: %d (%s)", cases[i].what, rc, err);
		if (img)
			qcow2_abort_and_unlink(img);
	}
	/*
	 * Backing names: 1023 bytes fit a 64K header cluster; 1024 do not.
	 * Long names that exist: "././././...bk1.qcow2".
	 */
	memset(name, 'n', sizeof(name));
	name[1024] = 0;
	tq_run("cd '%s' && qemu-img create -q -f qcow2 bk1.qcow2 1M && qemu-img create -q -f qcow2 bk12.qcow2 1M",
	       tq_dir);
	{
		char path[512];
		struct qcow2_create_opts o = { .virtual_size = 1 << 20, .backing_file = name };

		rc = qcow2_create(tq_path(path, sizeof(path), "long.qcow2"), &o, &img,
				  err, sizeof(err));
		tap_ok(rc == -ENAMETOOLONG, "create refuses a 1024-byte backing name (%s)", err);
		for (int i = 0; i < 507; i++)
			memcpy(name + 2 * i, "./", 2);
		strcpy(name + 1014, "bk1.qcow2");
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
		if (!rc)
			rc = qcow2_close(img, true, err, sizeof(err));
		tap_ok(!rc && tq_check(path) == 0 &&
		       tq_run("qemu-img info --output=json '%s'", path) == 0 &&
		       strstr(tq_out, "\"backing-filename\": \"./././"),
		       "a 1023-byte backing name is stored and read back by qemu-img");
		if (rc || tq_check(path))
			tap_diag("%s %s", err, tq_out);
		name[600] = 0;
		o.cluster_size = 512;
		unlink(path);
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
		tap_ok(rc == -ENAMETOOLONG && access(path, F_OK) != 0,
		       "a 600-byte backing name does not fit a 512-byte header cluster (%s)", err);
		strcpy(name + 290, "bk12.qcow2");
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
		if (!rc)
			rc = qcow2_close(img, true, err, sizeof(err));
		tap_ok(!rc && tq_check(path) == 0 &&
		       tq_run("qemu-img info --output=json '%s'", path) == 0 &&
		       strstr(tq_out, "\"backing-filename-format\": \"qcow2\""),
		       "a 300-byte backing name fits a 512-byte cluster (feature table dropped)");
		if (rc || tq_check(path))
			tap_diag("%s %s", err, tq_out);
		unlink(path);
	}
}

static void test_write_args(void)
{
	struct qcow2_image *img;
	char path[512], raw[512];
	uint8_t *buf = calloc(1, 3 * 65536);
	uint64_t size = 10 * 65536 + 1024;
	int rc, fd;

	rc = create_simple("w.qcow2", size, 65536, &img);
	tap_ok(!rc, "create 10.02-cluster image (%s)", err);
	if (rc) {
		free(buf);
		return;
	}
	tq_path(path, sizeof(path), "w.qcow2");
	fd = tq_raw_create(tq_path(raw, sizeof(raw), "w.raw"), size);
	memset(buf, 0x5a, 3 * 65536);
	tap_ok(qcow2_cluster_size(img) == 65536 && qcow2_virtual_size(img) == size,
	       "cluster and virtual size getters");
	tap_ok(qcow2_write_cluster(img, 512, buf, 65536) == -EINVAL &&
	       strstr(qcow2_errmsg(img), "aligned"),
	       "unaligned offset refused (%s)", qcow2_errmsg(img));
	tap_ok(qcow2_write_cluster(img, 0, buf, 1000) == -EINVAL,
	       "length not a multiple of the cluster size refused (%s)", qcow2_errmsg(img));
	tap_ok(qcow2_write_cluster(img, 0, buf, 0) == -EINVAL, "empty write refused");
	tap_ok(qcow2_write_cluster(img, 10 * 65536, buf, 65536) == -EINVAL,
	       "write past the end refused (%s)", qcow2_errmsg(img));
	tap_ok(qcow2_write_zero(img, 11 * 65536, 65536) == -EINVAL,
	       "zero past the end refused");
	tap_ok(qcow2_write_cluster(img, 10 * 65536, buf, 1024) == 0,
	       "partial last cluster written");
	tq_raw_write(fd, 10 * 65536, buf, 1024);
	tap_ok(qcow2_write_cluster(img, 65536, buf, 2 * 65536) == 0, "two clusters at once");
	tq_raw_write(fd, 65536, buf, 2 * 65536);
	tap_ok(qcow2_write_zero(img, 4 * 65536, 2 * 65536) == 0, "zero two clusters");
	tap_ok(qcow2_write_cluster(img, 2 * 65536, buf, 65536) == -EINVAL &&
	       strstr(qcow2_errmsg(img), "already written"),
	       "rewriting a data cluster refused (%s)", qcow2_errmsg(img));
	tap_ok(qcow2_write_zero(img, 5 * 65536, 65536) == -EINVAL,
	       "rewriting a zero cluster refused");
	tap_ok(qcow2_write_cluster(img, 3 * 65536, buf, 2 * 65536) == -EINVAL,
	       "a write overlapping a written cluster is refused");
	buf[0] = 1;
	tap_ok(qcow2_write_cluster(img, 3 * 65536, buf, 65536) == 0,
	       "... and wrote nothing: the free cluster can still be written");
	tq_raw_write(fd, 3 * 65536, buf, 65536);
	rc = qcow2_close(img, true, err, sizeof(err));
	tap_ok(!rc && tq_check(path) == 0 && tq_compare(path, raw) == 0,
	       "after refused calls the image is still correct (%s)", rc ? err : tq_out);
	close(fd);
	free(buf);
}

static void test_errors(void)
{
	struct qcow2_image *img = NULL;
	struct qcow2_create_opts o = { .virtual_size = 1 << 20 };
	char path[600], dir[512];
	int rc;

	rc = create_simple("exists.qcow2", 1 << 20, 0, &img);
	if (!rc)
		rc = qcow2_close(img, true, err, sizeof(err));
	rc = rc ? rc : create_simple("exists.qcow2", 1 << 20, 0, &img);
	tap_ok(rc == -EEXIST && strstr(err, "exist"),
	       "existing target refused with -EEXIST (%s)", err);
	tap_ok(tq_check(tq_path(path, sizeof(path), "exists.qcow2")) == 0,
	       "... and the existing image is untouched");

	rc = qcow2_create(tq_path(path, sizeof(path), "nodir/x.qcow2"), &o, &img,
			  err, sizeof(err));
	tap_ok(rc == -ENOENT && strstr(err, "nodir"),
	       "missing directory: -ENOENT (%s)", err);

	tq_path(dir, sizeof(dir), "ro");
	mkdir(dir, 0555);
	snprintf(path, sizeof(path), "%s/x.qcow2", dir);
	if (geteuid() == 0) {
		tap_ok(1, "# SKIP permission denied: running as root");
	} else {
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
		tap_ok(rc == -EACCES, "unwritable directory: -EACCES (%s)", err);
	}

	rc = qcow2_open_existing(tq_path(path, sizeof(path), "missing.qcow2"), 0,
				 &img, err, sizeof(err));
	tap_ok(rc == -ENOENT && !img, "open of a missing file: -ENOENT (%s)", err);

	/* abort_and_unlink removes the file */
	rc = create_simple("abort.qcow2", 1 << 20, 0, &img);
	if (!rc)
		qcow2_abort_and_unlink(img);
	tap_ok(!rc && access(tq_path(path, sizeof(path), "abort.qcow2"), F_OK) != 0,
	       "qcow2_abort_and_unlink removes the image");
}

/* No space: a 2 MiB tmpfs when we may mount one. */
static void test_enospc(void)
{
	char mnt[512], path[600];
	struct qcow2_create_opts o = { .virtual_size = 64 << 20 };
	struct qcow2_image *img;
	uint8_t *buf = malloc(1 << 20);
	int rc = 0, wrc = 0;

	tq_path(mnt, sizeof(mnt), "small");
	mkdir(mnt, 0700);
	if (tq_run("mount -t tmpfs -o size=2m tmpfs '%s'", mnt)) {
		tap_ok(1, "# SKIP ENOSPC: cannot mount a tmpfs (%s)", tq_out);
		free(buf);
		return;
	}
	snprintf(path, sizeof(path), "%s/full.qcow2", mnt);
	memset(buf, 0x77, 1 << 20);
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	for (int i = 0; !rc && !wrc && i < 40; i++)
		wrc = qcow2_write_cluster(img, (uint64_t)i << 20, buf, 1 << 20);
	if (!rc) {
		if (wrc)
			tap_diag("write failed as expected: %s", qcow2_errmsg(img));
		rc = qcow2_close(img, true, err, sizeof(err));
	}
	tap_ok((wrc == -ENOSPC || rc == -ENOSPC) && strstr(err, "free space"),
	       "no space: -ENOSPC with a message (%s)", err);
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == -EUCLEAN,
	       "... and the half-written image stays marked incomplete (%s)", err);
	tq_run("umount '%s'", mnt);
	free(buf);
}

/* File size limit (EFBIG) in a child: works without root. */
static void test_efbig(void)
{
	char path[512];
	pid_t pid;
	int st;

	tq_path(path, sizeof(path), "fsize.qcow2");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = { 1 << 20, 1 << 20 };
		struct qcow2_create_opts o = { .virtual_size = 64 << 20 };
		struct qcow2_image *img;
		static uint8_t buf[1 << 20];
		int rc, wrc = 0;

		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
		if (rc)
			_exit(10);
		for (int i = 0; !wrc && i < 20; i++)
			wrc = qcow2_write_cluster(img, (uint64_t)i << 20, buf, 1 << 20);
		rc = qcow2_close(img, true, err, sizeof(err));
		_exit((wrc == -EFBIG || rc == -EFBIG) ? 0 : 11);
	}
	waitpid(pid, &st, 0);
	tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "file size limit: write or close returns -EFBIG (status %d)", st);
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == -EUCLEAN,
	       "... and the image stays marked incomplete (%s)", err);
}

/* 16 TiB virtual: metadata proportional to what is written. */
static void test_huge(void)
{
	uint64_t size = (16ull << 40) - 512;	/* partial last cluster */
	struct qcow2_image *img;
	char path[512];
	uint8_t *buf = malloc(65536);
	struct stat st;
	int rc;

	memset(buf, 0xab, 65536);
	rc = create_simple("huge.qcow2", size, 65536, &img);
	if (!rc)
		rc = qcow2_write_cluster(img, 0, buf, 65536);
	if (!rc)
		rc = qcow2_write_cluster(img, 8ull << 40, buf, 65536);
	if (!rc)
		rc = qcow2_write_cluster(img, size - 65024, buf, 65024);
	if (!rc)
		rc = qcow2_write_zero(img, 4ull << 40, 1 << 20);
	if (!rc)
		rc = qcow2_close(img, true, err, sizeof(err));
	tap_ok(!rc, "16 TiB image written (%s)", rc ? err : "ok");
	tq_path(path, sizeof(path), "huge.qcow2");
	if (stat(path, &st))
		st.st_blocks = -1;
	tap_ok(st.st_blocks >= 0 && st.st_blocks * 512 < (4 << 20),
	       "16 TiB image uses %lld KiB on disk", (long long)st.st_blocks / 2);
	tap_ok(tq_check(path) == 0, "16 TiB image passes qemu-img check");
	rc = tq_run("qemu-io -r -f qcow2 -c 'read -P 0xab 0 64k' -c 'read -P 0xab 8T 64k' -c 'read -P 0xab %llu 65024' -c 'read -P 0 4T 1M' -c 'read -P 0 1T 64k' '%s'",
		    (unsigned long long)(size - 65024), path);
	if (!tap_ok(!rc && !strstr(tq_out, "failed"), "16 TiB image reads back"))
		tap_diag("%s", tq_out);
	unlink(path);
	free(buf);
}

/* Replace every '@' in tmpl by path. */
static const char *subst(char *out, size_t len, const char *tmpl, const char *path)
{
	size_t n = 0;

	for (; *tmpl && n + 1 < len; tmpl++) {
		if (*tmpl == '@') {
			n += (size_t)snprintf(out + n, len - n, "%s", path);
			if (n >= len)
				n = len - 1;
		} else {
			out[n++] = *tmpl;
		}
	}
	out[n] = 0;
	return out;
}

/* Images made by qemu-img that we must refuse, and mutated headers. */
static void test_refusals(void)
{
	static const struct {
		const char *make;	/* shell, %s = image path */
		int rc;
		const char *msg, *what;
	} cases[] = {
		{ "head -c 1048576 /dev/zero > '@'", -EINVAL, "not a qcow2", "raw file" },
		{ "printf QFI > '@'", -EINVAL, "too short", "truncated header" },
		{ "qemu-img create -q -f qcow2 -o compat=0.10 '@' 1M", -ENOTSUP, "version 2", "qcow2 v2" },
		{ "qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0 '@' 1M",
		  -ENOTSUP, "encrypted", "LUKS-encrypted image" },
		{ "qemu-img create -q -f qcow2 -o data_file='@.data' '@' 1M", -ENOTSUP, "external data", "external data file" },
		{ "qemu-img create -q -f qcow2 -o extended_l2=on '@' 1M", -ENOTSUP, "extended L2", "extended L2" },
		{ "qemu-img create -q -f qcow2 '@' 1M && qemu-img snapshot -c s1 '@'", -ENOTSUP, "snapshots", "internal snapshot" },
		{ "qemu-img create -q -f qcow2 '@' 1M && qemu-img bitmap --add '@' b0", -ENOTSUP, "bitmaps", "persistent bitmap" },
		{ "qemu-img create -q -f qcow2 '@' 1M && qemu-io -c 'write 64k 64k' '@' >/dev/null", -EINVAL, "not empty", "image with data" },
		{ "qemu-img create -q -f qcow2 '@' 1M && qemu-io -c 'write -z 0 64k' '@' >/dev/null", -EINVAL, "not empty", "image with a zero cluster" },
		{ "qemu-img create -q -f qcow2 '@' 2M", -EINVAL, "differs", "virtual size mismatch" },
		{ "qemu-img create -q -f qcow2 '@' 1M && printf '\\001' | dd of='@' bs=1 seek=79 conv=notrunc 2>/dev/null", -EUCLEAN, "dirty", "dirty bit" },
		{ "qemu-img create -q -f qcow2 '@' 1M && printf '\\002' | dd of='@' bs=1 seek=79 conv=notrunc 2>/dev/null", -EUCLEAN, "incomplete", "corrupt bit" },
		{ "qemu-img create -q -f qcow2 '@' 1M && printf '\\001' | dd of='@' bs=1 seek=35 conv=notrunc 2>/dev/null", -ENOTSUP, "encrypted", "crypt_method set" },
		{ "qemu-img create -q -f qcow2 '@' 1M && printf '\\200' | dd of='@' bs=1 seek=72 conv=notrunc 2>/dev/null", -ENOTSUP, "unknown incompatible", "unknown incompatible bit" },
		{ "qemu-img create -q -f qcow2 '@' 1M && printf '\\001' | dd of='@' bs=1 seek=104 conv=notrunc 2>/dev/null", -ENOTSUP, "compression type", "zstd compression type byte" },
		{ "mkdir '@'", -EISDIR, "directory", "directory" },
	};
	char path[512], cmd[1536];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qcow2_image *img = NULL;
		int rc;

		snprintf(path, sizeof(path), "%s/refuse%zu.qcow2", tq_dir, i);
		subst(cmd, sizeof(cmd), cases[i].make, path);
		/*
		 * Three tries: qemu-img's LUKS key setup times PBKDF2 on the
		 * thread's CPU clock and gives up ("Unable to get accurate CPU
		 * usage") now and then on a loaded host.
		 */
		rc = tq_run("rm -rf '%s' '%s.data' && %s", path, path, cmd);
		for (int t = 1; rc && t < 3; t++)
			rc = tq_run("rm -rf '%s' '%s.data' && %s", path, path, cmd);
		if (rc) {
			tap_ok(1, "# SKIP %s: cannot make it (%s)", cases[i].what, tq_out);
			continue;
		}
		err[0] = 0;
		rc = qcow2_open_existing(path, 1 << 20, &img, err, sizeof(err));
		tap_ok(rc == cases[i].rc && !img && strstr(err, cases[i].msg),
		       "open_existing refuses %s: %d (%s)", cases[i].what, rc, err);
		if (img)
			qcow2_abort_and_unlink(img);
	}
	/* zstd compression when qemu-img supports it */
	snprintf(path, sizeof(path), "%s/zstd.qcow2", tq_dir);
	if (tq_run("qemu-img create -q -f qcow2 -o compression_type=zstd '%s' 1M", path)) {
		tap_ok(1, "# SKIP zstd: qemu-img cannot make it");
	} else {
		struct qcow2_image *img = NULL;
		int rc = qcow2_open_existing(path, 0, &img, err, sizeof(err));

		tap_ok(rc == -ENOTSUP && !img, "open_existing refuses a zstd image (%s)", err);
		if (img)
			qcow2_abort_and_unlink(img);
	}
}

/* open_existing keeps refcount width, lazy refcounts and extensions. */
static void test_existing_keeps(void)
{
	char path[512], raw[512];
	struct qcow2_image *img = NULL;
	uint8_t buf[4096];
	int rc, fd;

	tq_path(path, sizeof(path), "keep.qcow2");
	tq_path(raw, sizeof(raw), "keep.raw");
	rc = tq_run("qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=64,lazy_refcounts=on '%s' 10M", path);
	if (!rc)
		rc = qcow2_open_existing(path, 10 << 20, &img, err, sizeof(err));
	tap_ok(!rc && qcow2_cluster_size(img) == 4096, "open_existing keeps the cluster size");
	if (rc)
		return;
	tap_ok(tq_run("qemu-io -f qcow2 -c 'write 0 4k' '%s'", path) != 0 &&
	       strstr(tq_out, "corrupt"),
	       "while we write, QEMU refuses to open the image read/write");
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == -EUCLEAN,
	       "while we write, the image is marked incomplete (%s)", err);
	fd = tq_raw_create(raw, 10 << 20);
	memset(buf, 0x42, sizeof(buf));
	for (int i = 0; !rc && i < 2560; i += 3) {
		rc = qcow2_write_cluster(img, (uint64_t)i * 4096, buf, 4096);
		tq_raw_write(fd, (uint64_t)i * 4096, buf, 4096);
	}
	rc = rc ? rc : qcow2_close(img, true, err, sizeof(err));
	close(fd);
	tap_ok(!rc && tq_check(path) == 0 && tq_compare(path, raw) == 0,
	       "filled image passes check and compare (%s)", rc ? err : tq_out);
	tap_ok(tq_run("qemu-img info --output=json '%s'", path) == 0 &&
	       strstr(tq_out, "\"refcount-bits\": 64") && strstr(tq_out, "\"lazy-refcounts\": true") &&
	       strstr(tq_out, "\"corrupt\": false"),
	       "refcount width, lazy refcounts kept; corrupt bit cleared");
	tap_ok(qcow2_check_complete(path, err, sizeof(err)) == 0, "image is complete");
}

/*
 * Fill a 48 MiB image with data in a scattered order, with only 4 resident
 * L2 tables: several 8 MiB appends, L2 tables written, evicted and read
 * back around them.  With 64 KiB clusters the appends go through O_DIRECT;
 * with 512 B clusters the first data cluster (26) is not 4 KiB aligned, so
 * they stay buffered although the O_DIRECT descriptor is open.
 */
static void direct_fill(uint32_t cs, bool expect_direct)
{
	struct qcow2_create_opts o = { .virtual_size = 48ull << 20, .cluster_size = cs };
	char path[512], raw[512];
	struct qcow2_image *img = NULL;
	uint64_t n = o.virtual_size / cs, step = 7919;	/* prime: visits all */
	uint8_t *buf = malloc(cs);
	int rc, fd, flags = 0;
	bool direct = false;

	snprintf(path, sizeof(path), "%s/direct-%u.qcow2", tq_dir, cs);
	snprintf(raw, sizeof(raw), "%s/direct-%u.raw", tq_dir, cs);
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	if (!rc && img->dfd >= 0) {
		flags = fcntl(img->dfd, F_GETFL);
		direct = flags >= 0 && (flags & O_DIRECT) &&
			 !((img->end * cs) & 4095);
	}
	if (expect_direct && !rc && img->dfd < 0)
		tap_ok(1, "# SKIP %s refuses O_DIRECT", tq_dir);
	else if (expect_direct)
		tap_ok(!rc && direct, "data appends go through an O_DIRECT descriptor");
	if (rc || !buf) {
		free(buf);
		return;
	}
	qcow2_set_l2_cache(img, 4 * cs);
	fd = tq_raw_create(raw, o.virtual_size);
	for (uint64_t i = 0, c = 0; !rc && i < n; i++, c = (c + step) % n) {
		if (c % 5 == 3)
			continue;	/* leave some unallocated */
		tq_fill(buf, cs);
		rc = qcow2_write_cluster(img, c * cs, buf, cs);
		tq_raw_write(fd, c * cs, buf, cs);
	}
	rc = rc ? rc : qcow2_close(img, true, err, sizeof(err));
	close(fd);
	tap_ok(!rc && tq_check(path) == 0 && tq_compare(path, raw) == 0,
	       "%u-byte clusters, %s 8 MiB appends and L2 evictions: check and compare pass (%s)",
	       cs, direct ? "O_DIRECT" : "buffered", rc ? err : tq_out);
	free(buf);
}

/*
 * Big aligned writes go from the caller's buffer to the disk (O_DIRECT, no
 * copy); small or unaligned ones through the append buffer; both mixed with
 * zero writes, across L2 tables (4 KiB clusters: 2 MiB per table), and a
 * partial last cluster.  The image must read back as the raw file.
 */

/*
 * Close the image (complete) and its raw reference after writes that
 * returned rc; both must pass qemu-img check and compare equal.
 */
static void finish_pair(struct qcow2_image *img, int fd, int rc, const char *path,
			const char *raw, const char *what)
{
	if (img) {
		int rc2 = qcow2_close(img, true, err, sizeof(err));

		rc = rc ? rc : rc2;
	}
	close(fd);
	tap_ok(!rc && tq_check(path) == 0 && tq_compare(path, raw) == 0,
	       "%s: check and compare pass (%s)", what, rc ? err : tq_out);
}

static void test_direct_from_caller(void)
{
	struct qcow2_create_opts o = { .virtual_size = (40ull << 20) + 1536, .cluster_size = 4096 };
	const size_t big = 1536u << 10;	/* 1.5 MiB: crosses table boundaries */
	char path[512], raw[512];
	struct qcow2_image *img = NULL;
	uint8_t *buf = aligned_alloc(4096, big + 4096);
	uint64_t off = 0;
	int rc, fd, i = 0;
	bool copied = false, uncopied = true;

	tq_path(path, sizeof(path), "from-caller.qcow2");
	tq_path(raw, sizeof(raw), "from-caller.raw");
	if (!buf)
		return;
	rc = qcow2_create(path, &o, &img, err, sizeof(err));
	if (!rc && img->dfd < 0) {
		tap_ok(1, "# SKIP %s refuses O_DIRECT", tq_dir);
		qcow2_abort_and_unlink(img);
		free(buf);
		return;
	}
	fd = tq_raw_create(raw, o.virtual_size);
	while (!rc && off + big + 8 <= o.virtual_size) {
		size_t len;
		uint8_t *p = buf;

		switch (i++ % 4) {
		case 0:		/* aligned and big: straight to disk */
			len = big;
			break;
		case 1:		/* unaligned buffer: copied */
			len = big;
			p = buf + 8;
			break;
		case 2:		/* small: copied */
			len = 8192;
			break;
		default:	/* zeroes */
			len = 3 * 4096;
			rc = qcow2_write_zero(img, off, len);
			off += len;
			continue;
		}
		tq_fill(p, len);
		rc = qcow2_write_cluster(img, off, p, len);
		tq_raw_write(fd, off, p, len);
		/* the buffer holds at most a new L2 table after a direct write */
		if (p == buf && len == big)
			uncopied = uncopied && img->abuf_len <= 4096;
		else if (p != buf)
			copied = copied || img->abuf_len > 4096;
		off += len;
	}
	/* the rest, from an aligned buffer: whole clusters, then a partial one */
	if (!rc) {
		size_t len = (size_t)(o.virtual_size - off);

		tq_fill(buf, len);
		rc = qcow2_write_cluster(img, off, buf, len);
		tq_raw_write(fd, off, buf, len);
	}
	tap_ok(!rc && uncopied && copied,
	       "aligned big writes bypass the append buffer, the others use it (%s)",
	       rc ? qcow2_errmsg(img) : "");
	finish_pair(img, fd, rc, path, raw, "writes from the caller's buffer");
	free(buf);
}

/* A new image NAME.qcow2 and its raw reference NAME.raw (paths of 512 bytes). */
static int create_pair(const char *name, const struct qcow2_create_opts *o, char *path,
		       char *raw, struct qcow2_image **img, int *fd)
{
	char n[64];

	snprintf(n, sizeof(n), "%s.qcow2", name);
	tq_path(path, 512, n);
	snprintf(n, sizeof(n), "%s.raw", name);
	tq_path(raw, 512, n);
	unlink(path);
	*fd = tq_raw_create(raw, o->virtual_size);
	return qcow2_create(path, o, img, err, sizeof(err));
}

/*
 * qcow2_write_sparse(): ranges with zero maps of every shape (alternating
 * clusters: more runs than one pwritev takes; all zero; all data; NULL),
 * aligned and not, big and small, across L2 tables (4 KiB clusters), and a
 * partial last cluster.  The image must read back as the raw file.
 */
static void test_sparse(void)
{
	struct qcow2_create_opts o = { .virtual_size = (24ull << 20) + 1536, .cluster_size = 4096 };
	const size_t big = 1536u << 10, ncl = big / 4096 + 1;
	char path[512], raw[512];
	struct qcow2_image *img = NULL;
	uint8_t *buf = aligned_alloc(4096, big + 8192);
	bool *zero = calloc(ncl, sizeof(bool));
	uint64_t off = 0;
	int rc, fd, i = 0;

	if (!buf || !zero) {
		free(buf);
		free(zero);
		return;
	}
	rc = create_pair("sparse", &o, path, raw, &img, &fd);
	while (!rc && off < o.virtual_size) {
		size_t len = big, k;
		uint8_t *p = buf;
		bool *z = zero;

		switch (i++ % 6) {
		case 0:		/* alternating: 192 data runs */
			for (k = 0; k < ncl; k++)
				zero[k] = k % 2;
			break;
		case 1:		/* random map, unaligned buffer: copied */
			p = buf + 512;
			for (k = 0; k < ncl; k++)
				zero[k] = rand() % 3 == 0;
			break;
		case 2:		/* all zero */
			for (k = 0; k < ncl; k++)
				zero[k] = true;
			break;
		case 3:		/* no map: all data */
			z = NULL;
			break;
		case 4:		/* small: copied */
			len = 64u << 10;
			for (k = 0; k < ncl; k++)
				zero[k] = k % 4 == 1;
			break;
		default:	/* runs of 8 clusters */
			for (k = 0; k < ncl; k++)
				zero[k] = (k / 8) % 2;
			break;
		}
		if (len > o.virtual_size - off)
			len = (size_t)(o.virtual_size - off);
		tq_fill(p, len);
		for (k = 0; z && k * 4096 < len; k++)
			if (z[k])	/* what the image must read there */
				memset(p + k * 4096, 0, len - k * 4096 < 4096 ? len - k * 4096 : 4096);
		rc = qcow2_write_sparse(img, off, p, len, z);
		tq_raw_write(fd, off, p, len);
		off += len;
	}
	tap_ok(!rc && off == o.virtual_size, "sparse writes of every shape accepted (%s)",
	       rc && img ? qcow2_errmsg(img) : "");
	finish_pair(img, fd, rc, path, raw, "sparse writes");
	free(buf);
	free(zero);
}

/*
 * qcow2_write_pieces(): batches of random pieces (gaps between them, random
 * zero maps, big and small, an unaligned buffer, the partial last cluster)
 * in 64 KiB and 4 KiB cluster images, the L2 cache at its minimum so that
 * tables are evicted within a batch.  Misordered, overlapping and rewritten
 * pieces are refused before anything is written.  The image must read back
 * as the raw file.
 */
static void pieces_image(uint32_t cs)
{
	struct qcow2_create_opts o = { .virtual_size = (40ull << 20) + 512, .cluster_size = cs };
	const size_t cap = 16u << 20;
	struct qcow2_piece pc[12];
	char path[512], raw[512];
	struct qcow2_image *img = NULL;
	uint8_t *buf = aligned_alloc(4096, cap + 4096);
	bool *zero = calloc(cap / cs + 1, sizeof(bool));
	uint64_t off = 0;
	int rc, fd, batches = 0, refused = 0, tries = 0;
	char what[64];

	if (!buf || !zero) {
		free(buf);
		free(zero);
		return;
	}
	rc = create_pair("pieces", &o, path, raw, &img, &fd);
	if (!rc)
		qcow2_set_l2_cache(img, 0);
	while (!rc && off < o.virtual_size) {
		size_t n = 0, used = 0, zused = 0, k, nmax = 1 + tq_below(12);
		bool unaligned = tq_below(8) == 0;

		while (n < nmax && off < o.virtual_size) {
			uint64_t len = cs * (1 + tq_below(tq_below(4) ? 8 : 96));
			uint8_t *p = buf + used + (unaligned ? 512 : 0);

			off += cs * tq_below(6);	/* a gap: left unallocated */
			if (off >= o.virtual_size)
				break;
			if (len > o.virtual_size - off)
				len = o.virtual_size - off;
			if (used + len + 512 > cap)
				break;
			tq_fill(p, len);
			for (k = 0; k * cs < len; k++) {
				zero[zused + k] = tq_below(3) == 0;
				if (zero[zused + k])
					memset(p + k * cs, 0, len - k * cs < cs ? len - k * cs : cs);
			}
			pc[n++] = (struct qcow2_piece){ off, p, len, tq_below(5) ? zero + zused : NULL };
			if (!pc[n - 1].zero)
				for (k = 0; k * cs < len; k++)
					zero[zused + k] = false;
			tq_raw_write(fd, off, p, len);
			used += (len + 4095) & ~(size_t)4095;
			zused += k;
			off += len;
		}
		if (n >= 2) {	/* misordered, then overlapping: refused, nothing written */
			struct qcow2_piece t = pc[0];

			pc[0] = pc[1];
			pc[1] = t;
			refused += qcow2_write_pieces(img, pc, n) == -EINVAL;
			tries += 2;
			pc[1] = pc[0];
			pc[0] = t;
			t = pc[1];
			pc[1].off = pc[0].off;
			refused += qcow2_write_pieces(img, pc, n) == -EINVAL;
			pc[1] = t;
		}
		if (n) {
			rc = qcow2_write_pieces(img, pc, n);
			batches++;
			if (!rc) {	/* written once: a second time is refused */
				refused += qcow2_write_pieces(img, pc, 1) == -EINVAL;
				tries++;
			}
		}
	}
	tap_ok(!rc && batches > 3 && refused == tries,
	       "%u-byte clusters: %d batches of pieces accepted, misordered, overlapping and rewritten ones refused (%s)",
	       cs, batches, rc && img ? qcow2_errmsg(img) : "");
	snprintf(what, sizeof(what), "%u-byte clusters: pieces", cs);
	finish_pair(img, fd, rc, path, raw, what);
	free(buf);
	free(zero);
}

static void test_direct(void)
{
	direct_fill(65536, true);
	direct_fill(512, false);
	test_direct_from_caller();
	test_sparse();
	pieces_image(65536);
	pieces_image(4096);
}

int main(void)
{
	tq_setup("test-qcow2-api");
	test_create_args();
	test_write_args();
	test_errors();
	test_enospc();
	test_efbig();
	test_huge();
	test_refusals();
	test_existing_keeps();
	test_direct();
	tq_cleanup();
	return tap_done();
}
