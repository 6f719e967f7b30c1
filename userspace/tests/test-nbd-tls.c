// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's NBD server with TLS required, on the host (a file as the
 * export), against a GnuTLS client: x509 (client certificates verified)
 * and PSK read through TLS; the wrong CA, a wrong key, no certificate
 * refused; options before STARTTLS refused as QEMU's server refuses them;
 * garbage, a stall and a hang-up mid-handshake close only their own
 * connection while others are served.  The credentials are made fresh by
 * ../selftests/tls-certs.sh (openssl).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "../daemon/nbd-handshake.c"
#include "../daemon/nbd-server.c"
#include "../daemon/nbd-transmission.c"
#include "../daemon/tls.c"
#include "nbd-test-client.h"
#include "tap.h"

#define MiB (1u << 20)
#define SIZE (4 * MiB)

static char dir[64], file[128], certs[128];
static struct nbd_exp ex;
static uint8_t *data;

/* A GnuTLS client for a server that requires TLS. */
struct tcli {
	int fd;
	gnutls_session_t s;
	gnutls_certificate_credentials_t x;
	gnutls_psk_client_credentials_t p;
};

static void tcli_end(struct tcli *t)
{
	if (t->s)
		gnutls_deinit(t->s);
	if (t->x)
		gnutls_certificate_free_credentials(t->x);
	if (t->p)
		gnutls_psk_free_client_credentials(t->p);
	if (t->fd >= 0)
		close(t->fd);
	memset(t, 0, sizeof(*t));
	t->fd = -1;
}

/* The plaintext part: greeting, STARTTLS and its ACK.  0 or -1. */
static int tls_ask(int fd)
{
	int n;

	if (fd < 0 || hello(fd, 3) || send_opt(fd, NBD_OPT_STARTTLS, NULL, 0))
		return -1;
	return drain_reps(fd, NBD_OPT_STARTTLS, &n) == NBD_REP_ACK ? 0 : -1;
}

/*
 * Connect and start TLS: x509 with the files of certs/sub (ca-cert.pem,
 * and client-cert.pem/client-key.pem unless nocert), or PSK alice with
 * the key of certs/sub/keys.psk.  The handshake's result (0 when it worked).
 */
static int tcli_start(struct tcli *t, const char *sub, bool psk, bool nocert)
{
	char a[256], b[256];
	int r;

	memset(t, 0, sizeof(*t));
	t->fd = conn();
	if (tls_ask(t->fd))
		return -1;
	gnutls_init(&t->s, GNUTLS_CLIENT);
	gnutls_priority_set_direct(t->s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL);
	if (psk) {
		char line[256], *hex;
		gnutls_datum_t k;
		FILE *f;

		snprintf(a, sizeof(a), "%s/%s/keys.psk", certs, sub);
		f = fopen(a, "r");
		if (!f || !fgets(line, sizeof(line), f)) {
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		line[strcspn(line, "\n")] = 0;
		hex = strchr(line, ':') + 1;
		k.data = (unsigned char *)hex;
		k.size = (unsigned)strlen(hex);
		gnutls_psk_allocate_client_credentials(&t->p);
		gnutls_psk_set_client_credentials(t->p, "alice", &k, GNUTLS_PSK_KEY_HEX);
		gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, t->p);
	} else {
		gnutls_certificate_allocate_credentials(&t->x);
		snprintf(a, sizeof(a), "%s/%s/ca-cert.pem", certs, sub);
		gnutls_certificate_set_x509_trust_file(t->x, a, GNUTLS_X509_FMT_PEM);
		if (!nocert) {
			snprintf(a, sizeof(a), "%s/%s/client-cert.pem", certs, sub);
			snprintf(b, sizeof(b), "%s/%s/client-key.pem", certs, sub);
			gnutls_certificate_set_x509_key_file(t->x, a, b, GNUTLS_X509_FMT_PEM);
		}
		gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, t->x);
		gnutls_session_set_verify_cert(t->s, "localhost", 0);
	}
	gnutls_transport_set_int(t->s, t->fd);
	do
		r = gnutls_handshake(t->s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	return r;
}

