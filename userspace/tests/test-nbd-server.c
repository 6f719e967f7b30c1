// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's NBD server on the host (no dm needed): the bitmap context's
 * extents, context matching, the read map, then the real server on a Unix
 * socket with a file as the export, driven by a hand-made client: the
 * handshake, READ, BLOCK_STATUS, EPERM for writes, and hostile input (bad
 * magic, huge lengths, unknown options, bad flags, half-closed sockets,
 * more connections than allowed), after each of which the server still
 * serves a good client.  TLS is test-nbd-tls's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../daemon/nbd-handshake.c"
#include "../daemon/nbd-server.c"
#include "../daemon/nbd-transmission.c"
#include "../daemon/tls.c"
#include "nbd-test-client.h"
#include "tap.h"

#define MiB (1u << 20)
#define SIZE (4 * MiB)
#define GRAN (64u << 10)

static char dir[64], file[128];

static const struct nbd_run runs[] = {
	{ 0, GRAN }, { 3 * GRAN, 2 * GRAN }, { SIZE - GRAN, GRAN },
};

static void test_extents(void)
{
	struct nbd_exp x = { .size = SIZE, .granularity = GRAN, .dirty = runs, .ndirty = 3 };
	uint32_t out[16][2];
	size_t n;

	n = nbd_dirty_extents(&x, 0, SIZE, out, 16);
	tap_ok(n == 5 && out[0][0] == GRAN && out[0][1] == 1 && out[1][0] == 2 * GRAN &&
	       out[1][1] == 0 && out[2][0] == 2 * GRAN && out[2][1] == 1 &&
	       out[3][0] == SIZE - 6 * GRAN && out[3][1] == 0 && out[4][0] == GRAN &&
	       out[4][1] == 1, "extents over the whole export alternate dirty/clean (%zu)", n);
	n = nbd_dirty_extents(&x, 512, 4 * GRAN, out, 16);
	tap_ok(n == 3 && out[0][0] == GRAN - 512 && out[0][1] == 1 &&
	       out[1][0] == 2 * GRAN && out[2][0] == GRAN + 512 && out[2][1] == 1,
	       "unaligned request: the first and last extents are clipped");
	n = nbd_dirty_extents(&x, 3 * GRAN + 4096, 10 * GRAN, out, 1);
	tap_ok(n == 1 && out[0][0] == 2 * GRAN - 4096 && out[0][1] == 1, "REQ_ONE: one extent");
	n = nbd_dirty_extents(&x, SIZE - 512, 1 * MiB, out, 16);
	tap_ok(n == 1 && out[0][0] == 512 && out[0][1] == 1, "clipped at the export's end");
	tap_ok(nbd_dirty_extents(&x, SIZE, 512, out, 16) == 0, "nothing past the end");
	x.ndirty = 0;
	n = nbd_dirty_extents(&x, 0, SIZE, out, 16);
	tap_ok(n == 1 && out[0][0] == SIZE && out[0][1] == 0, "an empty bitmap is one clean extent");
}

static void test_meta(void)
{
	struct nbd_exp x = { .bitmap = "backup-vda" };
	const char *q;

#define M(s, l) nbd_meta_match(&x, s, strlen(s), l)
	tap_ok(M("base:allocation", false) == 1 && M("base:", true) == 1 && M("base:", false) == 0,
	       "base:allocation exact, base: only for LIST");
	q = "qemu:dirty-bitmap:backup-vda";
	tap_ok(M(q, false) == 2 && M("qemu:", true) == 2 && M("qemu:dirty-bitmap:", true) == 2 &&
	       M("qemu:dirty-bitmap:", false) == 0 && M("qemu:dirty-bitmap:backup-vd", false) == 0 &&
	       M("qemu:dirty-bitmap:backup-vdaa", false) == 0 && M("qemu:allocation-depth", true) == 0 &&
	       M("x-foo:bar", true) == 0, "qemu:dirty-bitmap:NAME exact, qemu: wildcards for LIST");
	x.bitmap = NULL;
	tap_ok(M(q, false) == 0 && M("qemu:", true) == 0, "no bitmap: no qemu context");
#undef M
}

