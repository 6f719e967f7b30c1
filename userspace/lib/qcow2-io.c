// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 writer: how bytes reach the image file.
 *
 * New clusters (data and L2 tables) only ever go at the end of the file, so
 * they are gathered in one append buffer and written in large sequential
 * writes, whatever order the guest's clusters come in.  Where the file
 * allows it, the buffer and large aligned caller buffers go to the disk
 * with O_DIRECT through a second descriptor: nothing is copied into the
 * page cache, the final fsync has little left to do and a backup does not
 * evict the host's cache.  Metadata writes elsewhere use the helpers here
 * too, so short reads and writes and EINTR are handled in one place.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qcow2-internal.h"

#define ABUF_BYTES	(8u << 20)

int qcow2_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {	/* past EOF reads as zero */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* pwritev until done; -errno on failure. */
static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt) {
		ssize_t n = pwritev(fd, iov, cnt, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int qcow2_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return len ? pwritev_all(fd, &iov, 1, off) : 0;
}

void qcow2_open_direct(struct qcow2_image *img)
{
	struct stat a, b;
	int fd = open(img->path, O_WRONLY | O_DIRECT | O_CLOEXEC);

	img->dfd = -1;
	if (fd < 0)
		return;
	/* the same file, not one renamed into its place meanwhile */
	if (fstat(fd, &a) < 0 || fstat(img->fd, &b) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(fd);
		return;
	}
	img->dfd = fd;
}

void qcow2_close_direct(struct qcow2_image *img)
{
	if (img->dfd >= 0)
		close(img->dfd);
	img->dfd = -1;
}

int qcow2_abuf_alloc(struct qcow2_image *img)
{
	img->abuf_cap = ABUF_BYTES > img->cs ? ABUF_BYTES : img->cs;
	/* aligned for O_DIRECT; both sizes are multiples of QCOW2_DIO_ALIGN */
	img->abuf = aligned_alloc(QCOW2_DIO_ALIGN, img->abuf_cap);
	return img->abuf ? 0 : -ENOMEM;
}

/*
 * Write the buffer with O_DIRECT when it is aligned: the data goes from
 * abuf to the disk without a copy into the page cache, nothing is left
 * dirty for the final fsync, and backups do not evict the host's cache.
 * Returns 1 if the caller must write it through the page cache instead.
 */
static int write_direct(struct qcow2_image *img, uint64_t off)
{
	int rc;

	if (img->dfd < 0 || ((off | img->abuf_len) & (QCOW2_DIO_ALIGN - 1)))
		return 1;
	rc = qcow2_pwrite_all(img->dfd, img->abuf, img->abuf_len, off);
	if (rc == -EINVAL || rc == -EOPNOTSUPP) {
		/* another alignment, or no O_DIRECT writes: stay buffered */
		qcow2_close_direct(img);
		return 1;
	}
	return rc;
}

int qcow2_flush_abuf(struct qcow2_image *img)
{
	uint64_t off;
	int rc;

	if (!img->abuf_len)
		return 0;
	off = (img->end << img->cluster_bits) - img->abuf_len;
	rc = write_direct(img, off);
	if (rc == 0) {
		img->abuf_len = 0;
		return 0;
	}
	if (rc < 0)
		return qcow2_fail(img, rc, "writing data");
	rc = qcow2_pwrite_all(img->fd, img->abuf, img->abuf_len, off);
	if (rc)
		return qcow2_fail(img, rc, "writing data");
	/*
	 * Start writeback now so that the disk works while the caller reads
	 * the next data, and the final fsync has little left to do.
	 */
	sync_file_range(img->fd, (off64_t)off, (off64_t)img->abuf_len,
			SYNC_FILE_RANGE_WRITE);
	img->abuf_len = 0;
	return 0;
}

/* Append one cluster (data, padded with zeros; or zeros if data is NULL). */
int qcow2_append_cluster(struct qcow2_image *img, const void *data,
			 size_t len, uint64_t *host)
{
	int rc;

	if (img->abuf_len + img->cs > img->abuf_cap) {
		rc = qcow2_flush_abuf(img);
		if (rc)
			return rc;
	}
	if (data)
		memcpy(img->abuf + img->abuf_len, data, len);
	else
		len = 0;
	memset(img->abuf + img->abuf_len + len, 0, img->cs - len);
	img->abuf_len += img->cs;
	*host = img->end << img->cluster_bits;
	img->end++;
	return 0;
}

int qcow2_flush_abuf_over(struct qcow2_image *img, uint64_t off, uint64_t len)
{
	uint64_t start = (img->end << img->cluster_bits) - img->abuf_len;

	if (img->abuf_len && off + len > start)
		return qcow2_flush_abuf(img);
	return 0;
}

/*
 * Append iov to the file with O_DIRECT, after the buffer (flushed first),
 * at *host. 1: the file refuses O_DIRECT, the caller copies instead.
 */
int qcow2_append_direct(struct qcow2_image *img, struct iovec *iov, int cnt,
			uint64_t *host)
{
	int rc = qcow2_flush_abuf(img);

	if (rc)
		return rc;
	*host = img->end << img->cluster_bits;
	rc = pwritev_all(img->dfd, iov, cnt, *host);
	if (rc == -EINVAL || rc == -EOPNOTSUPP) {
		qcow2_close_direct(img);
		return 1;
	}
	return rc ? qcow2_fail(img, rc, "writing data") : 0;
}