static int tsend(struct tcli *t, const void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = gnutls_record_send(t->s, (const char *)p + done, n - done);

		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static int trecv(struct tcli *t, void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = gnutls_record_recv(t->s, (char *)p + done, n - done);

		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

/* Over TLS: an option, then its replies until ACK or an error (the last type). */
static int64_t topt(struct tcli *t, uint32_t opt, const void *payload, uint32_t len)
{
	uint8_t h[20], d[4096];

	put64(h, NBD_IHAVEOPT);
	put32(h + 8, opt);
	put32(h + 12, len);
	if (tsend(t, h, 16) || (len && tsend(t, payload, len)))
		return -1;
	for (;;) {
		uint32_t l;

		if (trecv(t, h, 20) || get64(h) != NBD_REP_MAGIC || get32(h + 8) != opt ||
		    (l = get32(h + 16)) > sizeof(d) || trecv(t, d, l))
			return -1;
		if (get32(h + 12) == NBD_REP_ACK || (get32(h + 12) & 0x80000000u))
			return get32(h + 12);
	}
}

/* Over TLS: GO, then a READ (simple reply) equal to the file.  true if so. */
static bool tls_read(struct tcli *t)
{
	uint8_t h[28], *b = malloc(MiB);
	bool ok;

	put32(h, NBD_REQUEST_MAGIC);
	put16(h + 4, 0);
	put16(h + 6, NBD_CMD_READ);
	put64(h + 8, 77);
	put64(h + 16, MiB + 512);
	put32(h + 24, MiB);
	ok = topt(t, NBD_OPT_GO, h, go_opt(h, "view")) == NBD_REP_ACK;
	put32(h, NBD_REQUEST_MAGIC);
	put16(h + 4, 0);
	put16(h + 6, NBD_CMD_READ);
	put64(h + 8, 77);
	put64(h + 16, MiB + 512);
	put32(h + 24, MiB);
	ok = ok && !tsend(t, h, 28) && !trecv(t, h, 16) && get32(h) == NBD_SIMPLE_REPLY_MAGIC &&
	     get32(h + 4) == 0 && get64(h + 8) == 77 && !trecv(t, b, MiB) &&
	     !memcmp(b, data + MiB + 512, MiB);
	put16(h + 6, NBD_CMD_DISC);
	if (ok)
		tsend(t, h, 28);
	free(b);
	return ok;
}

/* A good x509 client reads through TLS. */
static bool tls_good(void)
{
	struct tcli t;
	bool ok = tcli_start(&t, "client", false, false) == 0 && tls_read(&t);

	tcli_end(&t);
	return ok;
}

static void test_tls(void)
{
	struct tls_creds_opts co = { .kind = TLS_X509, .verify_peer = true };
	struct nbd_server_opts o = { .unix_path = sock };
	struct tls_creds *x509, *psk, *noverify = NULL;
	struct tcli t;
	char cmd[256], path[192], err[512];
	uint8_t buf[512];
	int fd, stall, n, r, before;
	struct timespec t0, t1;

	snprintf(certs, sizeof(certs), "%s/certs", dir);
	snprintf(cmd, sizeof(cmd), "sh ../selftests/tls-certs.sh %s", certs);
	if (system(cmd)) {
		tap_ok(0, "tls-certs.sh made the credentials (is openssl installed?)");
		return;
	}
	/* loading */
	snprintf(path, sizeof(path), "%s/client", certs);
	co.dir = path;
	tap_ok(!tls_creds_load(&co, err, sizeof(err)) && strstr(err, "Unable to access credentials") &&
	       strstr(err, "server-cert.pem: No such file"), "a dir without server-cert.pem: %s", err);
	snprintf(path, sizeof(path), "%s/server", certs);
	co.priority = "NORMAL:+FROB";
	tap_ok(!tls_creds_load(&co, err, sizeof(err)) && strstr(err, "Unable to set TLS session priority"),
	       "a bad priority: %s", err);
	co.priority = NULL;
	x509 = tls_creds_load(&co, err, sizeof(err));
	tap_ok(x509 != NULL, "x509 server credentials load (%s)", x509 ? "ok" : err);
	snprintf(path, sizeof(path), "%s/psk", certs);
	co.kind = TLS_PSK;
	psk = tls_creds_load(&co, err, sizeof(err));
	tap_ok(psk != NULL, "PSK server credentials load (%s)", psk ? "ok" : err);
	if (!x509 || !psk)
		goto out;

	o.tls = x509;
	r = nbd_server_start(&o, err, sizeof(err));
	tap_ok(r == 0, "server with TLS required starts (%s)", r ? err : "ok");
	nbd_server_add(&ex);
	before = connections();

	/* a client that stalls after STARTTLS: it holds only its own thread */
	stall = conn();
	tap_ok(!tls_ask(stall), "STARTTLS: ACK");
	clock_gettime(CLOCK_MONOTONIC, &t0);

	/* plaintext options */
	fd = conn();
	hello(fd, 3);
	send_opt(fd, NBD_OPT_LIST, NULL, 0);
	tap_ok(drain_reps(fd, NBD_OPT_LIST, &n) == NBD_REP_ERR_TLS_REQD, "LIST before STARTTLS: ERR_TLS_REQD");
	send_opt(fd, NBD_OPT_GO, buf, go_opt(buf, "view"));
	tap_ok(drain_reps(fd, NBD_OPT_GO, &n) == NBD_REP_ERR_TLS_REQD, "GO before STARTTLS: ERR_TLS_REQD");
	send_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	tap_ok(drain_reps(fd, NBD_OPT_STRUCTURED_REPLY, &n) == NBD_REP_ERR_TLS_REQD,
	       "STRUCTURED_REPLY before STARTTLS: ERR_TLS_REQD");
	send_opt(fd, NBD_OPT_EXPORT_NAME, "view", 4);
	tap_ok(closed(fd), "EXPORT_NAME before STARTTLS: closed");
	close(fd);
	fd = conn();
	hello(fd, 3);
	send_opt(fd, NBD_OPT_ABORT, NULL, 0);
	tap_ok(drain_reps(fd, NBD_OPT_ABORT, &n) == NBD_REP_ACK && closed(fd), "ABORT before STARTTLS: ACK, closed");
	close(fd);
	fd = conn();
	hello(fd, 3);
	send_opt(fd, NBD_OPT_STARTTLS, "x", 1);
	tap_ok(drain_reps(fd, NBD_OPT_STARTTLS, &n) == NBD_REP_ERR_INVALID && closed(fd),
	       "STARTTLS with data: ERR_INVALID, closed");
	close(fd);
	fd = conn();
	hello(fd, 0);
	tap_ok(closed(fd), "a client without fixed newstyle: closed");
	close(fd);

	/* hostile handshakes */
	fd = conn();
	tls_ask(fd);
	memset(buf, 0x16, sizeof(buf));	/* a "handshake record" of nonsense */
	send_full(fd, buf, sizeof(buf));
	tap_ok(closed(fd), "garbage instead of a ClientHello: closed");
	close(fd);
	fd = conn();
	tls_ask(fd);
	send_full(fd, "GET / HTTP/1.0\r\n\r\n", 18);
	tap_ok(closed(fd), "plaintext instead of a ClientHello: closed");
	close(fd);
	fd = conn();
	tls_ask(fd);
	close(fd);	/* hung up mid-handshake */
	for (n = 0; n < 300 && connections() > before + 1; n++)
		usleep(10000);
	tap_ok(connections() == before + 1, "a hang-up mid-handshake ends its connection (%d left)",
	       connections() - before);

	/* x509 */
	tap_ok(tls_good(), "x509: a client with a certificate reads through TLS, while another stalls");
	r = tcli_start(&t, "client", false, false);
	tap_ok(r == 0 && topt(&t, NBD_OPT_STARTTLS, NULL, 0) == NBD_REP_ERR_INVALID &&
	       topt(&t, NBD_OPT_STRUCTURED_REPLY, NULL, 0) == NBD_REP_ACK,
	       "STARTTLS again: ERR_INVALID, and the session goes on");
	tcli_end(&t);
	r = tcli_start(&t, "client", false, true);
	tap_ok(r < 0 || topt(&t, NBD_OPT_LIST, NULL, 0) < 0, "x509: a client without a certificate is refused (%s)",
	       gnutls_strerror(r));
	tcli_end(&t);
	r = tcli_start(&t, "other", false, false);
	tap_ok(r < 0, "x509: a client that does not trust the server's CA gives up (%s)",
	       gnutls_strerror(r));
	tcli_end(&t);
	tap_ok(tls_good(), "a good client is still served");
	nbd_server_stop();

	/* verify-peer false: no client certificate asked for */
	snprintf(path, sizeof(path), "%s/server", certs);
	co.dir = path;
	co.kind = TLS_X509;
	co.verify_peer = false;
	o.tls = noverify = tls_creds_load(&co, err, sizeof(err));
	r = o.tls ? nbd_server_start(&o, err, sizeof(err)) : -1;
	nbd_server_add(&ex);
	r = r ? r : tcli_start(&t, "client", false, true);
	tap_ok(r == 0 && tls_read(&t), "verify-peer false: a client without a certificate reads");
	tcli_end(&t);
	nbd_server_stop();

	/* PSK */
	o.tls = psk;
	r = nbd_server_start(&o, err, sizeof(err));
	nbd_server_add(&ex);
	r = r ? r : tcli_start(&t, "psk", true, false);
	tap_ok(r == 0 && tls_read(&t), "PSK: the right key reads through TLS");
	tcli_end(&t);
	r = tcli_start(&t, "psk-wrong", true, false);
	tap_ok(r < 0 || topt(&t, NBD_OPT_LIST, NULL, 0) < 0, "PSK: a wrong key is refused (%s)",
	       gnutls_strerror(r));
	tcli_end(&t);
	r = tcli_start(&t, "client", false, false);
	tap_ok(r < 0, "PSK: an x509 client is refused (%s)", gnutls_strerror(r));
	tcli_end(&t);
	nbd_server_stop();

	o.tls = x509;
	tls_step_s = 2;	/* NBD_HANDSHAKE_TIMEOUT_S, shortened for the test's time */
	nbd_server_start(&o, err, sizeof(err));
	nbd_server_add(&ex);
	/* the stalled client: closed by the per-read limit, not earlier than it */
	tap_ok(closed(stall), "the stalled handshake was closed");	/* by the stops */
	close(stall);
	stall = conn();
	tls_ask(stall);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	{
		struct timeval tv = { .tv_sec = tls_step_s + 5 };

		setsockopt(stall, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	r = closed(stall);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	tap_ok(r && t1.tv_sec - t0.tv_sec >= tls_step_s - 1 && t1.tv_sec - t0.tv_sec <= tls_step_s + 2,
	       "a client that stalls mid-handshake is closed after %d s (%ld s)", tls_step_s,
	       (long)(t1.tv_sec - t0.tv_sec));
	close(stall);
	tap_ok(tls_good(), "and a good client is served");
	nbd_server_stop();
out:
	tls_creds_free(x509);
	tls_creds_free(psk);
	tls_creds_free(noverify);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
	if (system(cmd))
		tap_diag("cannot remove %s", certs);
}

int main(void)
{
	int fd;
	uint32_t i;

	snprintf(dir, sizeof(dir), "/tmp/test-nbd-tls-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof(sock), "%s/nbd.sock", dir);
	snprintf(file, sizeof(file), "%s/view.raw", dir);
	signal(SIGPIPE, SIG_IGN);
	data = malloc(SIZE);
	for (i = 0; i < SIZE; i++)
		data[i] = (uint8_t)(i * 13 + i / 4096);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	tap_ok(fd >= 0 && write(fd, data, SIZE) == SIZE, "export file written");
	close(fd);
	ex.fd = open(file, O_RDONLY);
	snprintf(ex.name, sizeof(ex.name), "view");
	ex.size = SIZE;
	test_tls();
	close(ex.fd);
	free(data);
	unlink(file);
	rmdir(dir);
	return tap_done();
}
