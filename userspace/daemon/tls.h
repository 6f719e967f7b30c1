/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TLS for bsyncd's NBD server, and only GnuTLS: server credentials loaded
 * from a directory with QEMU's file names (x509: ca-cert.pem,
 * server-cert.pem, server-key.pem, optional ca-crl.pem and dh-params.pem;
 * PSK: keys.psk, optional dh-params.pem), and a server session on a
 * connected socket: the handshake against a deadline, then whole-record
 * reads and writes.  Which credentials exist (QMP object-add) is
 * tls-creds.c's; when a connection starts TLS is nbd-handshake.c's.
 *
 * Credentials are immutable once loaded and shared by every connection's
 * thread (GnuTLS allows that); a session belongs to one thread.
 */
#ifndef BSYNCD_TLS_H
#define BSYNCD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum tls_kind { TLS_X509, TLS_PSK };

struct tls_creds_opts {
	enum tls_kind kind;
	const char *dir;
	bool verify_peer;	/* x509: a client certificate signed by the CA is required */
	const char *priority;	/* a GnuTLS priority string, or NULL for "NORMAL" */
};

struct tls_creds;
struct tls_session;

/* Load the files of o->dir.  NULL with a message in err (QEMU's texts). */
struct tls_creds *tls_creds_load(const struct tls_creds_opts *o, char *err, size_t errlen);
void tls_creds_free(struct tls_creds *c);

/*
 * The server side of a TLS handshake on fd (blocking or not; it is made
 * non-blocking for the handshake and restored), waiting at most step_s
 * seconds for each read or write and never past deadline (CLOCK_MONOTONIC).
 * NULL on failure, with why in err for the log.
 */
struct tls_session *tls_session_start(const struct tls_creds *c, int fd, int step_s,
				      const struct timespec *deadline, char *err, size_t errlen);
/*
 * n whole bytes into in or out of out (the other NULL), with the socket's
 * own timeouts; -1 on EOF, error or timeout (the connection is over).
 */
int tls_session_full(struct tls_session *s, void *in, const void *out, size_t n);
void tls_session_end(struct tls_session *s);

#endif
