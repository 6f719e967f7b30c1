// SPDX-License-Identifier: GPL-2.0
/*
 * GnuTLS for the NBD server: see tls.h.  The texts of the loading errors
 * are QEMU's (crypto/tlscreds.c, tlscredsx509.c, tlscredspsk.c) where the
 * concept is the same.
 *
 * The handshake is run non-blocking against a deadline (poll() in the
 * direction GnuTLS is waiting for), so a client that stalls or trickles
 * bytes mid-handshake holds only its own connection's thread, and not for
 * longer than the NBD handshake's own limits.  Afterwards a connection's
 * thread reads records with blocking calls and the socket's timeouts: it
 * never polls the socket, so data GnuTLS has already buffered
 * (gnutls_record_check_pending()) is always consumed first.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls.h"

#define PSK_FILE_MAX (1u << 20)

struct tls_creds {
	enum tls_kind kind;
	bool verify_peer;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_dh_params_t dh;
	gnutls_priority_t prio;
};

struct tls_session {
	gnutls_session_t s;
	int fd;
};

/*
 * DIR/name into *path (malloc'd), or NULL if it is optional and absent.
 * QEMU's qcrypto_tls_creds_get_path().
 */
static int cred_path(const char *dir, const char *name, bool required, char **path,
		     char *err, size_t errlen)
{
	struct stat st;

	*path = NULL;
	if (asprintf(path, "%s/%s", dir, name) < 0) {
		*path = NULL;
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (stat(*path, &st) == 0)
		return 0;
	if (errno != ENOENT || required) {
		int r = -errno;

		snprintf(err, errlen, "Unable to access credentials %s: %s", *path, strerror(-r));
		free(*path);
		*path = NULL;
		return r;
	}
	free(*path);
	*path = NULL;
	return 0;
}

/* dh-params.pem if there is one; else GnuTLS's well-known groups (RFC 7919). */
static int load_dh(struct tls_creds *c, const char *dir, char *err, size_t errlen)
{
	gnutls_datum_t d = { 0 };
	char *path;
	int r = cred_path(dir, "dh-params.pem", false, &path, err, errlen);

	if (r || !path)
		return r;
	r = gnutls_load_file(path, &d);
	if (r >= 0)
		r = gnutls_dh_params_init(&c->dh);
	if (r >= 0)
		r = gnutls_dh_params_import_pkcs3(c->dh, &d, GNUTLS_X509_FMT_PEM);
	gnutls_free(d.data);
	if (r < 0) {
		snprintf(err, errlen, "Unable to load DH parameters from %s: %s", path,
			 gnutls_strerror(r));
		free(path);
		return -EINVAL;
	}
	free(path);
	return 0;
}

static int load_x509(struct tls_creds *c, const char *dir, char *err, size_t errlen)
{
	char *ca = NULL, *crl = NULL, *cert = NULL, *key = NULL;
	int r;

	if ((r = cred_path(dir, "ca-cert.pem", true, &ca, err, errlen)) ||
	    (r = cred_path(dir, "ca-crl.pem", false, &crl, err, errlen)) ||
	    (r = cred_path(dir, "server-cert.pem", true, &cert, err, errlen)) ||
	    (r = cred_path(dir, "server-key.pem", true, &key, err, errlen)) ||
	    (r = load_dh(c, dir, err, errlen)))
		goto out;
	r = -EINVAL;
	if (gnutls_certificate_allocate_credentials(&c->x509) < 0) {
		snprintf(err, errlen, "Cannot allocate credentials");
		r = -ENOMEM;
		goto out;
	}
	/* returns how many certificates it loaded: none is an error too */
	r = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (r <= 0) {
		snprintf(err, errlen, "Cannot load CA certificate '%s': %s", ca,
			 r ? gnutls_strerror(r) : "no certificate in it");
		r = -EINVAL;
		goto out;
	}
	r = gnutls_certificate_set_x509_key_file2(c->x509, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r < 0) {
		snprintf(err, errlen, "Cannot load certificate '%s' & key '%s': %s", cert, key,
			 gnutls_strerror(r));
		r = -EINVAL;
		goto out;
	}
	if (crl && (r = gnutls_certificate_set_x509_crl_file(c->x509, crl, GNUTLS_X509_FMT_PEM)) < 0) {
		snprintf(err, errlen, "Cannot load CRL '%s': %s", crl, gnutls_strerror(r));
		r = -EINVAL;
		goto out;
	}
	if (c->dh)
		gnutls_certificate_set_dh_params(c->x509, c->dh);
	else
		gnutls_certificate_set_known_dh_params(c->x509, GNUTLS_SEC_PARAM_MEDIUM);
	r = 0;
out:
	free(ca);
	free(crl);
	free(cert);
	free(key);
	return r;
}

/*
 * keys.psk: GnuTLS reads it at each handshake; check its lines now
 * ("username:hexkey") so that a typo is reported by object-add, not as
 * every client's handshake failing.
 */
static int check_psk_file(const char *path, char *err, size_t errlen)
{
	char line[1024];
	FILE *f = fopen(path, "re");
	int n = 0, keys = 0, r = 0;

	if (!f) {
		r = -errno;
		snprintf(err, errlen, "Unable to access credentials %s: %s", path, strerror(-r));
		return r;
	}
	while (!r && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *p;
		size_t hex;

		n++;
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0])
			continue;
		hex = colon ? strspn(colon + 1, "0123456789abcdefABCDEF") : 0;
		for (p = colon ? colon + 1 + hex : line; *p == ' ' || *p == '\t'; p++)
			;
		if (!colon || colon == line || !hex || hex % 2 || *p)
			r = -EINVAL;
		else
			keys++;
	}
	if (!r && ferror(f))
		r = -EIO;
	if (!r && ftell(f) > (long)PSK_FILE_MAX)
		r = -EFBIG;
	fclose(f);
	if (r == -EINVAL)
		snprintf(err, errlen, "Cannot load PSK file %s: line %d is not 'username:hexkey' "
			 "(a name, a colon, an even number of hex digits)", path, n);
	else if (r)
		snprintf(err, errlen, "Cannot load PSK file %s: %s", path, strerror(-r));
	else if (!keys)
		snprintf(err, errlen, "Cannot load PSK file %s: it has no key", path);
	return r ? r : keys ? 0 : -EINVAL;
}

