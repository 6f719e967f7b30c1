/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The NBD server, and only the protocol: the listening socket, one thread
 * per connection, the fixed-newstyle handshake and the transmission phase
 * of a read-only export (READ, BLOCK_STATUS with `base:allocation` and
 * `qemu:dirty-bitmap:NAME`, DISC; writes get EPERM), over TLS if the
 * server is started with credentials (tls.h).  What an export is
 * (a point-in-time view, its job) is nbd-export.c's; the server's own
 * files are listed in nbd-server-internal.h.
 *
 * Everything here takes its own lock (never the daemon lock), so it may be
 * called with or without the daemon lock held.
 */
#ifndef BSYNCD_NBD_SERVER_H
#define BSYNCD_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol constants (NetworkBlockDevice/nbd doc/proto.md) */
#define NBD_MAGIC		0x4e42444d41474943ull
#define NBD_IHAVEOPT		0x49484156454f5054ull
#define NBD_REP_MAGIC		0x3e889045565a9ull
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

#define NBD_FLAG_FIXED_NEWSTYLE	(1u << 0)
#define NBD_FLAG_NO_ZEROES	(1u << 1)

#define NBD_OPT_EXPORT_NAME	1
#define NBD_OPT_ABORT		2
#define NBD_OPT_LIST		3
#define NBD_OPT_STARTTLS	5
#define NBD_OPT_INFO		6
#define NBD_OPT_GO		7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

#define NBD_REP_ACK		1
#define NBD_REP_SERVER		2
#define NBD_REP_INFO		3
#define NBD_REP_META_CONTEXT	4
#define NBD_REP_ERR(n)		(0x80000000u | (n))
#define NBD_REP_ERR_UNSUP	NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY	NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID	NBD_REP_ERR(3)
#define NBD_REP_ERR_TLS_REQD	NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN	NBD_REP_ERR(6)
#define NBD_REP_ERR_TOO_BIG	NBD_REP_ERR(9)

#define NBD_INFO_EXPORT		0
#define NBD_INFO_NAME		1
#define NBD_INFO_DESCRIPTION	2
#define NBD_INFO_BLOCK_SIZE	3

#define NBD_FLAG_HAS_FLAGS	(1u << 0)
#define NBD_FLAG_READ_ONLY	(1u << 1)
#define NBD_FLAG_SEND_FLUSH	(1u << 2)
#define NBD_FLAG_SEND_DF	(1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN	(1u << 8)
#define NBD_FLAG_SEND_CACHE	(1u << 10)

#define NBD_CMD_READ		0
#define NBD_CMD_WRITE		1
#define NBD_CMD_DISC		2
#define NBD_CMD_FLUSH		3
#define NBD_CMD_TRIM		4
#define NBD_CMD_CACHE		5
#define NBD_CMD_WRITE_ZEROES	6
#define NBD_CMD_BLOCK_STATUS	7

#define NBD_CMD_FLAG_DF		(1u << 2)
#define NBD_CMD_FLAG_REQ_ONE	(1u << 3)

#define NBD_REPLY_FLAG_DONE	(1u << 0)
#define NBD_REPLY_TYPE_NONE	0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR	((1u << 15) + 1)

#define NBD_EPERM		1
#define NBD_EIO			5
#define NBD_ENOMEM		12
#define NBD_EINVAL		22
#define NBD_EOVERFLOW		75
#define NBD_ENOTSUP		95

#define NBD_STATE_DIRTY		1

