// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD server: see nbd-server.h.
 *
 * A thread accepts connections (poll() on the listener and a wake-up
 * pipe); each connection gets a detached thread of its own that runs the
 * handshake and then serves its requests one at a time with blocking I/O.
 * A connection holds a reference on its export (exp->clients); removing an
 * export or stopping the server shuts the sockets down, which wakes the
 * threads, and waits for the references to go.  A connection's memory is
 * bounded: the option being parsed (NBD_MAX_OPTION), a READ piece
 * (NBD_IO_CHUNK) and one BLOCK_STATUS chunk (NBD_MAX_EXTENTS).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbd-server.h"

struct nbd_client {
	int fd;
	bool structured;
	bool no_zeroes;
	unsigned meta;				/* selected contexts: bit 0 base, bit 1 bitmap */
	char meta_export[NBD_MAX_NAME + 1];	/* the export the selection is for */
	struct nbd_exp *exp;			/* chosen by GO / EXPORT_NAME */
	struct nbd_exp *using;			/* the export it holds a reference on (S.mu) */
	uint8_t *opt;				/* the option's data (handshake only) */
	uint8_t rep[NBD_MAX_NAME + 64];		/* a reply's data (handshake only) */
	uint8_t *buf;				/* READ pieces, BLOCK_STATUS payloads */
	uint32_t (*ext)[2];
	struct nbd_client *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool running;
	int listen_fd, wake[2];
	pthread_t acceptor;
	char *unix_path;
	unsigned max_conn;
	int nclients;
	struct nbd_client *clients;
	struct nbd_exp *exps;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
	.listen_fd = -1, .wake = { -1, -1 } };

/*
 * Bytes
 */