static int load_psk(struct tls_creds *c, const char *dir, char *err, size_t errlen)
{
	char *path;
	int r = cred_path(dir, "keys.psk", true, &path, err, errlen);

	if (!r)
		r = load_dh(c, dir, err, errlen);
	if (!r)
		r = check_psk_file(path, err, errlen);
	if (!r && gnutls_psk_allocate_server_credentials(&c->psk) < 0) {
		snprintf(err, errlen, "Cannot allocate credentials");
		r = -ENOMEM;
	}
	if (!r && gnutls_psk_set_server_credentials_file(c->psk, path) < 0) {
		snprintf(err, errlen, "Cannot load PSK file %s", path);
		r = -EINVAL;
	}
	if (!r) {
		if (c->dh)
			gnutls_psk_set_server_dh_params(c->psk, c->dh);
		else
			gnutls_psk_set_server_known_dh_params(c->psk, GNUTLS_SEC_PARAM_MEDIUM);
	}
	free(path);
	return r;
}

struct tls_creds *tls_creds_load(const struct tls_creds_opts *o, char *err, size_t errlen)
{
	struct tls_creds *c = calloc(1, sizeof(*c));
	char prio[512];
	const char *errpos = NULL;
	int r;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->kind = o->kind;
	c->verify_peer = o->verify_peer;
	if (!o->dir) {
		snprintf(err, errlen, "Missing 'dir' property value");
		goto fail;
	}
	if (o->kind == TLS_X509 ? load_x509(c, o->dir, err, errlen) : load_psk(c, o->dir, err, errlen))
		goto fail;
	/* PSK key exchanges are not in GnuTLS's defaults: add them, as QEMU does */
	if (snprintf(prio, sizeof(prio), "%s%s", o->priority ? o->priority : "NORMAL",
		     o->kind == TLS_PSK ? ":+ECDHE-PSK:+DHE-PSK:+PSK" : "") >= (int)sizeof(prio)) {
		snprintf(err, errlen, "TLS priority string too long");
		goto fail;
	}
	r = gnutls_priority_init(&c->prio, prio, &errpos);
	if (r < 0) {
		snprintf(err, errlen, "Unable to set TLS session priority %s: %s (at '%.32s')", prio,
			 gnutls_strerror(r), errpos ? errpos : "");
		c->prio = NULL;
		goto fail;
	}
	return c;
fail:
	tls_creds_free(c);
	return NULL;
}

