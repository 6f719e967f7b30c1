// SPDX-License-Identifier: GPL-2.0
/*
 * Hostile existing images: mutated headers, tables and extensions of valid
 * empty images (byte flips, truncations, absurd sizes and offsets, L1
 * entries pointing at metadata or at each other).  qcow2_open_existing()
 * must refuse them with a message or accept them, never crash (ASan), never
 * allocate more than a bound (ASan max_allocation_size_mb below), and what
 * it accepts and fills must pass qemu-img check.
 */
#include "test-qcow2-common.h"

const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	/* every allocation above 24 MiB is a test failure (abort) */
	return "max_allocation_size_mb=24:allocator_may_return_null=0";
}

#define ITER_PER_KIND	150
#define MAX_QEMU_CHECKS	30	/* per kind */

struct base {
	const char *name;
	uint8_t *data;
	size_t len;
	uint32_t cs;
};

static int load(struct base *b, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	b->len = (size_t)st.st_size;
	b->data = malloc(b->len);
	if (!b->data || pread(fd, b->data, b->len, 0) != (ssize_t)b->len) {
		close(fd);
		return -1;
	}
	close(fd);
	b->cs = 1u << q_be32(b->data + 20);
	return 0;
}

static void put_be(uint8_t *p, unsigned width, uint64_t v)
{
	for (unsigned i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

static uint64_t absurd(const struct base *b)
{
	static const uint64_t v[] = {
		0, 1, 8, 511, 512, 0xffffffffull, 0x7fffffffull, 0x80000000ull,
		~0ull, 1ull << 63, 1ull << 56, 1ull << 40,
	};
	switch (tq_below(4)) {
	case 0:
		return v[tq_below(sizeof(v) / sizeof(v[0]))];
	case 1:
		return b->len + (tq_below(3) - 1) * 8;
	case 2:
		return (uint64_t)b->cs * tq_below(8);
	default:
		return tq_rand();
	}
}

/* Mutate buf (len in/out).  kind selects the family. */
static void mutate(const struct base *b, uint8_t *buf, size_t *len, int kind)
{
	static const struct { unsigned off, width; } fields[] = {
		{ 8, 8 }, { 16, 4 }, { 20, 4 }, { 24, 8 }, { 36, 4 }, { 40, 8 },
		{ 48, 8 }, { 56, 4 }, { 60, 4 }, { 64, 8 }, { 72, 8 }, { 80, 8 },
		{ 88, 8 }, { 96, 4 }, { 100, 4 },
	};
	uint64_t l1_off = q_be64(buf + 40), rt_off = q_be64(buf + 48);
	uint32_t l1_size = q_be32(buf + 36);
	unsigned n = 1 + (unsigned)tq_below(4);

	switch (kind) {
	case 0:	/* byte flips in the header area */
		for (unsigned i = 0; i < n; i++)
			buf[tq_below(*len < 512 ? *len : 512)] ^= (uint8_t)(1 + tq_below(255));
		break;
	case 1:	/* byte flips anywhere in the first clusters */
		for (unsigned i = 0; i < n; i++)
			buf[tq_below(*len)] ^= (uint8_t)(1 + tq_below(255));
		break;
	case 2:	/* truncation */
		*len = (size_t)tq_below(*len);
		break;
	case 3:	/* absurd header field */
		for (unsigned i = 0; i < (n + 1) / 2; i++) {
			unsigned f = (unsigned)tq_below(sizeof(fields) / sizeof(fields[0]));

			put_be(buf + fields[f].off, fields[f].width, absurd(b));
		}
		break;
	case 4: {	/* L1 entries pointing at metadata, loops, past EOF */
		uint64_t targets[] = {
			0, l1_off, rt_off, l1_off + 512, (uint64_t)b->len + b->cs,
			1ull << 55, (uint64_t)b->cs * 3, rt_off + 8,
		};

		for (unsigned i = 0; i < n && l1_size; i++) {
			uint64_t idx = tq_below(l1_size < 64 ? l1_size : 64);
			uint64_t e = targets[tq_below(sizeof(targets) / sizeof(targets[0]))];

			if (tq_below(2))
				e |= 1ull << 63;
			if (l1_off + idx * 8 + 8 <= *len)
				put_be(buf + l1_off + idx * 8, 8, e);
		}
		break;
	}
	case 5: {	/* extension area: bogus types and lengths */
		uint32_t hlen = q_be32(buf + 100);

		if (hlen + 16 <= *len) {
			static const uint32_t types[] = { 0xe2792aca, 0x6803f857, 0x23852875,
							  0x0537be77, 0x44415441, 0x12345678 };

			put_be(buf + hlen, 4, types[tq_below(6)]);
			put_be(buf + hlen + 4, 4, absurd(b));
		}
		break;
	}
	default: {	/* refcount table entries pointing at each other */
		for (unsigned i = 0; i < n; i++) {
			uint64_t idx = tq_below(16);

			if (rt_off + idx * 8 + 8 <= *len)
				put_be(buf + rt_off + idx * 8, 8,
				       tq_below(2) ? rt_off : absurd(b));
		}
		break;
	}
	}
}

int main(void)
{
	static const char *kinds[] = {
		"header byte flips", "byte flips in the first clusters", "truncations",
		"absurd header fields", "L1 entries at metadata/loops/EOF",
		"bogus extensions", "refcount table loops",
	};
	struct base bases[3] = {
		{ .name = "qemu-img 64K 1G" },
		{ .name = "qemu-img 512B 100M with backing" },
		{ .name = "ours 4K 64M closed empty" },
	};
	char path[512], err[512];
	int checks = 0, bad_checks = 0;

	tq_setup("test-qcow2-fuzz");
	if (getenv("TQ_SEED"))
		tq_rng = strtoull(getenv("TQ_SEED"), NULL, 0);
	if (tq_run("cd '%s' && qemu-img create -q -f qcow2 b0.qcow2 1G && qemu-img create -q -f qcow2 -o cluster_size=512 -b b0.qcow2 -F qcow2 b1.qcow2 100M",
		   tq_dir)) {
		tap_ok(0, "make base images: %s", tq_out);
		return tap_done();
	}
	{
		struct qcow2_create_opts o = { .virtual_size = 64 << 20, .cluster_size = 4096 };
		struct qcow2_image *img;
		int rc = qcow2_create(tq_path(path, sizeof(path), "b2.qcow2"), &o, &img,
				      err, sizeof(err));

		if (!rc)
			rc = qcow2_close(img, true, err, sizeof(err));
		tap_ok(!rc, "base image of ours (%s)", err);
	}
	for (int i = 0; i < 3; i++) {
		char name[32];

		snprintf(name, sizeof(name), "b%d.qcow2", i);
		if (load(&bases[i], tq_path(path, sizeof(path), name))) {
			tap_ok(0, "load base %s", name);
			return tap_done();
		}
	}
	tq_path(path, sizeof(path), "fuzz.qcow2");
	for (int kind = 0; kind < 7; kind++) {
		int refused = 0, accepted = 0, nomsg = 0, badrc = 0, kchecks = 0;

		for (int it = 0; it < ITER_PER_KIND; it++) {
			const struct base *b = &bases[it % 3];
			uint8_t *buf = malloc(b->len);
			size_t len = b->len;
			struct qcow2_image *img = NULL;
			int fd, rc;

			memcpy(buf, b->data, len);
			mutate(b, buf, &len, kind);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
				tap_diag("cannot write %s", path);
			close(fd);
			free(buf);
			err[0] = 0;
			rc = qcow2_open_existing(path, 0, &img, err, sizeof(err));
			if (rc) {
				refused++;
				if (!err[0])
					nomsg++;
				if (rc > 0 || rc < -4095)
					badrc++;
				continue;
			}
			accepted++;
			/* write a little and close; QEMU must agree */
			{
				uint32_t cs = qcow2_cluster_size(img);
				uint64_t vs = qcow2_virtual_size(img);
				uint64_t last = (vs - 1) & ~(uint64_t)(cs - 1);
				uint8_t *d = malloc(cs);

				memset(d, 0x3c, cs);
				rc = qcow2_write_cluster(img, 0, d, cs < vs ? cs : vs);
				if (!rc)
					rc = qcow2_write_zero(img, last, vs - last);
				free(d);
				if (rc == -EINVAL)	/* single-cluster image: same cluster */
					rc = 0;
				rc = rc ? rc : qcow2_close(img, true, err, sizeof(err));
				if (rc && img)
					tap_diag("%s #%d: write/close: %s", kinds[kind], it, err);
			}
			if (!rc && kchecks < MAX_QEMU_CHECKS) {
				kchecks++;
				checks++;
				/* without the backing file: names may be mutated */
				if (tq_run("qemu-img check --image-opts driver=qcow2,file.filename='%s',backing=",
					   path)) {
					bad_checks++;
					tap_diag("%s #%d (%s) accepted but qemu-img check: %s",
						 kinds[kind], it, b->name, tq_out);
					tq_run("cp '%s' '%s.bad%d'", path, path, bad_checks);
				}
			}
		}
		tap_ok(!nomsg && !badrc,
		       "%s: %d mutations, %d refused with a message, %d accepted, no crash",
		       kinds[kind], ITER_PER_KIND, refused, accepted);
	}
	tap_ok(!bad_checks, "accepted mutated images pass qemu-img check after writing (%d checked)",
	       checks);
	for (int i = 0; i < 3; i++)
		free(bases[i].data);
	tq_cleanup();
	return tap_done();
}