static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Whole reads and writes; -1 on EOF, error or timeout (the connection is over). */
static int recv_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = recv(fd, p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int send_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int discard(int fd, uint64_t n, uint8_t *buf, size_t cap)
{
	while (n) {
		size_t k = n < cap ? (size_t)n : cap;

		if (recv_full(fd, buf, k))
			return -1;
		n -= k;
	}
	return 0;
}

static void set_timeout(int fd, int opt, int secs)
{
	struct timeval tv = { .tv_sec = secs };

	setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * The pure parts
 */
unsigned nbd_meta_match(const struct nbd_exp *x, const char *q, size_t qlen, bool list)
{
	static const char base[] = "base:allocation", dbm[] = "qemu:dirty-bitmap:";
	size_t nd = sizeof(dbm) - 1;

#define IS(s) (qlen == strlen(s) && !memcmp(q, s, qlen))
	if (IS(base) || (list && IS("base:")))
		return 1;
	if (!x->bitmap)
		return 0;
	if (list && (IS("qemu:") || IS(dbm)))
		return 2;
	if (qlen == nd + strlen(x->bitmap) && !memcmp(q, dbm, nd) &&
	    !memcmp(q + nd, x->bitmap, qlen - nd))
		return 2;
#undef IS
	return 0;
}

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
 * Exports, by name
 */
/* A connection holds at most one reference, recorded so that a hard removal finds it. */
static struct nbd_exp *exp_get(struct nbd_client *c, const char *name, size_t len)
{
	struct nbd_exp *x;

	pthread_mutex_lock(&S.mu);
	for (x = S.exps; x; x = x->next)
		if (!x->removed && strlen(x->name) == len && !memcmp(x->name, name, len))
			break;
	if (x) {
		x->clients++;
		c->using = x;
	}
	pthread_mutex_unlock(&S.mu);
	return x;
}

static void exp_put(struct nbd_client *c)
{
	pthread_mutex_lock(&S.mu);
	if (c->using) {
		c->using->clients--;
		c->using = NULL;
		pthread_cond_broadcast(&S.cond);
	}
	pthread_mutex_unlock(&S.mu);
}

void nbd_server_add(struct nbd_exp *x)
{
	pthread_mutex_lock(&S.mu);
	x->clients = 0;
	x->removed = false;
	x->next = S.exps;
	S.exps = x;
	pthread_mutex_unlock(&S.mu);
}

int nbd_server_clients(struct nbd_exp *x)
{
	int n;

	pthread_mutex_lock(&S.mu);
	n = x->clients;
	pthread_mutex_unlock(&S.mu);
	return n;
}

void nbd_server_remove(struct nbd_exp *x, bool hard)
{
	struct nbd_exp **pp;
	struct nbd_client *c;

	pthread_mutex_lock(&S.mu);
	x->removed = true;
	while (x->clients) {
		struct timespec ts;

		if (hard)
			for (c = S.clients; c; c = c->next)
				if (c->using == x)
					shutdown(c->fd, SHUT_RDWR);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&S.cond, &S.mu, &ts);
	}
	for (pp = &S.exps; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	pthread_mutex_unlock(&S.mu);
}

/*
 * Handshake
 */
static int send_rep(struct nbd_client *c, uint32_t opt, uint32_t type, const void *data,
		    uint32_t len)
{
	uint8_t h[20];

	put64(h, NBD_REP_MAGIC);
	put32(h + 8, opt);
	put32(h + 12, type);
	put32(h + 16, len);
	if (send_full(c->fd, h, sizeof(h)))
		return -1;
	return len ? send_full(c->fd, data, len) : 0;
}

/* An error reply with a message a person can read. */
static int send_err(struct nbd_client *c, uint32_t opt, uint32_t type, const char *msg)
{
	return send_rep(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint16_t trans_flags(const struct nbd_client *c)
{
	return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH |
	       NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN |
	       (c->structured ? NBD_FLAG_SEND_DF : 0);
}

static void choose(struct nbd_client *c, struct nbd_exp *x)
{
	if (strcmp(c->meta_export, x->name))
		c->meta = 0;	/* the selection was for another export */
	c->exp = x;
}

/* NBD_OPT_INFO / NBD_OPT_GO: 1 when GO chose an export, 0 to go on, -1 to close. */
static int opt_info(struct nbd_client *c, uint32_t opt, uint32_t len)
{
	const uint8_t *d = c->opt;
	uint8_t info[12], bs[14];
	uint32_t nlen;
	uint16_t nreq, i;
	bool want_name = false;
	struct nbd_exp *x;

	if (len < 6)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "option too short");
	nlen = get32(d);
	if (nlen > len - 6)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "export name longer than the option");
	nreq = get16(d + 4 + nlen);
	if (4 + nlen + 2 + 2u * nreq != len)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "information requests do not match the option's length");
	for (i = 0; i < nreq; i++)
		if (get16(d + 6 + nlen + 2 * i) == NBD_INFO_NAME)
			want_name = true;
	x = exp_get(c, (const char *)d + 4, nlen);
	if (!x) {
		char msg[128];

		snprintf(msg, sizeof(msg), "export '%.*s' not present", nlen > 64 ? 64 : (int)nlen,
			 (const char *)d + 4);
		return send_err(c, opt, NBD_REP_ERR_UNKNOWN, msg);
	}
	put16(info, NBD_INFO_EXPORT);
	put64(info + 2, x->size);
	put16(info + 10, trans_flags(c));
	if (send_rep(c, opt, NBD_REP_INFO, info, 12))
		goto fail;
	if (want_name) {
		size_t n = strlen(x->name);
		uint8_t *p = c->rep;

		put16(p, NBD_INFO_NAME);
		memcpy(p + 2, x->name, n);
		if (send_rep(c, opt, NBD_REP_INFO, p, (uint32_t)n + 2))
			goto fail;
	}
	put16(bs, NBD_INFO_BLOCK_SIZE);
	put32(bs + 2, 1);
	put32(bs + 6, 4096);
	put32(bs + 10, NBD_MAX_PAYLOAD);
	if (send_rep(c, opt, NBD_REP_INFO, bs, 14))
		goto fail;
	if (send_rep(c, opt, NBD_REP_ACK, NULL, 0))
		goto fail;
	if (opt == NBD_OPT_GO) {
		choose(c, x);
		return 1;
	}
	exp_put(c);
	return 0;
fail:
	exp_put(c);
	return -1;
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT */
static int opt_meta(struct nbd_client *c, uint32_t opt, uint32_t len)
{
	const uint8_t *d = c->opt;
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;
	uint32_t nlen, nq, i, pos;
	unsigned mask = 0, bit;
	struct nbd_exp *x;
	int r = 0;

	if (!list)
		c->meta = 0;	/* each SET replaces the selection, even when it fails */
	if (!c->structured)
		return send_err(c, opt, NBD_REP_ERR_INVALID,
				"request not valid until structured replies negotiated");
	if (len < 8 || (nlen = get32(d)) > len - 8)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "option too short");
	nq = get32(d + 4 + nlen);
	pos = 8 + nlen;
	for (i = 0; i < nq; i++) {	/* check the layout first */
		uint32_t ql;

		if (len - pos < 4 || (ql = get32(d + pos)) > len - pos - 4)
			return send_err(c, opt, NBD_REP_ERR_INVALID, "queries do not match the option's length");
		pos += 4 + ql;
	}
	if (pos != len)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "queries do not match the option's length");
	x = exp_get(c, (const char *)d + 4, nlen);
	if (!x)
		return send_err(c, opt, NBD_REP_ERR_UNKNOWN, "export not present");
	if (list && !nq)
		mask = 1 | (x->bitmap ? 2 : 0);
	for (i = 0, pos = 8 + nlen; i < nq; i++) {
		uint32_t ql = get32(d + pos);

		mask |= nbd_meta_match(x, (const char *)d + pos + 4, ql, list);
		pos += 4 + ql;
	}
	for (bit = 1; bit <= 2 && !r; bit <<= 1) {
		uint8_t *p = c->rep;
		size_t n;

		if (!(mask & bit))
			continue;
		if (bit == 1)
			n = (size_t)snprintf((char *)p + 4, NBD_MAX_NAME + 1, "base:allocation");
		else
			n = (size_t)snprintf((char *)p + 4, NBD_MAX_NAME + 1, "qemu:dirty-bitmap:%s",
					     x->bitmap);
		put32(p, list ? 0 : bit == 1 ? NBD_META_ID_BASE_ALLOCATION : NBD_META_ID_DIRTY_BITMAP);
		r = send_rep(c, opt, NBD_REP_META_CONTEXT, p, (uint32_t)(n + 4));
	}
	if (!list) {
		c->meta = mask;
		snprintf(c->meta_export, sizeof(c->meta_export), "%s", x->name);
	}
	exp_put(c);
	return r ? r : send_rep(c, opt, NBD_REP_ACK, NULL, 0);
}

