// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD server's handshake (fixed newstyle; see nbd-server.h and
 * nbd-server-internal.h): the greeting, then options until the client
 * chooses an export: EXPORT_NAME, INFO and GO, LIST, STRUCTURED_REPLY and
 * the meta contexts (`base:allocation`, `qemu:dirty-bitmap:NAME`) a later
 * BLOCK_STATUS reports.  It fills the connection's struct nbd_client for
 * nbd-transmission.c; the sockets and threads are nbd-server.c's.
 *
 * The handshake is bounded: NBD_MAX_OPTIONS options of NBD_MAX_OPTION
 * bytes each, in NBD_HANDSHAKE_MAX_S seconds (the TLS handshake
 * included), into buffers that are freed before the transmission phase.
 *
 * A server with TLS credentials answers every option before STARTTLS
 * with ERR_TLS_REQD (EXPORT_NAME, which has no error reply, closes; ABORT
 * is acknowledged), as QEMU's nbd/server.c and the protocol's "TLS
 * required" mode; after STARTTLS's ACK the TLS handshake (tls.c), then the
 * same options through the session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbd-server-internal.h"

/* The pure part: which contexts a query names */
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

/*
 * Replies and options
 */
static int send_rep(struct nbd_client *c, uint32_t opt, uint32_t type, const void *data,
		    uint32_t len)
{
	uint8_t h[20];

	put64(h, NBD_REP_MAGIC);
	put32(h + 8, opt);
	put32(h + 12, type);
	put32(h + 16, len);
	if (conn_send(c, h, sizeof(h)))
		return -1;
	return len ? conn_send(c, data, len) : 0;
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
	x = nbd_exp_get(c, (const char *)d + 4, nlen);
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
	nbd_exp_put(c);
	return 0;
fail:
	nbd_exp_put(c);
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
	x = nbd_exp_get(c, (const char *)d + 4, nlen);
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
	nbd_exp_put(c);
	return r ? r : send_rep(c, opt, NBD_REP_ACK, NULL, 0);
}

static int opt_list(struct nbd_client *c, uint32_t opt, uint32_t len)
{
	char (*names)[NBD_MAX_NAME + 1] = NULL;
	size_t n, i;
	int r = 0;

	if (len)
		return send_err(c, opt, NBD_REP_ERR_INVALID, "no data expected");
	n = nbd_exp_names(&names);
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
	struct nbd_exp *x = nbd_exp_get(c, (const char *)c->opt, len);

	if (!x)
		return -1;
	put64(r, x->size);
	put16(r + 8, trans_flags(c));
	if (conn_send(c, r, c->no_zeroes ? 10 : sizeof(r))) {
		nbd_exp_put(c);
		return -1;
	}
	choose(c, x);
	return 1;
}

/* The TLS handshake's wait for each read or write; the unit test shortens it. */
static int tls_step_s = NBD_HANDSHAKE_TIMEOUT_S;

/*
 * NBD_OPT_STARTTLS on a server that requires TLS: ACK in the clear, then
 * the TLS handshake by the deadline.  0 with c->tls, or -1 to close.
 */
static int opt_starttls(struct nbd_client *c, uint32_t len, const struct timespec *t0)
{
	struct timespec deadline = { t0->tv_sec + NBD_HANDSHAKE_MAX_S, t0->tv_nsec };
	char err[512];

	if (len) {	/* QEMU drops such a client: it cannot start TLS correctly */
		send_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
		return -1;
	}
	if (send_rep(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0))
		return -1;
	c->tls = tls_session_start(c->tls_creds, c->fd, tls_step_s, &deadline, err,
				   sizeof(err));
	if (!c->tls) {
		fprintf(stderr, "bsyncd: NBD client refused: %s\n", err);
		return -1;
	}
	return 0;
}

/*
 * An option before STARTTLS on a server that requires TLS: 0 to go on
 * (replied), 1 to start TLS, -1 to close.
 */
static int opt_before_tls(struct nbd_client *c, uint32_t opt)
{
	char msg[64];

	switch (opt) {
	case NBD_OPT_STARTTLS:
		return 1;
	case NBD_OPT_EXPORT_NAME:
		return -1;	/* no way to tell the client why */
	case NBD_OPT_ABORT:
		send_rep(c, opt, NBD_REP_ACK, NULL, 0);
		return -1;
	default:
		snprintf(msg, sizeof(msg), "Option 0x%x not permitted before TLS", opt);
		return send_err(c, opt, NBD_REP_ERR_TLS_REQD, msg);
	}
}

int nbd_handshake(struct nbd_client *c)
{
	struct timespec t0;
	uint8_t h[18];
	uint32_t flags;
	int n, r;

	put64(h, NBD_MAGIC);
	put64(h + 8, NBD_IHAVEOPT);
	put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (conn_send(c, h, 18) || conn_recv(c, h, 4))
		return -1;
	flags = get32(h);
	if (flags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
		return -1;
	if (c->tls_creds && !(flags & NBD_FLAG_FIXED_NEWSTYLE))
		return -1;	/* STARTTLS needs fixed newstyle */
	c->no_zeroes = flags & NBD_FLAG_NO_ZEROES;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (n = 0; n < NBD_MAX_OPTIONS; n++) {
		struct timespec now;
		uint32_t opt, len;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > NBD_HANDSHAKE_MAX_S)
			return -1;	/* a trickle of options: the slot is for others */
		if (conn_recv(c, h, 16) || get64(h) != NBD_IHAVEOPT)
			return -1;
		opt = get32(h + 8);
		len = get32(h + 12);
		if (len > NBD_MAX_OPTION) {
			if (opt != NBD_OPT_EXPORT_NAME)
				send_err(c, opt, NBD_REP_ERR_TOO_BIG, "option too big");
			return -1;
		}
		if (conn_recv(c, c->opt, len))
			return -1;
		if (c->tls_creds && !c->tls) {
			r = opt_before_tls(c, opt);
			if (r == 1)
				r = opt_starttls(c, len, &t0);
			if (r)
				return -1;
			continue;
		}
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
			if (c->tls)
				r = send_err(c, opt, NBD_REP_ERR_INVALID, "TLS already enabled");
			else
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
