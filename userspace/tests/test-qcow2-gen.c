// SPDX-License-Identifier: GPL-2.0
/*
 * Generated images: random virtual sizes (also not multiples of the cluster
 * size), cluster sizes 512 B..2 MiB, random write orders and data/zero
 * mixes, created by us or by qemu-img and then filled by us.  Each must pass
 * `qemu-img check` and compare equal to a raw reference built from the same
 * writes.
 */
#include "test-qcow2-common.h"

#define NIMAGES	200
#define GROUP	25

struct extent {
	uint64_t off, len;
	int kind;	/* 0 skip, 1 data, 2 zero */
};

static int gen_image(int n, char *why, size_t whylen)
{
	unsigned bits = 9 + (unsigned)tq_below(13);
	uint32_t cs = 1u << bits;
	uint64_t maxc = (16u << 20) >> bits, nc, size;
	bool existing = tq_below(3) == 0;
	struct qcow2_create_opts o = { 0 };
	struct qcow2_image *img = NULL;
	struct extent *ex = NULL;
	size_t nex = 0;
	char path[512], raw[512], err[512];
	uint8_t *buf = NULL;
	int rc = -1, fd = -1;

	if (maxc > 300)
		maxc = 300;
	nc = 1 + tq_below(maxc);
	size = (nc - 1) * cs + 512 * (1 + tq_below(cs / 512));
	tq_path(path, sizeof(path), "gen.qcow2");
	tq_path(raw, sizeof(raw), "gen.raw");
	unlink(path);
	fd = tq_raw_create(raw, size);
	buf = malloc((size_t)cs * 8);
	ex = calloc(nc, sizeof(*ex));
	if (fd < 0 || !buf || !ex) {
		snprintf(why, whylen, "setup failed");
		goto out;
	}
	if (existing) {
		static const unsigned rb[] = { 1, 2, 4, 8, 16, 32, 64 };

		if (tq_run("qemu-img create -f qcow2 -o cluster_size=%u,refcount_bits=%u,lazy_refcounts=%s '%s' %llu",
			   cs, rb[tq_below(7)], tq_below(2) ? "on" : "off", path,
			   (unsigned long long)size)) {
			snprintf(why, whylen, "qemu-img create: %s", tq_out);
			goto out;
		}
		rc = qcow2_open_existing(path, size, &img, err, sizeof(err));
	} else {
		o.virtual_size = size;
		o.cluster_size = cs;
		rc = qcow2_create(path, &o, &img, err, sizeof(err));
	}
	if (rc) {
		snprintf(why, whylen, "open/create: %s", err);
		goto out;
	}
	if (tq_below(2))
		qcow2_set_l2_cache(img, 0);	/* exercise L2 eviction */

	/* random extents over the whole disk, then written in random order */
	for (uint64_t c = 0; c < nc;) {
		uint64_t k = 1 + tq_below(8);

		if (k > nc - c)
			k = nc - c;
		ex[nex].off = c * cs;
		ex[nex].len = c + k == nc ? size - c * cs : k * cs;
		ex[nex].kind = (int)tq_below(20) < 9 ? 1 : tq_below(11) < 4 ? 2 : 0;
		nex++;
		c += k;
	}
	for (size_t i = nex; i > 1; i--) {
		size_t j = (size_t)tq_below(i);
		struct extent t = ex[i - 1];

		ex[i - 1] = ex[j];
		ex[j] = t;
	}
	for (size_t i = 0; i < nex; i++) {
		if (ex[i].kind == 1) {
			tq_fill(buf, ex[i].len);
			rc = qcow2_write_cluster(img, ex[i].off, buf, ex[i].len);
			if (!rc)
				rc = tq_raw_write(fd, ex[i].off, buf, ex[i].len);
		} else if (ex[i].kind == 2) {
			rc = qcow2_write_zero(img, ex[i].off, ex[i].len);
		}
		if (rc) {
			snprintf(why, whylen, "write %llu+%llu: %s",
				 (unsigned long long)ex[i].off,
				 (unsigned long long)ex[i].len, qcow2_errmsg(img));
			goto out;
		}
	}
	rc = qcow2_close(img, true, err, sizeof(err));
	img = NULL;
	if (rc) {
		snprintf(why, whylen, "close: %s", err);
		goto out;
	}
	rc = -1;
	if (tq_check(path)) {
		snprintf(why, whylen, "qemu-img check: %s", tq_out);
		goto out;
	}
	if (tq_compare(path, raw)) {
		snprintf(why, whylen, "qemu-img compare: %s", tq_out);
		goto out;
	}
	if (qcow2_check_complete(path, err, sizeof(err))) {
		snprintf(why, whylen, "qcow2_check_complete: %s", err);
		goto out;
	}
	rc = 0;
out:
	if (rc)
		tap_diag("image %d (cs %u, size %llu, %s): %s", n, cs,
			 (unsigned long long)size, existing ? "qemu-img create" : "ours", why);
	if (img)
		qcow2_abort_and_unlink(img);
	if (fd >= 0)
		close(fd);
	free(buf);
	free(ex);
	return rc;
}

int main(void)
{
	char why[16384];

	tq_setup("test-qcow2-gen");
	if (getenv("TQ_SEED"))
		tq_rng = strtoull(getenv("TQ_SEED"), NULL, 0);
	tap_diag("seed 0x%llx", (unsigned long long)tq_rng);
	for (int g = 0; g < NIMAGES; g += GROUP) {
		int bad = 0;

		for (int i = g; i < g + GROUP; i++)
			bad += gen_image(i, why, sizeof(why)) != 0;
		tap_ok(!bad, "generated images %d-%d pass qemu-img check and compare (%d failed)",
		       g, g + GROUP - 1, bad);
	}
	tq_cleanup();
	return tap_done();
}
