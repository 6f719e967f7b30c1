/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The NBD server's internals, shared by its files and not part of
 * nbd-server.h:
 *   nbd-server.c        the sockets: listening, accepting (the poll loop),
 *                       a connection's thread and life, the exports by name
 *   nbd-handshake.c     the fixed-newstyle handshake: options, INFO/GO,
 *                       LIST, meta contexts
 *   nbd-transmission.c  the transmission phase: READ, BLOCK_STATUS, simple
 *                       and structured replies, the read map
 *   tls.c               (not the server's own) the TLS session STARTTLS
 *                       starts, through which conn_recv()/conn_send() go
 * One connection is one struct nbd_client, owned by its thread; the
 * handshake fills it, the transmission phase serves from it.
 */
#ifndef BSYNCD_NBD_SERVER_INTERNAL_H
#define BSYNCD_NBD_SERVER_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "nbd-server.h"
#include "tls.h"

struct nbd_client {
	int fd;
	const struct tls_creds *tls_creds;	/* the server requires TLS with these */
	struct tls_session *tls;		/* after STARTTLS: all I/O goes through it */
	bool structured;
	bool no_zeroes;
	unsigned meta;				/* selected contexts: bit 0 base, bit 1 bitmap */
	char meta_export[NBD_MAX_NAME + 1];	/* the export the selection is for */
	struct nbd_exp *exp;			/* chosen by GO / EXPORT_NAME */
	struct nbd_exp *using;			/* the export it holds a reference on (server lock) */
	uint8_t *opt;				/* the option's data (handshake only) */
	uint8_t rep[NBD_MAX_NAME + 64];		/* a reply's data (handshake only) */
	uint8_t *buf;				/* READ pieces, BLOCK_STATUS payloads */
	/*
	 * READ data goes view -> pipe -> socket with splice() (page references,
	 * no copy) on a connection in the clear; -1 until the first READ makes
	 * it, and for TLS (GnuTLS encrypts from a buffer) or if it cannot be made.
	 */
	int pipe[2];
	bool no_splice;
	uint32_t (*ext)[2];
	struct nbd_client *next;
};

/*
 * Bytes: the protocol is big-endian.
 */
static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/*
 * Whole reads and writes on a connection's socket: into in, or out of out
 * (the other NULL), a send with MSG_NOSIGNAL and @more (0 or MSG_MORE).
 * -1 on EOF, error or timeout (the connection is over).
 */
static inline int sock_full(int fd, void *in, const void *out, size_t n, int more)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = in ? recv(fd, (uint8_t *)in + done, n - done, 0) :
				 send(fd, (const uint8_t *)out + done, n - done, MSG_NOSIGNAL | more);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static inline int recv_full(int fd, void *buf, size_t n)
{
	return sock_full(fd, buf, NULL, n, 0);
}

static inline int send_full(int fd, const void *buf, size_t n)
{
	return sock_full(fd, NULL, buf, n, 0);
}

/* A connection's whole reads and writes: in the clear, or through its TLS session. */
static inline int conn_recv(struct nbd_client *c, void *buf, size_t n)
{
	return c->tls ? tls_session_full(c->tls, buf, NULL, n) : recv_full(c->fd, buf, n);
}

static inline int conn_send(struct nbd_client *c, const void *buf, size_t n)
{
	return c->tls ? tls_session_full(c->tls, NULL, buf, n) : send_full(c->fd, buf, n);
}

/* nbd-server.c: the exports by name, under the server's lock. */
/*
 * The export called name (len bytes), not being removed, with a reference
 * taken for c (at most one, recorded so that a hard removal finds it); or
 * NULL.
 */
struct nbd_exp *nbd_exp_get(struct nbd_client *c, const char *name, size_t len);
/* Drop c's reference, if it holds one. */
void nbd_exp_put(struct nbd_client *c);
/* A copy of the names of the exports (calloc'd into *names); how many. */
size_t nbd_exp_names(char (**names)[NBD_MAX_NAME + 1]);

/* nbd-handshake.c: 0 with c->exp chosen (and a reference on it), or -1 to close. */
int nbd_handshake(struct nbd_client *c);

/* nbd-transmission.c: serve c's requests until DISC, an error or EOF. */
void nbd_transmission(struct nbd_client *c);

#endif