/* Limits: what one client may make the server hold or do. */
#define NBD_MAX_PAYLOAD		(32u << 20)	/* READ length, WRITE payload drained */
#define NBD_MAX_OPTION		(64u << 10)	/* one handshake option's data */
#define NBD_MAX_OPTIONS		1024		/* options in one handshake */
#define NBD_MAX_EXTENTS		16384		/* descriptors in one BLOCK_STATUS chunk */
#define NBD_MAX_NAME		4096		/* export and context names */
#define NBD_IO_CHUNK		(256u << 10)	/* READ data is sent in pieces this big */
/* a connection's splice pipe: a piece at any offset (one page more) fits */
#define NBD_PIPE_SIZE		(4 * NBD_IO_CHUNK)
/* a connection's buffer: a READ piece, a BLOCK_STATUS payload, a name */
#define NBD_BUF_SIZE		(NBD_IO_CHUNK > 8 * NBD_MAX_EXTENTS ? NBD_IO_CHUNK : 8 * NBD_MAX_EXTENTS)
#define NBD_HANDSHAKE_TIMEOUT_S	10		/* each read of the handshake */
#define NBD_HANDSHAKE_MAX_S	60		/* the whole handshake */
#define NBD_SEND_TIMEOUT_S	30
#define NBD_MAX_CONNECTIONS_CAP	1000
#define NBD_FD_RESERVE		256		/* descriptors kept for the rest of the daemon */

/* Context IDs handed out by SET_META_CONTEXT. */
#define NBD_META_ID_BASE_ALLOCATION 1
#define NBD_META_ID_DIRTY_BITMAP 2

/* A run of dirty bytes in the exported bitmap (sorted, not overlapping). */
struct nbd_run {
	uint64_t off, len;
};

/*
 * An export as the protocol sees it.  The owner fills the fields before
 * nbd_server_add() and keeps them unchanged until nbd_server_remove()
 * returns; the server only reads them, except readmap.
 */
struct nbd_exp {
	char name[NBD_MAX_NAME + 1];
	int fd;				/* the data, read with pread() */
	uint64_t size;
	const char *bitmap;		/* the bitmap's export name, or NULL */
	uint64_t granularity;		/* of the bitmap */
	const struct nbd_run *dirty;	/* the frozen bitmap's dirty runs */
	size_t ndirty;
	/*
	 * One bit per granule, set once a client has read the whole granule
	 * (atomically, by any client thread); NULL without a bitmap.
	 */
	uint64_t *readmap;
	/* server-private */
	int clients;			/* connections that chose it */
	bool removed;
	struct nbd_exp *next;
};

struct tls_creds;

struct nbd_server_opts {
	const char *unix_path;		/* a Unix socket, or NULL for TCP */
	const char *host, *port;	/* TCP: must resolve to loopback only, unless tls */
	unsigned max_connections;	/* 0: NBD_MAX_CONNECTIONS_CAP */
	/* TLS required (STARTTLS first), with these; kept until nbd_server_stop() */
	const struct tls_creds *tls;
};

/* Listen and serve in threads of the server's own.  0, or -errno with a message. */
int nbd_server_start(const struct nbd_server_opts *o, char *err, size_t errlen);
bool nbd_server_running(void);
/* Close the listener, drop every connection, wait for their threads. */
void nbd_server_stop(void);

/* Make x visible to clients (by name). */
void nbd_server_add(struct nbd_exp *x);
/* Connections that use x now. */
int nbd_server_clients(struct nbd_exp *x);
/*
 * Hide x from new clients; if hard, drop the connections that use it.
 * Waits until no connection uses it any more (a connection still using it
 * when !hard is waited for: check nbd_server_clients() first).
 */
void nbd_server_remove(struct nbd_exp *x, bool hard);

/* true if every granule of x's dirty runs was read by some client. */
bool nbd_exp_all_read(const struct nbd_exp *x);

/*
 * The protocol's pure parts, for the unit tests.
 *
 * The extents of x's bitmap context over [off, off+len) (len clipped to
 * the export's end), at most max of them, as (length, flags) pairs in
 * host order into out.  Returns how many (>= 1 when off < size).
 */
size_t nbd_dirty_extents(const struct nbd_exp *x, uint64_t off, uint64_t len,
			 uint32_t (*out)[2], size_t max);
/* Mark the granules wholly inside [off, off+len) as read. */
void nbd_mark_read(struct nbd_exp *x, uint64_t off, uint64_t len);

/*
 * Does the meta context query q (qlen bytes) select x's contexts?  For LIST
 * wildcards count; for SET only exact names.  Returns a mask: bit 0
 * base:allocation, bit 1 the bitmap.
 */
unsigned nbd_meta_match(const struct nbd_exp *x, const char *q, size_t qlen, bool list);

#endif