static void test_readmap(void)
{
	uint64_t map[1] = { 0 };
	struct nbd_exp x = { .size = SIZE, .granularity = GRAN, .dirty = runs, .ndirty = 3,
			     .readmap = map };

	nbd_mark_read(&x, 0, GRAN - 1);
	tap_ok(!nbd_exp_all_read(&x) && map[0] == 0, "a partial granule is not read");
	nbd_mark_read(&x, 0, 6 * GRAN);
	tap_ok(!nbd_exp_all_read(&x), "the last run is not read yet");
	nbd_mark_read(&x, SIZE - GRAN + 512, GRAN - 512);
	tap_ok(!nbd_exp_all_read(&x), "a granule's tail is not the granule");
	nbd_mark_read(&x, SIZE - GRAN, GRAN);
	tap_ok(nbd_exp_all_read(&x), "every dirty granule read");
}


static uint32_t meta_opt(uint8_t *p, const char *exp, const char *const *q, int nq)
{
	uint32_t n = 0, l = (uint32_t)strlen(exp);
	int i;

	put32(p, l);
	memcpy(p + 4, exp, l);
	n = 4 + l;
	put32(p + n, (uint32_t)nq);
	n += 4;
	for (i = 0; i < nq; i++) {
		l = (uint32_t)strlen(q[i]);
		put32(p + n, l);
		memcpy(p + n + 4, q[i], l);
		n += 4 + l;
	}
	return n;
}

/* A good client to GO, with structured replies and both contexts set. */
static int good_client(void)
{
	static const char *const q[] = { "base:allocation", "qemu:dirty-bitmap:b0" };
	uint8_t buf[512];
	int fd = conn(), n;

	if (fd < 0 || hello(fd, 3) || send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0) ||
	    drain_reps(fd, NBD_OPT_STRUCTURED_REPLY, &n) != NBD_REP_ACK ||
	    send_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, meta_opt(buf, "view", q, 2)) ||
	    drain_reps(fd, NBD_OPT_SET_META_CONTEXT, &n) != NBD_REP_ACK || n != 2 ||
	    send_opt(fd, NBD_OPT_GO, buf, go_opt(buf, "view")) ||
	    drain_reps(fd, NBD_OPT_GO, &n) != NBD_REP_ACK) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int request(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off,
		   uint32_t len)
{
	uint8_t h[28];

	put32(h, NBD_REQUEST_MAGIC);
	put16(h + 4, flags);
	put16(h + 6, type);
	put64(h + 8, cookie);
	put64(h + 16, off);
	put32(h + 24, len);
	return send_full(fd, h, 28);
}

/*
 * Structured chunks of one reply until DONE: data read into buf (at its
 * offset - base), the error if any, the status descriptors of context id
 * 2 into st (pairs).  Returns 0, or the NBD error, or -1.
 */
static int reply(int fd, uint64_t cookie, uint8_t *buf, uint64_t base, uint32_t (*st)[2],
		 size_t *nst)
{
	int err = 0;

	for (;;) {
		uint8_t h[20], *p;
		uint32_t len, i;
		uint16_t flags, type;

		if (recv_full(fd, h, 20) || get32(h) != NBD_STRUCTURED_REPLY_MAGIC ||
		    get64(h + 8) != cookie)
			return -1;
		flags = get16(h + 4);
		type = get16(h + 6);
		len = get32(h + 16);
		p = malloc(len ? len : 1);
		if (recv_full(fd, p, len)) {
			free(p);
			return -1;
		}
		if (type == NBD_REPLY_TYPE_OFFSET_DATA && buf)
			memcpy(buf + get64(p) - base, p + 8, len - 8);
		else if (type == NBD_REPLY_TYPE_ERROR)
			err = (int)get32(p);
		else if (type == NBD_REPLY_TYPE_BLOCK_STATUS && get32(p) == NBD_META_ID_DIRTY_BITMAP &&
			 st) {
			for (i = 0; i < (len - 4) / 8; i++) {
				st[i][0] = get32(p + 4 + 8 * i);
				st[i][1] = get32(p + 8 + 8 * i);
			}
			*nst = (len - 4) / 8;
		}
		free(p);
		if (flags & NBD_REPLY_FLAG_DONE)
			return err;
	}
}


static struct nbd_exp ex;
static uint8_t *data;

static bool good_read(void)
{
	uint8_t *b = malloc(MiB);
	int fd = good_client(), r;
	bool ok;

	if (fd < 0) {
		free(b);
		return false;
	}
	r = request(fd, 0, NBD_CMD_READ, 7, 2 * MiB, MiB) ? -1 : reply(fd, 7, b, 2 * MiB, NULL, NULL);
	ok = r == 0 && !memcmp(b, data + 2 * MiB, MiB);
	request(fd, 0, NBD_CMD_DISC, 8, 0, 0);
	close(fd);
	free(b);
	return ok;
}

