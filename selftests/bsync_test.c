// SPDX-License-Identifier: GPL-2.0
/*
 * Helpers shared by the bsync guest selftests; see bsync_test.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bsync_test.h"

bool bt_wanted(const char *name)
{
	const char *list = getenv("BSYNC_TESTS"), *p;
	size_t n = strlen(name);

	if (!list || !*list)
		return true;
	for (p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ' ' || p[-1] == ',') &&
		    (p[n] == '\0' || p[n] == ' ' || p[n] == ','))
			return true;
	return false;
}

const char *bt_disk(int n)
{
	char var[32];

	snprintf(var, sizeof(var), "BSYNC_DISK%d", n);
	return getenv(var);
}

uint64_t bt_dev_bytes(const char *path)
{
	uint64_t bytes = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKGETSIZE64, &bytes))
		bytes = 0;
	close(fd);
	return bytes;
}

int bt_create(const char *name, const char *origin, const char *features)
{
	char params[512];
	uint64_t bytes = bt_dev_bytes(origin);

	if (!bytes)
		return -ENODEV;
	snprintf(params, sizeof(params), "%s%s%s", origin, *features ? " " : "", features);
	return dmctl_create(name, bytes >> 9, "bsync", params);
}

int bt_remove(const char *name)
{
	return dmctl_remove(name);
}

const char *bt_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "/dev/mapper/%s", name);
	return buf;
}

int bt_msg(const char *name, char *reply, size_t len, const char *fmt, ...)
{
	char msg[8192], *resp = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r = dmctl_message(name, msg, reply ? &resp : NULL);
	if (reply && len) {
		snprintf(reply, len, "%s", resp ? resp : "");
	}
	free(resp);
	return r;
}

static uint64_t field_u64(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int bt_bitmap_info(const char *dev, const char *bitmap, struct bt_bitmap_info *info)
{
	char *reply = NULL, *line, *save = NULL, want[160], parent[160];
	int r;

	memset(info, 0, sizeof(*info));
	r = dmctl_message(dev, "list", &reply);
	if (r)
		return r;
	snprintf(want, sizeof(want), "bitmap name=%s ", bitmap);
	snprintf(parent, sizeof(parent), "successor parent=%s ", bitmap);
	for (line = strtok_r(reply, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, want, strlen(want))) {
			info->found = true;
			info->granularity = field_u64(line, " granularity=");
			info->count = field_u64(line, " count=");
			info->recording = field_u64(line, " recording=");
			info->busy = field_u64(line, " busy=");
		} else if (!strncmp(line, parent, strlen(parent))) {
			info->has_successor = true;
			info->succ_count = field_u64(line, " count=");
			info->succ_recording = field_u64(line, " recording=");
		}
	}
	free(reply);
	return 0;
}

int bt_extents(const char *dev, const char *bitmap, unsigned int chunk,
	       bt_extent_fn fn, void *arg)
{
	uint64_t from = 0, off, len;
	char msg[256], *reply, *tok, *save;
	int r;

	for (;;) {
		if (bitmap)
			snprintf(msg, sizeof(msg), "extents %s %" PRIu64 " %u", bitmap, from, chunk);
		else
			snprintf(msg, sizeof(msg), "alloc_extents %" PRIu64 " %u", from, chunk);
		r = dmctl_message(dev, msg, &reply);
		if (r)
			return r;
		r = -EPROTO;
		for (tok = strtok_r(reply, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			if (sscanf(tok, "%" SCNu64 ":%" SCNu64, &off, &len) == 2) {
				fn(off, len, arg);
			} else if (!strcmp(tok, "end")) {
				r = 1;
			} else {
				from = strtoull(tok, NULL, 10);
				r = 0;
			}
		}
		free(reply);
		if (r)
			return r < 0 ? r : 0;
	}
}

int bt_model_init(struct bt_model *m, uint64_t dev_bytes, uint64_t gran)
{
	m->dev_bytes = dev_bytes;
	m->gran = gran;
	m->nr = (dev_bytes + gran - 1) / gran;
	m->bits = calloc(m->nr ? m->nr : 1, 1);
	return m->bits ? 0 : -ENOMEM;
}

void bt_model_free(struct bt_model *m)
{
	free(m->bits);
	m->bits = NULL;
}

void bt_model_mark(struct bt_model *m, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	for (uint64_t c = off / m->gran; c <= (off + len - 1) / m->gran && c < m->nr; c++)
		m->bits[c] = 1;
}

uint64_t bt_model_count_bytes(const struct bt_model *m)
{
	uint64_t n = 0;

	for (uint64_t c = 0; c < m->nr; c++)
		n += m->bits[c];
	return n * m->gran;
}

struct extent_cmp {
	const struct bt_model *m;
	uint8_t *seen;
	uint64_t expect_next;
	int bad;
	char *why;
	size_t whylen;
};

static void cmp_extent(uint64_t off, uint64_t len, void *arg)
{
	struct extent_cmp *c = arg;
	const struct bt_model *m = c->m;
	uint64_t end = off + len;

	if (c->bad)
		return;
	if (!len || off < c->expect_next || end > m->dev_bytes ||
	    (off % m->gran) || (end % m->gran && end != m->dev_bytes)) {
		snprintf(c->why, c->whylen, "malformed extent %" PRIu64 "+%" PRIu64, off, len);
		c->bad = 1;
		return;
	}
	/* Runs are maximal: a reported run never touches the previous one. */
	if (off && off == c->expect_next) {
		snprintf(c->why, c->whylen, "extent at %" PRIu64 " not merged with previous", off);
		c->bad = 1;
		return;
	}
	for (uint64_t b = off; b < end; b += m->gran)
		c->seen[b / m->gran] = 1;
	c->expect_next = end;
}

int bt_model_check_extents(const struct bt_model *m, const char *dev, const char *bitmap,
			   char *why, size_t whylen)
{
	struct extent_cmp c = { .m = m, .why = why, .whylen = whylen };
	int r;

	c.seen = calloc(m->nr ? m->nr : 1, 1);
	if (!c.seen)
		return -ENOMEM;
	/* Small chunks so that continuation is exercised too. */
	r = bt_extents(dev, bitmap, 7, cmp_extent, &c);
	if (r) {
		snprintf(why, whylen, "extents query failed: %s", strerror(-r));
		c.bad = 1;
	}
	for (uint64_t i = 0; !c.bad && i < m->nr; i++) {
		if (c.seen[i] != m->bits[i]) {
			snprintf(why, whylen, "cluster %" PRIu64 " (offset %" PRIu64 "): device says %s, model says %s",
				 i, i * m->gran, c.seen[i] ? "dirty" : "clean",
				 m->bits[i] ? "dirty" : "clean");
			c.bad = 1;
		}
	}
	free(c.seen);
	return c.bad ? -1 : 0;
}

uint64_t bt_seed(void)
{
	const char *s = getenv("BSYNC_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761ULL;

	return seed ? seed : 1;
}

uint64_t bt_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

void *bt_alloc_aligned(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		return NULL;
	return p;
}

int bt_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

int bt_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);

		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

int bt_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}
