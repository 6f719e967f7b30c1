// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: the device every command works on.
 *
 * Opening (exclusively, so no live bsync device writes under the tool),
 * whole-block I/O bounded by the device's size, the format's CRC and
 * layout, and the list of problems found.  Kept apart from the commands so
 * that check, dump and repair share one notion of what a block read is and
 * what a problem is.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bsync-metadata-internal.h"

/*
 * CRC-32C, reflected polynomial 0x82f63b78, one table.
 */
static uint32_t crc_table[256];

static void crc_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		for (c = i, j = 0; j < 8; j++)
			c = (c >> 1) ^ (c & 1 ? 0x82f63b78U : 0);
		crc_table[i] = c;
	}
}

uint32_t bmd_crc32c(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~0U;

	if (!crc_table[1])
		crc_init();
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

void bmd_layout(uint64_t nr_blocks, struct bmd_layout *l)
{
	uint64_t n;

	memset(l, 0, sizeof(*l));
	if (nr_blocks < BSYNC_MD_SB_BLOCKS + 1)
		return;
	n = (nr_blocks - BSYNC_MD_SB_BLOCKS) / 8;
	l->log_start = BSYNC_MD_SB_BLOCKS;
	l->log_blocks = n < 1 ? 1 : n > BSYNC_MD_LOG_BLOCKS ? BSYNC_MD_LOG_BLOCKS : n;
	l->area_blocks = (nr_blocks - BSYNC_MD_SB_BLOCKS - l->log_blocks) / 2;
	l->area_start[0] = BSYNC_MD_SB_BLOCKS + l->log_blocks;
	l->area_start[1] = l->area_start[0] + l->area_blocks;
}

void bmd_problem(struct md *m, const char *fmt, ...)
{
	va_list ap;
	char *line;

	if (m->nprob == MAX_PROBLEMS) {
		m->nprob_more++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	if (line)
		m->prob[m->nprob++] = line;
	else
		m->nprob_more++;
}

size_t bmd_nproblems(const struct md *m)
{
	return m->nprob + m->nprob_more;
}

static void md_free(struct md *m)
{
	size_t i;

	for (i = 0; i < m->nprob; i++)
		free(m->prob[i]);
	for (i = 0; i < BSYNC_MD_MAX_BITMAPS; i++)
		free(m->bm[i].bits);
}

/* pread or pwrite n blocks at block, whole; end_err if they are not all on the device */
static int rw_blocks(struct md *m, uint64_t block, uint64_t n, void *buf, bool write, int end_err)
{
	size_t len = n * BS, done = 0;

	if (block > m->dev_blocks || n > m->dev_blocks - block)
		return end_err;
	while (done < len) {
		off_t at = (off_t)(block * BS + done);
		ssize_t r = write ? pwrite(m->fd, (const char *)buf + done, len - done, at)
				  : pread(m->fd, (char *)buf + done, len - done, at);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return write ? -EIO : -ENODATA;
		done += (size_t)r;
	}
	return 0;
}

int bmd_read_blocks(struct md *m, uint64_t block, uint64_t n, void *buf)
{
	return rw_blocks(m, block, n, buf, false, -ENODATA);
}

int bmd_write_blocks(struct md *m, uint64_t block, uint64_t n, const void *buf)
{
	return rw_blocks(m, block, n, (void *)buf, true, -ENOSPC);
}

int bmd_open(struct md *m, const char *path, bool rw, FILE *err)
{
	struct stat st;
	int fd;

	memset(m, 0, sizeof(*m));
	m->path = path;
	m->fd = -1;
	m->cur = -1;
	if (stat(path, &st)) {
		int e = errno;

		fprintf(err, "bsync-metadata: cannot open %s: %s\n", path, strerror(e));
		return -e;
	}
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
		fprintf(err, "bsync-metadata: %s is neither a block device nor a file\n", path);
		return -EINVAL;
	}
	fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_EXCL : 0));
	if (fd < 0) {
		int e = errno;

		if (e == EBUSY)
			fprintf(err, "bsync-metadata: cannot open %s exclusively: %s (a bsync device or another user holds it: remove the device first, or work on a copy)\n",
				path, strerror(e));
		else
			fprintf(err, "bsync-metadata: cannot open %s: %s\n", path, strerror(e));
		return -e;
	}
	m->fd = fd;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &m->dev_bytes)) {
			int e = errno;

			fprintf(err, "bsync-metadata: cannot get the size of %s: %s\n", path, strerror(e));
			close(fd);
			m->fd = -1;
			return -e;
		}
	} else {
		m->dev_bytes = (uint64_t)st.st_size;
	}
	m->dev_blocks = m->dev_bytes / BS;
	return 0;
}

void bmd_close(struct md *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	md_free(m);
}
