// SPDX-License-Identifier: GPL-2.0
/*
 * Backing chains three deep (full <- inc1 <- inc2), images created by us
 * and by `qemu-img create -b ... -F qcow2` then filled by us: the top of the
 * chain must read as the raw reference, zero clusters in an overlay must
 * hide backing data, and qemu-img info must report what we wrote.
 */
#include "test-qcow2-common.h"

static const char *names[3] = { "full.qcow2", "inc1.qcow2", "inc2.qcow2" };

/*
 * Write one level: data over a random half of the clusters, zero flags
 * over clusters that held data below (and a few others).
 */
static int fill_level(struct qcow2_image *img, int rawfd, uint64_t size,
		      int level, uint8_t *had_data, uint64_t *zero_hiding,
		      char *why, size_t whylen)
{
	uint32_t cs = qcow2_cluster_size(img);
	uint64_t nc = (size + cs - 1) / cs;
	uint8_t *buf = malloc(cs);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t k = 0; k < nc && !rc; k++) {
		/* visit clusters in a scrambled order */
		uint64_t c = (k * 7919 + (uint64_t)level * 31) % nc;
		uint64_t off = c * cs, len = off + cs > size ? size - off : cs;
		unsigned r = (unsigned)tq_below(10);

		if (level > 0 && had_data[c] && r < 3) {
			rc = qcow2_write_zero(img, off, len);
			if (!rc)
				rc = tq_raw_zero(rawfd, off, len);
			had_data[c] = 0;
			*zero_hiding = off;
		} else if (r < (level ? 6u : 8u)) {
			tq_fill(buf, len);
			rc = qcow2_write_cluster(img, off, buf, len);
			if (!rc)
				rc = tq_raw_write(rawfd, off, buf, len);
			had_data[c] = 1;
		} else if (r == 9 && level) {
			rc = qcow2_write_zero(img, off, len);
			if (!rc)
				rc = tq_raw_zero(rawfd, off, len);
			had_data[c] = 0;
		}
	}
	if (rc)
		snprintf(why, whylen, "level %d: write failed: %s", level,
			 qcow2_errmsg(img));
	free(buf);
	return rc;
}

/*
 * by_qemu: images made with qemu-img create, filled via open_existing.
 * cs_mix: use a different cluster size at each level.
 */
static void run_chain(const char *tag, bool by_qemu, bool cs_mix, uint64_t size)
{
	static const uint32_t mix[3] = { 65536, 4096, 131072 };
	char path[512], raw[512], err[512], why[16384] = "";
	uint64_t nc_max = size / 512 + 1, zero_hiding = UINT64_MAX;
	uint8_t *had = calloc(nc_max, 1);
	int rawfd, rc = 0, ok_compare = 1, ok_check = 1, ok_info = 1;

	tq_path(raw, sizeof(raw), "chain.raw");
	for (int i = 0; i < 3; i++)
		unlink(tq_path(path, sizeof(path), names[i]));
	rawfd = tq_raw_create(raw, size);
	if (rawfd < 0 || !had) {
		tap_ok(0, "%s: setup", tag);
		free(had);
		return;
	}
	for (int lvl = 0; lvl < 3 && !rc; lvl++) {
		uint32_t cs = cs_mix ? mix[lvl] : 65536;
		struct qcow2_image *img = NULL;

		/* had_data is per cluster of the current level's size */
		if (lvl && cs_mix) {
			/* remap: a cluster had data if any sub-range had */
			memset(had, 1, nc_max);
		}
		tq_path(path, sizeof(path), names[lvl]);
		if (by_qemu) {
			if (lvl)
				rc = tq_run("cd '%s' && qemu-img create -q -f qcow2 -o cluster_size=%u -b %s -F qcow2 %s",
					    tq_dir, cs, names[lvl - 1], names[lvl]);
			else
				rc = tq_run("qemu-img create -q -f qcow2 -o cluster_size=%u '%s' %llu",
					    cs, path, (unsigned long long)size);
			if (rc) {
				snprintf(why, sizeof(why), "qemu-img create: %s", tq_out);
				break;
			}
			rc = qcow2_open_existing(path, size, &img, err, sizeof(err));
		} else {
			struct qcow2_create_opts o = {
				.virtual_size = size, .cluster_size = cs,
				.backing_file = lvl ? names[lvl - 1] : NULL,
				.backing_fmt = lvl ? "qcow2" : NULL,
			};

			rc = qcow2_create(path, &o, &img, err, sizeof(err));
		}
		if (rc) {
			snprintf(why, sizeof(why), "level %d open: %s", lvl, err);
			break;
		}
		rc = fill_level(img, rawfd, size, lvl, had, &zero_hiding, why,
				sizeof(why));
		if (rc) {
			qcow2_abort_and_unlink(img);
			break;
		}
		rc = qcow2_close(img, true, err, sizeof(err));
		if (rc) {
			snprintf(why, sizeof(why), "level %d close: %s", lvl, err);
			break;
		}
		if (tq_check(path)) {
			ok_check = 0;
			tap_diag("%s: level %d check: %s", tag, lvl, tq_out);
		}
		if (tq_compare(path, raw)) {
			ok_compare = 0;
			tap_diag("%s: level %d compare: %s", tag, lvl, tq_out);
		}
		if (lvl && (tq_run("qemu-img info --output=json '%s'", path) ||
			    !strstr(tq_out, "\"backing-filename-format\": \"qcow2\"") ||
			    !strstr(tq_out, names[lvl - 1]))) {
			ok_info = 0;
			tap_diag("%s: level %d info: %s", tag, lvl, tq_out);
		}
	}
	close(rawfd);
	if (!tap_ok(!rc, "%s: three-level chain written", tag))
		tap_diag("%s", why);
	if (rc) {
		free(had);
		return;
	}
	tap_ok(ok_check, "%s: every level passes qemu-img check", tag);
	tap_ok(ok_compare, "%s: every level (read through its chain) equals the raw reference", tag);
	tap_ok(ok_info, "%s: qemu-img info reports the backing file and format", tag);
	if (zero_hiding != UINT64_MAX) {
		tq_path(path, sizeof(path), names[2]);
		rc = tq_run("qemu-io -r -f qcow2 -c 'read -P 0 %llu 512' '%s'",
			    (unsigned long long)zero_hiding, path);
		if (!tap_ok(!rc && !strstr(tq_out, "failed"),
			    "%s: a zero cluster over backing data reads as zeroes", tag))
			tap_diag("%s", tq_out);
	}
	/* our own open refuses a non-empty image */
	tq_path(path, sizeof(path), names[2]);
	{
		struct qcow2_image *img = NULL;

		rc = qcow2_open_existing(path, size, &img, err, sizeof(err));
		if (!tap_ok(rc == -EINVAL && strstr(err, "not empty"),
			    "%s: open_existing refuses the filled top image (%s)", tag, err) && img)
			qcow2_abort_and_unlink(img);
	}
	free(had);
}