/*
 * The view got shorter under the export (the file is cut by 1 MiB): a READ
 * of its tail fails with EIO, answered in the reply, and the connection
 * goes on; the file is made whole again.
 */
static void read_error(int fd, bool structured)
{
	uint8_t h[16], *b = malloc(MiB);
	int f = open(file, O_RDWR), r;

	tap_ok(f >= 0 && !ftruncate(f, SIZE - MiB), "the view is cut short");
	request(fd, 0, NBD_CMD_READ, 21, SIZE - MiB / 2, MiB / 4);
	if (structured)
		r = reply(fd, 21, NULL, 0, NULL, NULL);
	else
		r = recv_full(fd, h, 16) || get32(h) != NBD_SIMPLE_REPLY_MAGIC ||
		    get64(h + 8) != 21 ? -1 : (int)get32(h + 4);
	tap_ok(r == NBD_EIO, "%s: a READ past the view's end fails with EIO (%d)",
	       structured ? "structured" : "simple", r);
	tap_ok(pwrite(f, data + SIZE - MiB, MiB, SIZE - MiB) == MiB, "the view is whole again");
	request(fd, 0, NBD_CMD_READ, 22, SIZE - MiB, MiB);
	if (structured)
		r = reply(fd, 22, b, SIZE - MiB, NULL, NULL);
	else
		r = recv_full(fd, h, 16) || get32(h) != NBD_SIMPLE_REPLY_MAGIC ||
		    get64(h + 8) != 22 || get32(h + 4) || recv_full(fd, b, MiB) ? -1 : 0;
	tap_ok(r == 0 && !memcmp(b, data + SIZE - MiB, MiB), "and the connection reads on");
	if (f >= 0)
		close(f);
	free(b);
}

/* A client without structured replies: READ data after a simple reply's header. */
static void simple_reads(void)
{
	uint8_t buf[512], h[16], *b = malloc(3 * NBD_IO_CHUNK);
	int fd = conn(), n, r;

	r = fd < 0 || hello(fd, 3) || send_opt(fd, NBD_OPT_GO, buf, go_opt(buf, "view")) ||
	    drain_reps(fd, NBD_OPT_GO, &n) != NBD_REP_ACK ? -1 : 0;
	tap_ok(r == 0, "GO without structured replies");
	request(fd, 0, NBD_CMD_READ, 30, 4097, 2 * NBD_IO_CHUNK + 3);
	r = recv_full(fd, h, 16) || get32(h) != NBD_SIMPLE_REPLY_MAGIC || get64(h + 8) != 30 ||
	    get32(h + 4) || recv_full(fd, b, 2 * NBD_IO_CHUNK + 3) ? -1 : 0;
	tap_ok(r == 0 && !memcmp(b, data + 4097, 2 * NBD_IO_CHUNK + 3),
	       "simple reply: an unaligned READ of several pieces");
	read_error(fd, false);
	request(fd, 0, NBD_CMD_DISC, 31, 0, 0);
	if (fd >= 0)
		close(fd);
	free(b);
}

