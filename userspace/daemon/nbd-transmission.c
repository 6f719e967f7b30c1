// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD server's transmission phase (see nbd-server.h and
 * nbd-server-internal.h): a connection's requests, one at a time, on the
 * export its handshake chose.  READ in NBD_IO_CHUNK pieces (simple or
 * structured replies), BLOCK_STATUS for the negotiated contexts from the
 * frozen bitmap's runs, FLUSH and CACHE as no-ops, EPERM for anything that
 * writes, and the read map: which granules some client read whole.
 *
 * The export is read-only and already frozen, so nothing here takes a
 * lock; the read map's bits are set atomically.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nbd-server-internal.h"

/*
 * The bitmap context and the read map
 */
size_t nbd_dirty_extents(const struct nbd_exp *x, uint64_t off, uint64_t len,
			 uint32_t (*out)[2], size_t max)
{
	const struct nbd_run *d = x->dirty;
	size_t lo = 0, hi = x->ndirty, k = 0;
	uint64_t pos = off, end;

	if (off >= x->size || !max)
		return 0;
	if (len > x->size - off)
		len = x->size - off;
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	end = off + len;
	while (lo < hi) {	/* the first run that ends after off */
		size_t mid = lo + (hi - lo) / 2;

		if (d[mid].off + d[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (pos < end) {
		uint64_t e;
		uint32_t flags;

		if (lo < x->ndirty && d[lo].off <= pos) {
			e = d[lo].off + d[lo].len;
			flags = NBD_STATE_DIRTY;
			lo++;
		} else {
			e = lo < x->ndirty ? d[lo].off : end;
			flags = 0;
		}
		if (e > end)
			e = end;
		if (e <= pos)
			continue;
		if (k && out[k - 1][1] == flags) {
			out[k - 1][0] += (uint32_t)(e - pos);
		} else {
			if (k == max)
				break;
			out[k][0] = (uint32_t)(e - pos);
			out[k][1] = flags;
			k++;
		}
		pos = e;
	}
	return k;
}

void nbd_mark_read(struct nbd_exp *x, uint64_t off, uint64_t len)
{
	uint64_t g = x->granularity, first, last, i;

	if (!x->readmap || !g || off >= x->size)
		return;
	if (len > x->size - off)
		len = x->size - off;
	first = (off + g - 1) / g;
	last = off + len == x->size ? (x->size + g - 1) / g : (off + len) / g;
	for (i = first; i < last; i++)
		__atomic_fetch_or(&x->readmap[i / 64], 1ull << (i % 64), __ATOMIC_RELAXED);
}

bool nbd_exp_all_read(const struct nbd_exp *x)
{
	uint64_t g = x->granularity;
	size_t r;

	if (!x->readmap || !g)
		return true;
	for (r = 0; r < x->ndirty; r++) {
		uint64_t i, e = (x->dirty[r].off + x->dirty[r].len + g - 1) / g;

		for (i = x->dirty[r].off / g; i < e; i++)
			if (!(__atomic_load_n(&x->readmap[i / 64], __ATOMIC_RELAXED) &
			      (1ull << (i % 64))))
				return false;
	}
	return true;
}

/*
 * Replies
 */
/* Read and drop n bytes (a WRITE's payload). */
static int discard(struct nbd_client *c, uint64_t n, uint8_t *buf, size_t cap)
{
	while (n) {
		size_t k = n < cap ? (size_t)n : cap;

		if (conn_recv(c, buf, k))
			return -1;
		n -= k;
	}
	return 0;
}

static void simple_header(uint8_t *h, uint64_t cookie, uint32_t err)
{
	put32(h, NBD_SIMPLE_REPLY_MAGIC);
	put32(h + 4, err);
	put64(h + 8, cookie);
}

static int simple_reply(struct nbd_client *c, uint64_t cookie, uint32_t err)
{
	uint8_t h[16];

	simple_header(h, cookie, err);
	return conn_send(c, h, 16);
}

static void chunk_header(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie,
			 uint32_t len)
{
	put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	put16(h + 4, flags);
	put16(h + 6, type);
	put64(h + 8, cookie);
	put32(h + 16, len);
}

static int error_reply(struct nbd_client *c, uint64_t cookie, uint32_t err, const char *msg)
{
	uint8_t h[20 + 6 + 128];
	size_t n = strlen(msg);

	if (!c->structured)
		return simple_reply(c, cookie, err);
	if (n > 128)
		n = 128;
	chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, (uint32_t)(6 + n));
	put32(h + 20, err);
	put16(h + 24, (uint16_t)n);
	memcpy(h + 26, msg, n);
	return conn_send(c, h, 26 + n);
}

static int errno_to_nbd(int e)
{
	switch (e) {
	case EPERM: case EROFS: return NBD_EPERM;
	case ENOMEM: return NBD_ENOMEM;
	case EINVAL: return NBD_EINVAL;
	default: return NBD_EIO;
	}
}

static int pread_full(int fd, uint8_t *buf, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pread(fd, buf, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EIO;	/* the view got shorter: it went away */
		buf += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/*
 * The splice path: the view's page-cache pages go into the connection's
 * pipe and from there into the socket by reference, so the daemon copies
 * no READ data (a buffered pread() and a send() were two copies, each the
 * CPU's).  Only in the clear: GnuTLS encrypts from a buffer.  false when
 * the connection must copy (TLS, or no pipe could be made).
 */
static bool splice_ready(struct nbd_client *c)
{
	if (c->tls || c->no_splice)
		return false;
	if (c->pipe[0] >= 0)
		return true;
	if (pipe2(c->pipe, O_CLOEXEC)) {
		c->pipe[0] = c->pipe[1] = -1;
		c->no_splice = true;
		return false;
	}
	/* a piece at any offset must fit whole, or splice_in() would block */
	if (fcntl(c->pipe[1], F_SETPIPE_SZ, NBD_PIPE_SIZE) < (int)(NBD_IO_CHUNK + 8192)) {
		close(c->pipe[0]);
		close(c->pipe[1]);
		c->pipe[0] = c->pipe[1] = -1;
		c->no_splice = true;
		return false;
	}
	return true;
}

/* Empty the pipe of n bytes that will not be sent. */
static void pipe_drop(struct nbd_client *c, size_t n)
{
	while (n) {
		ssize_t r = read(c->pipe[0], c->buf, n < NBD_IO_CHUNK ? n : NBD_IO_CHUNK);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		n -= (size_t)r;
	}
}

/* Put n bytes of the view at off into the pipe: 0, or -errno with the pipe empty. */
static int splice_in(struct nbd_client *c, size_t n, uint64_t off)
{
	loff_t o = (loff_t)off;
	size_t got = 0;

	while (got < n) {
		ssize_t r = splice(c->exp->fd, &o, c->pipe[1], NULL, n - got, SPLICE_F_MOVE);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r ? -errno : -EIO;	/* 0: the view got shorter */

			pipe_drop(c, got);
			return e;
		}
		got += (size_t)r;
	}
	return 0;
}

/* Send the n bytes in the pipe; more: another piece follows at once. */
static int splice_out(struct nbd_client *c, size_t n, bool more)
{
	while (n) {
		ssize_t r = splice(c->pipe[0], NULL, c->fd, NULL, n,
				   SPLICE_F_MOVE | (more ? SPLICE_F_MORE : 0));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		n -= (size_t)r;
	}
	return 0;
}

/* A reply's header, told to wait for the data behind it where it can. */
static int send_head(struct nbd_client *c, const uint8_t *h, size_t n, bool spliced)
{
	return spliced ? sock_full(c->fd, NULL, h, n, MSG_MORE) : conn_send(c, h, n);
}

/*
 * One piece of a READ's data: k bytes of the view at off, after the h_len
 * bytes of header in h.  The view is read before the header goes out, so
 * that a failure can still be answered: a positive errno then, with
 * nothing sent; -1 if the connection is over; 0 when sent.
 */
static int send_piece(struct nbd_client *c, const uint8_t *h, size_t h_len, uint64_t off,
		      size_t k, bool more)
{
	int r;

	if (splice_ready(c)) {
		r = splice_in(c, k, off);
		if (r)
			return -r;
		if (send_head(c, h, h_len, true) || splice_out(c, k, more))
			return -1;
		return 0;
	}
	r = pread_full(c->exp->fd, c->buf, k, off);
	if (r)
		return -r;
	if (conn_send(c, h, h_len) || conn_send(c, c->buf, k))
		return -1;
	return 0;
}

static int do_read(struct nbd_client *c, uint16_t flags, uint64_t cookie, uint64_t off,
		   uint32_t len)
{
	struct nbd_exp *x = c->exp;
	uint64_t done = 0;
	uint8_t h[28];
	int r;

	if (off > x->size || len > x->size - off)
		return error_reply(c, cookie, NBD_EINVAL, "read beyond the end of the export");
	if (len > NBD_MAX_PAYLOAD)
		return error_reply(c, cookie, NBD_EINVAL, "read larger than the maximum payload");
	if (c->structured && (flags & NBD_CMD_FLAG_DF) && len > NBD_IO_CHUNK)
		return error_reply(c, cookie, NBD_EOVERFLOW, "read too large for one chunk");
	if (len > NBD_IO_CHUNK && splice_ready(c))
		/* the pieces after the first are read ahead while it goes out */
		posix_fadvise(x->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
	if (!c->structured) {
		/* the first piece before the header, so that its error can be sent */
		size_t k = len < NBD_IO_CHUNK ? len : NBD_IO_CHUNK;

		simple_header(h, cookie, 0);
		r = send_piece(c, h, 16, off, k, k < len);
		if (r > 0)
			return error_reply(c, cookie, (uint32_t)errno_to_nbd(r), "");
		if (r)
			return -1;
		for (done = k; done < len; done += k) {
			k = len - done < NBD_IO_CHUNK ? (size_t)(len - done) : NBD_IO_CHUNK;
			if (send_piece(c, h, 0, off + done, k, done + k < len))
				return -1;	/* no way to report it now */
		}
		nbd_mark_read(x, off, len);
		return 0;
	}
	if (!len) {
		chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
		return conn_send(c, h, 20);
	}
	while (done < len) {
		size_t k = len - done < NBD_IO_CHUNK ? (size_t)(len - done) : NBD_IO_CHUNK;
		bool last = done + k == len;

		chunk_header(h, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
			     (uint32_t)(8 + k));
		put64(h + 20, off + done);
		r = send_piece(c, h, 28, off + done, k, !last);
		if (r > 0) {
			char msg[96];

			snprintf(msg, sizeof(msg), "reading the point-in-time view: %s", strerror(r));
			return error_reply(c, cookie, (uint32_t)errno_to_nbd(r), msg);
		}
		if (r)
			return -1;
		done += k;
	}
	nbd_mark_read(x, off, len);
	return 0;
}

static int status_chunk(struct nbd_client *c, uint64_t cookie, uint32_t id, size_t n, bool done)
{
	uint8_t h[24];
	size_t i;

	chunk_header(h, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
		     (uint32_t)(4 + 8 * n));
	put32(h + 20, id);
	for (i = 0; i < n; i++) {
		put32(c->buf + 8 * i, c->ext[i][0]);
		put32(c->buf + 8 * i + 4, c->ext[i][1]);
	}
	if (conn_send(c, h, 24))
		return -1;
	return conn_send(c, c->buf, 8 * n);
}

static int do_block_status(struct nbd_client *c, uint16_t flags, uint64_t cookie, uint64_t off,
			   uint32_t len)
{
	struct nbd_exp *x = c->exp;
	bool one = flags & NBD_CMD_FLAG_REQ_ONE;
	size_t n;

	if (!c->structured || !c->meta)
		return error_reply(c, cookie, NBD_EINVAL, "no metadata context was negotiated");
	if (!len || off >= x->size || len > x->size - off)
		return error_reply(c, cookie, NBD_EINVAL, "block status beyond the end of the export");
	if (c->meta & 1) {
		c->ext[0][0] = len;
		c->ext[0][1] = 0;	/* data: a block device has no holes we know of */
		if (status_chunk(c, cookie, NBD_META_ID_BASE_ALLOCATION, 1, !(c->meta & 2)))
			return -1;
	}
	if (c->meta & 2) {
		n = nbd_dirty_extents(x, off, len, c->ext, one ? 1 : NBD_MAX_EXTENTS);
		if (status_chunk(c, cookie, NBD_META_ID_DIRTY_BITMAP, n, true))
			return -1;
	}
	return 0;
}

void nbd_transmission(struct nbd_client *c)
{
	uint8_t h[28];

	for (;;) {
		uint16_t flags, type;
		uint64_t cookie, off;
		uint32_t len;
		int r;

		if (conn_recv(c, h, 28) || get32(h) != NBD_REQUEST_MAGIC)
			return;
		flags = get16(h + 4);
		type = get16(h + 6);
		cookie = get64(h + 8);
		off = get64(h + 16);
		len = get32(h + 24);
		switch (type) {
		case NBD_CMD_READ:
			r = do_read(c, flags, cookie, off, len);
			break;
		case NBD_CMD_WRITE:
			/* drain what fits, then refuse; a bigger payload ends the connection */
			if (len > NBD_MAX_PAYLOAD || discard(c, len, c->buf, NBD_IO_CHUNK)) {
				error_reply(c, cookie, NBD_EPERM, "read-only export");
				return;
			}
			r = error_reply(c, cookie, NBD_EPERM, "read-only export");
			break;
		case NBD_CMD_TRIM:
		case NBD_CMD_WRITE_ZEROES:
			r = error_reply(c, cookie, NBD_EPERM, "read-only export");
			break;
		case NBD_CMD_DISC:
			return;
		case NBD_CMD_FLUSH:
		case NBD_CMD_CACHE:
			r = simple_reply(c, cookie, 0);
			break;
		case NBD_CMD_BLOCK_STATUS:
			r = do_block_status(c, flags, cookie, off, len);
			break;
		default:
			r = error_reply(c, cookie, NBD_EINVAL, "unknown command");
			break;
		}
		if (r)
			return;
	}
}