/* Zero flags in an overlay over a fully written base, checked directly. */
static void zero_hides_backing(void)
{
	char base[512], top[512], err[512];
	struct qcow2_create_opts o = { .virtual_size = 1 << 20, .cluster_size = 65536 };
	struct qcow2_image *img;
	uint8_t *buf = malloc(1 << 20);
	int rc;

	tq_path(base, sizeof(base), "zb.qcow2");
	tq_path(top, sizeof(top), "zt.qcow2");
	memset(buf, 0xa5, 1 << 20);
	rc = qcow2_create(base, &o, &img, err, sizeof(err));
	if (!rc)
		rc = qcow2_write_cluster(img, 0, buf, 1 << 20);
	if (!rc)
		rc = qcow2_close(img, true, err, sizeof(err));
	o.backing_file = "zb.qcow2";	/* relative to the overlay */
	o.backing_fmt = NULL;		/* defaults to qcow2 */
	if (!rc)
		rc = qcow2_create(top, &o, &img, err, sizeof(err));
	if (!rc)
		rc = qcow2_write_zero(img, 65536, 3 * 65536);
	if (!rc)
		rc = qcow2_close(img, true, err, sizeof(err));
	tap_ok(!rc, "overlay with zero clusters written (%s)", rc ? err : "ok");
	rc = tq_run("qemu-io -r -f qcow2 -c 'read -P 0 65536 196608' -c 'read -P 0xa5 0 65536' -c 'read -P 0xa5 262144 786432' '%s'",
		    top);
	if (!tap_ok(!rc && !strstr(tq_out, "failed"),
		    "zero clusters hide backing data; unwritten clusters read the backing file"))
		tap_diag("%s", tq_out);
	rc = tq_run("qemu-img info --output=json '%s'", top);
	tap_ok(!rc && strstr(tq_out, "\"backing-filename\": \"zb.qcow2\"") &&
	       strstr(tq_out, "\"backing-filename-format\": \"qcow2\""),
	       "default backing format is qcow2");
	rc = tq_run("qemu-img map --output=json '%s'", top);
	tap_ok(!rc && strstr(tq_out, "\"start\": 65536, \"length\": 196608, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false"),
	       "zero clusters are recorded as zero flags without data");
	if (rc || !strstr(tq_out, "\"zero\": true"))
		tap_diag("%s", tq_out);
	free(buf);
}

int main(void)
{
	tq_setup("test-qcow2-chain");
	run_chain("ours 64K", false, false, 64ull << 20);
	run_chain("qemu-img 64K", true, false, 64ull << 20);
	run_chain("ours mixed cluster sizes, partial end", false, true, (40ull << 20) + 4608);
	run_chain("qemu-img mixed cluster sizes, partial end", true, true, (40ull << 20) + 4608);
	zero_hides_backing();
	tq_cleanup();
	return tap_done();
}