static int opt_list(struct nbd_client *c, uint32_t opt, uint32_t len)
{
	struct nbd_exp *x;
	char (*names)[NBD_MAX_NAME + 1] = NULL;
	size_t n = 0, i;
	int r = 0;

	if (len)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "no data expected");
	pthread_mutex_lock(&S.mu);
	for (x = S.exps; x; x = x->next)
		n += !x->removed;
	names = n ? calloc(n, sizeof(*names)) : NULL;
	n = 0;
	for (x = S.exps; x && names; x = x->next)
		if (!x->removed)
			memcpy(names[n++], x->name, sizeof(*names));
	pthread_mutex_unlock(&S.mu);
	for (i = 0; i < n && !r; i++) {
		size_t l = strlen(names[i]);

		put32(c->rep, (uint32_t)l);
		memcpy(c->rep + 4, names[i], l);
		r = send_rep(c, opt, NBD_REP_SERVER, c->rep, (uint32_t)l + 4);
	}
	free(names);
	return r ? r : send_rep(c, opt, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_EXPORT_NAME: no error reply exists; an unknown name closes. */
static int opt_export_name(struct nbd_client *c, uint32_t len)
{
	uint8_t r[10 + 124] = { 0 };
	struct nbd_exp *x = exp_get(c, (const char *)c->opt, len);

	if (!x)
		return -1;
	put64(r, x->size);
	put16(r + 8, trans_flags(c));
	if (send_full(c->fd, r, c->no_zeroes ? 10 : sizeof(r))) {
		exp_put(c);
		return -1;
	}
	choose(c, x);
	return 1;
}

/* 0 with c->exp chosen, or -1 to close. */
static int handshake(struct nbd_client *c)
{
	struct timespec t0;
	uint8_t h[18];
	uint32_t flags;
	int n, r;

	put64(h, NBD_MAGIC);
	put64(h + 8, NBD_IHAVEOPT);
	put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (send_full(c->fd, h, 18) || recv_full(c->fd, h, 4))
		return -1;
	flags = get32(h);
	if (flags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
		return -1;
	c->no_zeroes = flags & NBD_FLAG_NO_ZEROES;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (n = 0; n < NBD_MAX_OPTIONS; n++) {
		struct timespec now;
		uint32_t opt, len;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > NBD_HANDSHAKE_MAX_S)
			return -1;	/* a trickle of options: the slot is for others */
		if (recv_full(c->fd, h, 16) || get64(h) != NBD_IHAVEOPT)
			return -1;
		opt = get32(h + 8);
		len = get32(h + 12);
		if (len > NBD_MAX_OPTION) {
			if (opt != NBD_OPT_EXPORT_NAME)
				send_err(c, opt, NBD_REP_ERR_TOO_BIG, "option too big");
			return -1;
		}
		if (recv_full(c->fd, c->opt, len))
			return -1;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME:
			return opt_export_name(c, len) == 1 ? 0 : -1;
		case NBD_OPT_ABORT:
			send_rep(c, opt, NBD_REP_ACK, NULL, 0);
			return -1;
		case NBD_OPT_LIST:
			r = opt_list(c, opt, len);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			r = opt_info(c, opt, len);
			if (r == 1)
				return 0;
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (len)
				r = send_err(c, opt, NBD_REP_ERR_INVALID, "no data expected");
			else if (c->structured)
				r = send_err(c, opt, NBD_REP_ERR_INVALID, "structured reply already negotiated");
			else {
				c->structured = true;
				r = send_rep(c, opt, NBD_REP_ACK, NULL, 0);
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			r = opt_meta(c, opt, len);
			break;
		case NBD_OPT_STARTTLS:
			r = send_err(c, opt, NBD_REP_ERR_POLICY, "TLS not configured");
			break;
		default:
			r = send_err(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
			break;
		}
		if (r)
			return -1;
	}
	return -1;	/* a client that never chooses */
}

/*
 * Transmission
 */
static int simple_reply(struct nbd_client *c, uint64_t cookie, uint32_t err)
{
	uint8_t h[16];

	put32(h, NBD_SIMPLE_REPLY_MAGIC);
	put32(h + 4, err);
	put64(h + 8, cookie);
	return send_full(c->fd, h, 16);
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
	return send_full(c->fd, h, 26 + n);
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
	if (!c->structured) {
		/* the first piece before the header, so that its error can be sent */
		size_t k = len < NBD_IO_CHUNK ? len : NBD_IO_CHUNK;

		r = pread_full(x->fd, c->buf, k, off);
		if (r)
			return error_reply(c, cookie, (uint32_t)errno_to_nbd(-r), "");
		if (simple_reply(c, cookie, 0) || send_full(c->fd, c->buf, k))
			return -1;
		for (done = k; done < len; done += k) {
			k = len - done < NBD_IO_CHUNK ? (size_t)(len - done) : NBD_IO_CHUNK;
			if (pread_full(x->fd, c->buf, k, off + done) ||
			    send_full(c->fd, c->buf, k))
				return -1;	/* no way to report it now */
		}
		nbd_mark_read(x, off, len);
		return 0;
	}
	while (done < len || !len) {
		size_t k = len - done < NBD_IO_CHUNK ? (size_t)(len - done) : NBD_IO_CHUNK;
		bool last = done + k == len;

		if (!len) {
			chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
			return send_full(c->fd, h, 20);
		}
		r = pread_full(x->fd, c->buf, k, off + done);
		if (r) {
			char msg[96];

			snprintf(msg, sizeof(msg), "reading the point-in-time view: %s", strerror(-r));
			return error_reply(c, cookie, (uint32_t)errno_to_nbd(-r), msg);
		}
		chunk_header(h, last ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
			     (uint32_t)(8 + k));
		put64(h + 20, off + done);
		if (send_full(c->fd, h, 28) || send_full(c->fd, c->buf, k))
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
	if (send_full(c->fd, h, 24))
		return -1;
	return send_full(c->fd, c->buf, 8 * n);
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

static void transmission(struct nbd_client *c)
{
	uint8_t h[28];

	for (;;) {
		uint16_t flags, type;
		uint64_t cookie, off;
		uint32_t len;
		int r;

		if (recv_full(c->fd, h, 28) || get32(h) != NBD_REQUEST_MAGIC)
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
			if (len > NBD_MAX_PAYLOAD || discard(c->fd, len, c->buf, NBD_IO_CHUNK)) {
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

/*
 * Connections
 */
static void *client_thread(void *arg)
{
	struct nbd_client *c = arg, **pp;

	/* the transmission's buffers only once the handshake is through */
	c->opt = malloc(NBD_MAX_OPTION + 1);
	if (c->opt) {
		set_timeout(c->fd, SO_RCVTIMEO, NBD_HANDSHAKE_TIMEOUT_S);
		set_timeout(c->fd, SO_SNDTIMEO, NBD_SEND_TIMEOUT_S);
		if (!handshake(c)) {
			free(c->opt);
			c->opt = NULL;
			c->buf = malloc(NBD_BUF_SIZE);
			c->ext = malloc(sizeof(*c->ext) * NBD_MAX_EXTENTS);
			set_timeout(c->fd, SO_RCVTIMEO, 0);	/* idle clients are fine now */
			if (c->buf && c->ext)
				transmission(c);
		}
	}
	exp_put(c);
	pthread_mutex_lock(&S.mu);
	for (pp = &S.clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	close(c->fd);
	S.nclients--;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.mu);
	free(c->opt);
	free(c->buf);
	free(c->ext);
	free(c);
	return NULL;
}

static void accept_one(void)
{
	struct nbd_client *c;
	pthread_attr_t a;
	int fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC), one = 1;

	if (fd < 0) {
		/* out of descriptors or memory: the connection waits, do not spin */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			usleep(100000);
		return;
	}
	pthread_mutex_lock(&S.mu);
	if (S.nclients >= (int)S.max_conn || !(c = calloc(1, sizeof(*c)))) {
		pthread_mutex_unlock(&S.mu);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));	/* fails on Unix sockets */
	c->fd = fd;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 256u << 10);
	if (pthread_create((pthread_t[1]){ 0 }, &a, client_thread, c)) {
		close(fd);
		free(c);
	} else {
		c->next = S.clients;
		S.clients = c;
		S.nclients++;
	}
	pthread_attr_destroy(&a);
	pthread_mutex_unlock(&S.mu);
}

static void *accept_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { S.listen_fd, POLLIN, 0 }, { S.wake[0], POLLIN, 0 } };

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			usleep(100000);
			continue;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN)
			accept_one();
		else if (p[0].revents)
			usleep(100000);	/* an error on the listener: do not spin */
	}
}