void tls_creds_free(struct tls_creds *c)
{
	if (!c)
		return;
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk)
		gnutls_psk_free_server_credentials(c->psk);
	if (c->dh)
		gnutls_dh_params_deinit(c->dh);
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	free(c);
}

/* Milliseconds until deadline, at most step_s seconds; <= 0 once it passed. */
static int wait_ms(const struct timespec *deadline, int step_s)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
	     (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms > step_s * 1000LL ? step_s * 1000 : (int)ms;
}

static void handshake_error(gnutls_session_t s, int r, char *err, size_t errlen)
{
	gnutls_datum_t out = { 0 };

	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		snprintf(err, errlen, "TLS handshake failed: the client sent the alert '%s'",
			 gnutls_alert_get_name(gnutls_alert_get(s)));
	} else if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR &&
		   gnutls_certificate_verification_status_print(
			   gnutls_session_get_verify_cert_status(s), GNUTLS_CRT_X509, &out, 0) >= 0) {
		snprintf(err, errlen, "TLS handshake failed: the client's certificate: %s", out.data);
		gnutls_free(out.data);
	} else {
		snprintf(err, errlen, "TLS handshake failed: %s", gnutls_strerror(r));
	}
}

struct tls_session *tls_session_start(const struct tls_creds *c, int fd, int step_s,
				      const struct timespec *deadline, char *err, size_t errlen)
{
	struct tls_session *t = calloc(1, sizeof(*t));
	int fl = fcntl(fd, F_GETFL), r;

	if (!t || fl < 0 || gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
		snprintf(err, errlen, "cannot set up a TLS session: %s", strerror(t ? errno : ENOMEM));
		free(t);
		return NULL;
	}
	t->fd = fd;
	r = gnutls_priority_set(t->s, c->prio);
	if (r >= 0 && c->kind == TLS_X509) {
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
		if (c->verify_peer) {
			/* no certificate, or one the CA did not sign: the handshake fails */
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
			gnutls_session_set_verify_cert(t->s, NULL, 0);
		}
	} else if (r >= 0) {
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk);
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot set up a TLS session: %s", gnutls_strerror(r));
		goto fail;
	}
	gnutls_transport_set_int(t->s, fd);
	if (fcntl(fd, F_SETFL, fl | O_NONBLOCK)) {
		snprintf(err, errlen, "cannot set up a TLS session: %s", strerror(errno));
		goto fail;
	}
	for (;;) {
		struct pollfd p = { .fd = fd };
		int ms;

		r = gnutls_handshake(t->s);
		if (!r)
			break;
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED && gnutls_error_is_fatal(r)) {
			handshake_error(t->s, r, err, errlen);
			goto fail_fl;
		}
		ms = wait_ms(deadline, step_s);
		if (ms <= 0) {
			snprintf(err, errlen, "TLS handshake failed: the client took too long");
			goto fail_fl;
		}
		if (r != GNUTLS_E_AGAIN)
			continue;	/* a warning alert or a signal: go on */
		p.events = gnutls_record_get_direction(t->s) ? POLLOUT : POLLIN;
		r = poll(&p, 1, ms);
		if (r == 0) {
			snprintf(err, errlen, "TLS handshake failed: the client stalled for %d s",
				 (ms + 999) / 1000);
			goto fail_fl;
		}
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "TLS handshake failed: %s", strerror(errno));
			goto fail_fl;
		}
	}
	if (fcntl(fd, F_SETFL, fl)) {
		snprintf(err, errlen, "cannot set up a TLS session: %s", strerror(errno));
		goto fail;
	}
	return t;
fail_fl:
	fcntl(fd, F_SETFL, fl);
fail:
	gnutls_deinit(t->s);
	free(t);
	return NULL;
}

int tls_session_full(struct tls_session *t, void *in, const void *out, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = in ? gnutls_record_recv(t->s, (char *)in + done, n - done) :
				 gnutls_record_send(t->s, (const char *)out + done, n - done);

		if (r == GNUTLS_E_INTERRUPTED)
			continue;
		/* GNUTLS_E_AGAIN: the socket's timeout; anything else: over */
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

void tls_session_end(struct tls_session *t)
{
	int fl;

	if (!t)
		return;
	/* a close_notify if it fits in the socket now; never wait for the client */
	fl = fcntl(t->fd, F_GETFL);
	if (fl >= 0 && !fcntl(t->fd, F_SETFL, fl | O_NONBLOCK))
		gnutls_bye(t->s, GNUTLS_SHUT_WR);
	gnutls_deinit(t->s);
	free(t);
}