static void test_server(void)
{
	char err[256];
	struct stat st;
	uint32_t stv[64][2];
	size_t nst = 0;
	uint8_t buf[8192];
	uint8_t *rb = malloc(SIZE);
	int fd, fds[8], i, n, r;
	int64_t t;
	struct nbd_server_opts o = { .unix_path = sock, .max_connections = 6 };

	data = malloc(SIZE);
	for (i = 0; i < (int)SIZE; i++)
		data[i] = (uint8_t)(i * 7 + i / 4096);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_ok(fd >= 0 && write(fd, data, SIZE) == SIZE, "export file written");
	close(fd);
	ex.fd = open(file, O_RDONLY);
	snprintf(ex.name, sizeof(ex.name), "view");
	ex.size = SIZE;
	ex.bitmap = "b0";
	ex.granularity = GRAN;
	ex.dirty = runs;
	ex.ndirty = 3;
	ex.readmap = calloc(1, 8);
	r = nbd_server_start(&o, err, sizeof(err));
	tap_ok(r == 0, "server starts: %s", r ? err : "ok");
	r = nbd_server_start(&o, err, sizeof(err));
	tap_ok(r == -EBUSY && strstr(err, "already running"), "a second start: %s", err);
	tap_ok(!stat(sock, &st) && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
	       "socket mode 0600");
	nbd_server_add(&ex);

	/* LIST, LIST_META_CONTEXT, INFO, unknown options */
	fd = conn();
	tap_ok(fd >= 0 && !hello(fd, 3), "handshake");
	send_opt(fd, NBD_OPT_LIST, NULL, 0);
	t = get_rep(fd, NBD_OPT_LIST, buf, sizeof(buf), NULL);
	tap_ok(t == NBD_REP_SERVER && get32(buf) == 4 && !memcmp(buf + 4, "view", 4) &&
	       get_rep(fd, NBD_OPT_LIST, buf, sizeof(buf), NULL) == NBD_REP_ACK, "LIST names the export");
	send_opt(fd, 99, "junk", 4);
	tap_ok(drain_reps(fd, 99, &n) == NBD_REP_ERR_UNSUP, "unknown option: ERR_UNSUP");
	send_opt(fd, 11, NULL, 0);
	tap_ok(drain_reps(fd, 11, &n) == NBD_REP_ERR_UNSUP, "EXTENDED_HEADERS: ERR_UNSUP");
	send_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
	tap_ok(drain_reps(fd, NBD_OPT_STARTTLS, &n) == NBD_REP_ERR_POLICY, "STARTTLS: ERR_POLICY");
	send_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, meta_opt(buf, "view", NULL, 0));
	tap_ok(drain_reps(fd, NBD_OPT_SET_META_CONTEXT, &n) == NBD_REP_ERR_INVALID,
	       "SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID");
	send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	drain_reps(fd, NBD_OPT_STRUCTURED_REPLY, &n);
	send_opt(fd, NBD_OPT_LIST_META_CONTEXT, buf, meta_opt(buf, "view", NULL, 0));
	tap_ok(drain_reps(fd, NBD_OPT_LIST_META_CONTEXT, &n) == NBD_REP_ACK && n == 2,
	       "LIST_META_CONTEXT lists both contexts");
	{
		static const char *const q[] = { "qemu:", "x-nope:thing", "base:allocation" };

		send_opt(fd, NBD_OPT_LIST_META_CONTEXT, buf, meta_opt(buf, "view", q, 3));
		tap_ok(drain_reps(fd, NBD_OPT_LIST_META_CONTEXT, &n) == NBD_REP_ACK && n == 2,
		       "wildcard and unknown namespace queries");
		send_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, meta_opt(buf, "nope", q, 1));
		tap_ok(drain_reps(fd, NBD_OPT_SET_META_CONTEXT, &n) == NBD_REP_ERR_UNKNOWN,
		       "SET_META_CONTEXT on an unknown export: ERR_UNKNOWN");
	}
	put32(buf, 100);	/* a name longer than the option */
	send_opt(fd, NBD_OPT_INFO, buf, 8);
	tap_ok(drain_reps(fd, NBD_OPT_INFO, &n) == NBD_REP_ERR_INVALID, "malformed INFO: ERR_INVALID");
	send_opt(fd, NBD_OPT_INFO, buf, go_opt(buf, "missing"));
	tap_ok(drain_reps(fd, NBD_OPT_INFO, &n) == NBD_REP_ERR_UNKNOWN, "INFO on an unknown export");
	send_opt(fd, NBD_OPT_INFO, buf, go_opt(buf, "view"));
	t = get_rep(fd, NBD_OPT_INFO, buf, sizeof(buf), NULL);
	tap_ok(t == NBD_REP_INFO && get16(buf) == NBD_INFO_EXPORT && get64(buf + 2) == SIZE &&
	       (get16(buf + 10) & NBD_FLAG_READ_ONLY), "INFO: size and READ_ONLY");
	drain_reps(fd, NBD_OPT_INFO, &n);
	send_opt(fd, NBD_OPT_ABORT, NULL, 0);
	tap_ok(drain_reps(fd, NBD_OPT_ABORT, &n) == NBD_REP_ACK && closed(fd), "ABORT: ACK and close");
	close(fd);

	/* transmission */
	simple_reads();
	fd = good_client();
	tap_ok(fd >= 0, "GO with both contexts");
	r = request(fd, 0, NBD_CMD_READ, 1, 0, SIZE) ? -1 : reply(fd, 1, rb, 0, NULL, NULL);
	tap_ok(r == 0 && !memcmp(rb, data, SIZE), "READ of the whole export, in chunks");
	request(fd, 0, NBD_CMD_READ, 2, 12345, 777);
	tap_ok(reply(fd, 2, rb, 12345, NULL, NULL) == 0 && !memcmp(rb, data + 12345, 777),
	       "unaligned READ");
	request(fd, 0, NBD_CMD_READ, 20, 12345, 3 * NBD_IO_CHUNK + 777);
	tap_ok(reply(fd, 20, rb, 12345, NULL, NULL) == 0 &&
	       !memcmp(rb, data + 12345, 3 * NBD_IO_CHUNK + 777),
	       "unaligned READ of several pieces");
	read_error(fd, true);
	request(fd, 0, NBD_CMD_READ, 3, SIZE - 512, 1024);
	tap_ok(reply(fd, 3, NULL, 0, NULL, NULL) == NBD_EINVAL, "READ past the end: EINVAL");
	request(fd, 0, NBD_CMD_READ, 4, UINT64_MAX - 10, 100);
	tap_ok(reply(fd, 4, NULL, 0, NULL, NULL) == NBD_EINVAL, "READ at a wrapping offset: EINVAL");
	request(fd, 0, NBD_CMD_READ, 5, 0, 64 * MiB);
	tap_ok(reply(fd, 5, NULL, 0, NULL, NULL) == NBD_EINVAL, "READ above the maximum payload: EINVAL");
	request(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 6, 0, MiB);
	tap_ok(reply(fd, 6, NULL, 0, NULL, NULL) == NBD_EOVERFLOW, "a big READ with DF: EOVERFLOW");
	request(fd, 0, NBD_CMD_WRITE, 7, 0, 4096);
	send_full(fd, data, 4096);
	tap_ok(reply(fd, 7, NULL, 0, NULL, NULL) == NBD_EPERM, "WRITE: EPERM, payload drained");
	request(fd, 0, NBD_CMD_TRIM, 8, 0, 4096);
	tap_ok(reply(fd, 8, NULL, 0, NULL, NULL) == NBD_EPERM, "TRIM: EPERM");
	request(fd, 0, NBD_CMD_WRITE_ZEROES, 9, 0, 4096);
	tap_ok(reply(fd, 9, NULL, 0, NULL, NULL) == NBD_EPERM, "WRITE_ZEROES: EPERM");
	request(fd, 0, NBD_CMD_BLOCK_STATUS, 10, 0, SIZE);
	r = reply(fd, 10, NULL, 0, stv, &nst);
	tap_ok(r == 0 && nst == 5 && stv[0][1] == 1 && stv[1][1] == 0 && stv[4][0] == GRAN,
	       "BLOCK_STATUS: the bitmap's extents (%zu)", nst);
	request(fd, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 11, GRAN, SIZE - GRAN);
	r = reply(fd, 11, NULL, 0, stv, &nst);
	tap_ok(r == 0 && nst == 1 && stv[0][0] == 2 * GRAN && stv[0][1] == 0, "BLOCK_STATUS REQ_ONE");
	request(fd, 0, NBD_CMD_BLOCK_STATUS, 12, SIZE, 512);
	tap_ok(reply(fd, 12, NULL, 0, NULL, NULL) == NBD_EINVAL, "BLOCK_STATUS past the end: EINVAL");
	request(fd, 0, 42, 13, 0, 0);
	tap_ok(reply(fd, 13, NULL, 0, NULL, NULL) == NBD_EINVAL, "unknown command: EINVAL");
	tap_ok(nbd_exp_all_read(&ex), "the whole read marked every dirty granule read");
	request(fd, 0, NBD_CMD_WRITE, 14, 0, 0x7fffffff);
	tap_ok(closed(fd), "WRITE with a 2 GiB payload: closed");
	close(fd);

	/* hostile handshakes */
	fd = conn();
	hello(fd, 0x80);
	tap_ok(closed(fd), "unknown client flags: closed");
	close(fd);
	fd = conn();
	hello(fd, 3);
	send_full(fd, "NOTMAGICxxxxxxxx", 16);
	tap_ok(closed(fd), "bad option magic: closed");
	close(fd);
	fd = conn();
	hello(fd, 3);
	{
		uint8_t h[16];

		put64(h, NBD_IHAVEOPT);
		put32(h + 8, NBD_OPT_GO);
		put32(h + 12, 0xfffffff0u);
		send_full(fd, h, 16);
		tap_ok(get_rep(fd, NBD_OPT_GO, buf, sizeof(buf), NULL) == NBD_REP_ERR_TOO_BIG &&
		       closed(fd), "a 4 GiB option: ERR_TOO_BIG and closed");
	}
	close(fd);
	fd = conn();
	hello(fd, 3);
	send_full(fd, "IHAVE", 5);
	shutdown(fd, SHUT_WR);
	tap_ok(closed(fd), "half-closed mid-option: closed");
	close(fd);
	fd = good_client();
	send_full(fd, "\x25\x60\x95\x13\0\0", 6);
	shutdown(fd, SHUT_WR);
	tap_ok(closed(fd), "half-closed mid-request: closed");
	close(fd);
	fd = good_client();
	request(fd, 0, NBD_CMD_READ, 1, 0, 512);
	close(fd);	/* gone before its reply */
	fd = good_client();
	send_full(fd, "\xde\xad\xbe\xef", 4);
	send_full(fd, buf, 24);
	tap_ok(closed(fd), "bad request magic: closed");
	close(fd);
	tap_ok(good_read(), "a good client is still served after all that");

	/* the connection limit */
	for (i = 0; i < 8; i++)
		fds[i] = good_client();
	for (i = 0, n = 0; i < 8; i++)
		n += fds[i] >= 0;
	tap_ok(n == 6, "max-connections 6: %d of 8 clients got in", n);
	for (i = 0; i < 8; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (i = 0; i < 100 && nbd_server_clients(&ex); i++)
		usleep(10000);
	tap_ok(good_read(), "served again once they left");

	/* 1000 connections at once (the cap without max-connections) */
	nbd_server_stop();
	{
		struct rlimit rl;
		int cap, *many;

		/*
		 * Both ends are in this process: with fewer than twice the
		 * descriptors, a smaller limit stands in for the cap.
		 */
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		o.max_connections = rl.rlim_cur < 2 * (NBD_MAX_CONNECTIONS_CAP + NBD_FD_RESERVE) ?
				    (unsigned)(rl.rlim_cur / 2 - NBD_FD_RESERVE) : 0;
		r = nbd_server_start(&o, err, sizeof(err));
		cap = (int)S.max_conn;
		many = calloc((size_t)cap, sizeof(int));
		tap_ok(r == 0 && cap == (o.max_connections ? (int)o.max_connections :
					 NBD_MAX_CONNECTIONS_CAP),
		       "restarted with %s: cap %d (descriptors %llu)",
		       o.max_connections ? "a limit the descriptors allow" : "no limit", cap,
		       (unsigned long long)rl.rlim_cur);
		for (i = 0, n = 0; i < cap; i++) {
			many[i] = conn();
			n += many[i] >= 0;
		}
		for (i = 0; i < 500 && connections() < cap; i++)
			usleep(10000);
		tap_ok(n == cap && connections() == cap, "%d idle connections held (%d)", cap,
		       connections());
		fd = good_client();
		tap_ok(fd < 0, "one more is closed");
		if (fd >= 0)
			close(fd);
		for (i = 0; i < 10; i++)
			close(many[i]);
		for (i = 0; i < 500 && connections() > cap - 10; i++)
			usleep(10000);
		tap_ok(good_read(), "served once some left");
		for (i = 10; i < cap; i++)
			if (many[i] >= 0)
				close(many[i]);
		free(many);
		for (i = 0; i < 500 && connections(); i++)
			usleep(10000);
		tap_ok(connections() == 0, "all gone: every connection's thread ended");
	}

	/* hard removal drops a connected client */
	fd = good_client();
	nbd_server_remove(&ex, true);
	tap_ok(closed(fd) && nbd_server_clients(&ex) == 0, "hard removal closes its connections");
	close(fd);
	fd = conn();
	hello(fd, 3);
	send_opt(fd, NBD_OPT_GO, buf, go_opt(buf, "view"));
	tap_ok(drain_reps(fd, NBD_OPT_GO, &n) == NBD_REP_ERR_UNKNOWN, "a removed export is unknown");
	/* left connected: stop must close it */
	nbd_server_stop();
	tap_ok(closed(fd) && !nbd_server_running() && access(sock, F_OK) != 0,
	       "stop closes connections and removes the socket");
	close(fd);
	free(rb);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test-nbd-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof(sock), "%s/nbd.sock", dir);
	snprintf(file, sizeof(file), "%s/view.raw", dir);
	signal(SIGPIPE, SIG_IGN);
	test_extents();
	test_meta();
	test_readmap();
	test_server();
	close(ex.fd);
	free(ex.readmap);
	free(data);
	unlink(file);
	rmdir(dir);
	return tap_done();
}
