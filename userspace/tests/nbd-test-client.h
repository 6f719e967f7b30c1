/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A hand-made NBD client for the NBD server's unit tests (test-nbd-server,
 * test-nbd-tls), which include the server's sources: a connection to the
 * Unix socket sock, the greeting, options and their replies, and the
 * server's count of connections.  Static, like tap.h: one test program
 * includes it once.
 */
#ifndef BSYNC_NBD_TEST_CLIENT_H
#define BSYNC_NBD_TEST_CLIENT_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static char sock[128];

static int conn(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 5 };

	strcpy(sa.sun_path, sock);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* true if the server closed fd (EOF or reset) */
static bool closed(int fd)
{
	char b[256];
	ssize_t r;

	while ((r = recv(fd, b, sizeof(b), 0)) > 0)
		;
	return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int hello(int fd, uint32_t flags)
{
	uint8_t h[18], f[4];

	if (recv_full(fd, h, 18) || get64(h) != NBD_MAGIC || get64(h + 8) != NBD_IHAVEOPT)
		return -1;
	put32(f, flags);
	return send_full(fd, f, 4);
}

static int send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	put64(h, NBD_IHAVEOPT);
	put32(h + 8, opt);
	put32(h + 12, len);
	if (send_full(fd, h, 16))
		return -1;
	return len ? send_full(fd, data, len) : 0;
}

/* One option reply: its type; data (up to cap) into buf, its length in *len. */
static int64_t get_rep(int fd, uint32_t opt, uint8_t *buf, uint32_t cap, uint32_t *len)
{
	uint8_t h[20];
	uint32_t l;

	if (recv_full(fd, h, 20) || get64(h) != NBD_REP_MAGIC || get32(h + 8) != opt)
		return -1;
	l = get32(h + 16);
	if (l > cap || recv_full(fd, buf, l))
		return -1;
	if (len)
		*len = l;
	return get32(h + 12);
}

/* Replies until ACK or an error; returns the last type. */
static int64_t drain_reps(int fd, uint32_t opt, int *count)
{
	uint8_t buf[8192];
	int64_t t;

	*count = 0;
	while ((t = get_rep(fd, opt, buf, sizeof(buf), NULL)) != -1) {
		if (t == NBD_REP_ACK || (t & 0x80000000u))
			return t;
		(*count)++;
	}
	return -1;
}

static uint32_t go_opt(uint8_t *p, const char *exp)
{
	uint32_t l = (uint32_t)strlen(exp);

	put32(p, l);
	memcpy(p + 4, exp, l);
	put16(p + 4 + l, 0);
	return l + 6;
}

static int connections(void)
{
	int n;

	pthread_mutex_lock(&S.mu);
	n = S.nclients;
	pthread_mutex_unlock(&S.mu);
	return n;
}

#endif