static bool loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

static int listen_inet(const struct nbd_server_opts *o, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, one = 1, r;

	r = getaddrinfo(o->host, o->port, &hints, &res);
	if (r) {
		snprintf(err, errlen, "address resolution failed for %s:%s: %s", o->host, o->port,
			 gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next)
		if (!loopback(ai->ai_addr)) {
			freeaddrinfo(res);
			snprintf(err, errlen, "NBD over TCP without TLS is only served on a loopback address: "
				 "'%s' is not one (use 127.0.0.1 or ::1, or a Unix socket)", o->host);
			return -EPERM;
		}
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, SOMAXCONN))
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "Failed to bind socket to %s:%s: %s", o->host, o->port,
			 strerror(-r));
		return r;
	}
	return fd;
}

static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "UNIX socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "Failed to bind socket to %s: a file that is not a socket is there",
				 path);
			return -EEXIST;
		}
		unlink(path);	/* a stale socket */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(path, 0600) ||
	    listen(fd, SOMAXCONN)) {
		r = -errno;
		snprintf(err, errlen, "Failed to bind socket to %s: %s", path, strerror(-r));
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return r;
	}
	return fd;
}

int nbd_server_start(const struct nbd_server_opts *o, char *err, size_t errlen)
{
	struct rlimit rl;
	int fd, r;

	if (S.running) {
		snprintf(err, errlen, "NBD server already running");
		return -EBUSY;
	}
	fd = o->unix_path ? listen_unix(o->unix_path, err, errlen) : listen_inet(o, err, errlen);
	if (fd < 0)
		return fd;
	if (pipe2(S.wake, O_CLOEXEC)) {
		r = -errno;
		goto fail;
	}
	S.listen_fd = fd;
	S.max_conn = o->max_connections && o->max_connections < NBD_MAX_CONNECTIONS_CAP ?
		     o->max_connections : NBD_MAX_CONNECTIONS_CAP;
	/* the connections must leave the rest of the daemon descriptors to work with */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 2 * NBD_MAX_CONNECTIONS_CAP) {
			rl.rlim_cur = rl.rlim_max < 2 * NBD_MAX_CONNECTIONS_CAP ? rl.rlim_max :
				      2 * NBD_MAX_CONNECTIONS_CAP;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur < S.max_conn + NBD_FD_RESERVE)
			S.max_conn = rl.rlim_cur > 2 * NBD_FD_RESERVE ?
				     (unsigned)(rl.rlim_cur - NBD_FD_RESERVE) : NBD_FD_RESERVE / 2;
	}
	S.unix_path = o->unix_path ? strdup(o->unix_path) : NULL;
	r = pthread_create(&S.acceptor, NULL, accept_thread, NULL);
	if (r) {
		r = -r;
		close(S.wake[0]);
		close(S.wake[1]);
		goto fail;
	}
	S.running = true;
	return 0;
fail:
	snprintf(err, errlen, "cannot start the NBD server: %s", strerror(-r));
	close(fd);
	if (o->unix_path)
		unlink(o->unix_path);
	free(S.unix_path);
	S.unix_path = NULL;
	S.listen_fd = -1;
	return r;
}

bool nbd_server_running(void)
{
	return S.running;
}

void nbd_server_stop(void)
{
	struct nbd_client *c;

	if (!S.running)
		return;
	if (write(S.wake[1], "x", 1) != 1)
		shutdown(S.listen_fd, SHUT_RDWR);
	pthread_join(S.acceptor, NULL);
	close(S.listen_fd);
	close(S.wake[0]);
	close(S.wake[1]);
	S.listen_fd = S.wake[0] = S.wake[1] = -1;
	if (S.unix_path)
		unlink(S.unix_path);
	free(S.unix_path);
	S.unix_path = NULL;
	pthread_mutex_lock(&S.mu);
	while (S.nclients) {
		struct timespec ts;

		for (c = S.clients; c; c = c->next)
			shutdown(c->fd, SHUT_RDWR);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec++;
		pthread_cond_timedwait(&S.cond, &S.mu, &ts);
	}
	pthread_mutex_unlock(&S.mu);
	S.running = false;
}
