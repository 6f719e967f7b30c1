// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd's QMP server and command layer on the host (no dm needed): the
 * greeting, negotiation rules, QEMU's framing errors, malformed, oversized,
 * split and concatenated requests, argument checks (transaction's too),
 * several clients, events
 * only to negotiated clients, and a client that vanishes mid-reply.  The
 * daemon's modules are built in; the server runs in a thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../daemon/backup.c"
#include "../daemon/copier.c"
#include "../daemon/copyset.c"
#include "../daemon/fanout.c"
#include "../daemon/fleece.c"
#include "../daemon/inflight.c"
#include "../daemon/commands.c"
#include "../daemon/job.c"
#include "../daemon/nbd-export.c"
#include "../daemon/nbd-handshake.c"
#include "../daemon/nbd-server.c"
#include "../daemon/nbd-transmission.c"
#include "../daemon/tls.c"
#include "../daemon/log.c"
#include "../daemon/node.c"
#include "../daemon/openers.c"
#include "../daemon/qmp-server.c"
#include "../daemon/readers.c"
#include "../daemon/store.c"
#include "../daemon/tls-creds.c"
#include "../daemon/transaction.c"
#include "../daemon/view.c"
#include "qmp-client.h"
#include "tap.h"

static char path[108];

static void *server_thread(void *arg)
{
	(void)arg;
	qmp_server_run(NULL);
	return NULL;
}

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void raw_send(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;

	while (off < n) {
		ssize_t w = write(fd, s + off, n - off);

		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* Read one CRLF-terminated line (the server sends one object per line). */
static char *raw_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 3000) <= 0 || read(fd, buf + n, 1) != 1)
			break;
		if (buf[n] == '\n') {
			if (n && buf[n - 1] == '\r')
				n--;
			buf[n] = 0;
			return buf;
		}
		n++;
	}
	buf[n] = 0;
	return NULL;
}

static const char *desc_of(const char *line, char *out, size_t len)
{
	json_object *o = json_tokener_parse(line), *e, *d;

	snprintf(out, len, "(no error)");
	if (o && json_object_object_get_ex(o, "error", &e) && json_object_object_get_ex(e, "desc", &d))
		snprintf(out, len, "%s", json_object_get_string(d));
	json_object_put(o);
	return out;
}

/* Send text, read one reply line, return its error desc (or "(no error)"). */
static const char *ask(int fd, const char *req, char *out, size_t len)
{
	char line[8192];

	raw_send(fd, req);
	if (!raw_line(fd, line, sizeof(line))) {
		snprintf(out, len, "(no reply)");
		return out;
	}
	return desc_of(line, out, len);
}

/* Send a request made from fmt, return its error desc. */
__attribute__((format(printf, 4, 5)))
static const char *askf(int fd, char *out, size_t len, const char *fmt, ...)
{
	char req[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	return ask(fd, req, out, len);
}

#define ADD "{\"execute\": \"object-add\", \"arguments\": "

/* object-add / object-del of TLS credentials, and nbd-server-start with them. */
static void test_tls_creds(int fd, const char *nsock)
{
	char certs[128], cmd[256], d[1024], bad[256];
	FILE *f;

	snprintf(certs, sizeof(certs), "%s.certs", path);
	snprintf(cmd, sizeof(cmd), "sh ../selftests/tls-certs.sh %s", certs);
	if (system(cmd)) {
		tap_ok(0, "tls-certs.sh made the credentials (is openssl installed?)");
		return;
	}
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"secret\", \"id\": \"s\"}}\n"),
		       "Parameter 'qom-type' does not accept value 'secret'"), "object-add secret: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"0t\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/server\"}}\n", certs),
		       "Parameter 'id' expects an identifier"), "a bad id: %s", d);
	tap_ok(!strncmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t0\", "
			     "\"dir\": \"%s/server\"}}\n", certs),
			"Expected TLS credentials for a server endpoint", 46),
	       "no endpoint (QEMU's default: client): %s", d);
	tap_ok(!strncmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-psk\", \"id\": \"t0\", "
			     "\"endpoint\": \"client\", \"dir\": \"%s/psk\"}}\n", certs),
			"Expected TLS credentials for a server endpoint", 46), "endpoint client: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t0\", "
			    "\"endpoint\": \"server\"}}\n"), "Missing 'dir' property value"),
	       "no dir: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/nope\"}}\n", certs),
		       (snprintf(bad, sizeof(bad), "Unable to access credentials %s/nope/ca-cert.pem: "
				 "No such file or directory", certs), bad)), "a dir that is not there: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/server\", \"username\": \"u\"}}\n",
			    certs), "Parameter 'username' is unexpected"), "x509 with a username: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-psk\", \"id\": \"t0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/psk\", \"username\": \"u\"}}\n", certs),
		       "username should not be set when endpoint=server"), "psk with a username: %s", d);
	tap_ok(!strncmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t0\", "
			     "\"endpoint\": \"server\", \"dir\": \"%s/server\", \"priority\": \"FROB\"}}\n",
			     certs), "Unable to set TLS session priority FROB", 39), "a bad priority: %s", d);
	snprintf(bad, sizeof(bad), "%s/badpsk", certs);
	mkdir(bad, 0700);
	snprintf(bad, sizeof(bad), "%s/badpsk/keys.psk", certs);
	f = fopen(bad, "w");
	fputs("alice:00ff\nbob 1234\n", f);
	fclose(f);
	tap_ok(strstr(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-psk\", \"id\": \"t0\", "
			   "\"endpoint\": \"server\", \"dir\": \"%s/badpsk\"}}\n", certs),
		      "line 2 is not 'username:hexkey'") != NULL, "a bad keys.psk: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-x509\", \"id\": \"tls0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/server\"}}\n", certs), "(no error)"),
	       "object-add tls-creds-x509: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-psk\", \"id\": \"tls0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/psk\"}}\n", certs),
		       "attempt to add duplicate property 'tls0' to object (type 'container')"),
	       "a duplicate id: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), ADD "{\"qom-type\": \"tls-creds-psk\", \"id\": \"psk0\", "
			    "\"endpoint\": \"server\", \"dir\": \"%s/psk\", \"verify-peer\": false}}\n",
			    certs), "(no error)"), "object-add tls-creds-psk: %s", d);
	tap_ok(!strncmp(askf(fd, d, sizeof(d), "{\"execute\": \"nbd-server-start\", \"arguments\": "
			     "{\"addr\": {\"type\": \"unix\", \"path\": \"%s\"}, \"tls-creds\": \"tls0\", "
			     "\"tls-authz\": \"authz0\"}}\n", nsock), "'tls-authz' is not supported", 28),
	       "tls-authz: %s", d);
	/* with TLS, TCP on any address (port 0: any free one) */
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"nbd-server-start\", \"arguments\": "
			    "{\"addr\": {\"type\": \"inet\", \"host\": \"0.0.0.0\", \"port\": \"0\"}, "
			    "\"tls-creds\": \"tls0\"}}\n"), "(no error)"),
	       "nbd-server-start on 0.0.0.0 with tls-creds: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"tls0\"}}\n"),
		       "object 'tls0' is in use, can not be deleted"), "object-del while the server uses it: %s", d);
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"psk0\"}}\n"),
		       "(no error)"), "object-del of unused credentials");
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"nbd-server-stop\"}\n"), "(no error)"),
	       "nbd-server-stop");
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"tls0\"}}\n"),
		       "(no error)"), "object-del once the server stopped");
	tap_ok(!strcmp(askf(fd, d, sizeof(d), "{\"execute\": \"object-del\", \"arguments\": {\"id\": \"tls0\"}}\n"),
		       "object 'tls0' not found"), "object-del again: %s", d);
	tap_ok(!strncmp(askf(fd, d, sizeof(d), "{\"execute\": \"nbd-server-start\", \"arguments\": "
			     "{\"addr\": {\"type\": \"inet\", \"host\": \"0.0.0.0\", \"port\": \"0\"}, "
			     "\"x-allow-tcp-loopback\": true}}\n"), "NBD over TCP without TLS is only served on a loopback", 53),
	       "0.0.0.0 without TLS: %s", d);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
	if (system(cmd))
		tap_diag("cannot remove %s", certs);
}

int main(void)
{
	struct qmp_server_opts o = { .dispatch = commands_dispatch, .max_request = 4096 };
	char err[256], line[8192], d[1024];
	struct qmp_client *c;
	pthread_t th;
	int fd, fd2, r, i;

	snprintf(path, sizeof(path), "/tmp/test-bsyncd-server.%d", getpid());
	o.socket_path = path;
	r = qmp_server_start(&o, err, sizeof(err));
	tap_ok(r == 0, "server starts (%s)", r ? err : "ok");
	if (r)
		return tap_done();
	r = qmp_server_start(&o, err, sizeof(err));
	tap_ok(r == -EADDRINUSE || r == -EINVAL || r != 0, "a second server on a live socket is refused");
	pthread_create(&th, NULL, server_thread, NULL);

	fd = raw_connect();
	tap_ok(fd >= 0 && raw_line(fd, line, sizeof(line)) && strstr(line, "\"QMP\"") &&
	       strstr(line, "\"capabilities\":[]"), "greeting: %s", line);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-jobs\"}\n", d, sizeof(d)),
		       "Expecting capabilities negotiation with 'qmp_capabilities'"),
	       "commands refused before negotiation: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n",
			   d, sizeof(d)), "Parameter 'enable' does not accept value 'oob'"),
	       "unknown capability refused: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"qmp_capabilities\", \"id\": 7}\n", d, sizeof(d)), "(no error)"),
	       "qmp_capabilities");
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"qmp_capabilities\"}\n", d, sizeof(d)),
		       "Capabilities negotiation is already complete, command ignored"),
	       "second negotiation refused");
	raw_send(fd, "{\"execute\": \"query-jobs\", \"id\": {\"a\": [1, 2]}}\n");
	raw_line(fd, line, sizeof(line));
	tap_ok(!strcmp(line, "{\"return\":[],\"id\":{\"a\":[1,2]}}"), "id echoed as given: %s", line);

	/* framing */
	tap_ok(!strncmp(ask(fd, "{\"execute\": \"query-jobs\" ,,}\n", d, sizeof(d)), "JSON parse error, ", 18),
	       "malformed JSON: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-jobs\"}\n", d, sizeof(d)), "(no error)"),
	       "next request after a parse error works");
	tap_ok(!strcmp(ask(fd, "[1, 2]\n", d, sizeof(d)), "QMP input must be a JSON object"), "array refused");
	tap_ok(!strcmp(ask(fd, "{\"arguments\": {}}\n", d, sizeof(d)), "QMP input lacks member 'execute'"),
	       "missing execute");
	tap_ok(!strcmp(ask(fd, "{\"execute\": 3}\n", d, sizeof(d)), "QMP input member 'execute' must be a string"),
	       "execute not a string");
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-jobs\", \"arguments\": []}\n", d, sizeof(d)),
		       "QMP input member 'arguments' must be an object"), "arguments not an object");
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-jobs\", \"foo\": 1}\n", d, sizeof(d)),
		       "QMP input member 'foo' is unexpected"), "unknown member");
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"frobnicate\"}\n", d, sizeof(d)),
		       "The command frobnicate has not been found"), "unknown command");
	{
		char big[6000];

		memset(big, 'x', sizeof(big));
		memcpy(big, "{\"execute\": \"", 13);
		big[sizeof(big) - 3] = '"';
		big[sizeof(big) - 2] = '\n';
		big[sizeof(big) - 1] = 0;
		tap_ok(strstr(ask(fd, big, d, sizeof(d)), "larger than 4096 bytes") != NULL,
		       "oversized request refused: %s", d);
	}
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-jobs\"}\n", d, sizeof(d)), "(no error)"),
	       "server usable after an oversized request");
	/* split across writes, then two in one write */
	raw_send(fd, "{\"exec");
	usleep(20000);
	raw_send(fd, "ute\": \"query-jobs\"}");
	tap_ok(raw_line(fd, line, sizeof(line)) && strstr(line, "\"return\""), "request split across writes");
	raw_send(fd, "{\"execute\": \"query-jobs\", \"id\": 1}{\"execute\": \"query-block-jobs\", \"id\": 2}");
	tap_ok(raw_line(fd, line, sizeof(line)) && strstr(line, "\"id\":1") &&
	       raw_line(fd, line, sizeof(line)) && strstr(line, "\"id\":2"), "two requests in one write, in order");
	/* deep nesting does not crash */
	{
		char deep[2100];

		for (i = 0; i < 1000; i++)
			deep[i] = '[';
		for (; i < 2000; i++)
			deep[i] = ']';
		strcpy(deep + 2000, "\n");
		tap_ok(!strncmp(ask(fd, deep, d, sizeof(d)), "JSON parse error", 16), "deep nesting refused: %s", d);
	}

	/* argument checks */
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\"}}\n", d, sizeof(d)),
		       "Parameter 'target' is missing"), "missing argument: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": 5}}\n",
			   d, sizeof(d)), "Invalid parameter type for 'sync', expected: string"), "wrong type: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"most\"}}\n",
			   d, sizeof(d)), "Parameter 'sync' does not accept value 'most'"), "bad enum: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"full\", \"x\": 1}}\n",
			   d, sizeof(d)), "Parameter 'x' is unexpected"), "unexpected argument: %s", d);
	/* bsyncctl backup --fallback full's extension: a full backup, a known reason */
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"full\", \"x-fallback-reason\": \"whim\"}}\n",
			   d, sizeof(d)), "Parameter 'x-fallback-reason' does not accept value 'whim'"),
	       "x-fallback-reason: an unknown reason: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"incremental\", \"x-fallback-reason\": \"base-missing\"}}\n",
			   d, sizeof(d)), "'x-fallback-reason' requires sync mode 'full', not 'incremental'"),
	       "x-fallback-reason: only on a full backup: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"drive-backup\", \"arguments\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"full\", \"x-fallback-detail\": \"why\"}}\n",
			   d, sizeof(d)), "'x-fallback-detail' requires 'x-fallback-reason'"),
	       "x-fallback-detail alone: %s", d);
	/* transaction: QAPI's checks of every action before any is prepared */
	{
		static const char *const cases[][2] = {
			{ "{}", "Parameter 'actions' is missing" },
			{ "{\"actions\": {}}", "Invalid parameter type for 'actions', expected: array" },
			{ "{\"actions\": [7]}", "Invalid parameter type for 'actions[0]', expected: object" },
			{ "{\"actions\": [{\"data\": {}}]}", "Parameter 'actions[0].type' is missing" },
			{ "{\"actions\": [{\"type\": \"frob\", \"data\": {}}]}",
			  "Parameter 'actions[0].type' does not accept value 'frob'" },
			{ "{\"actions\": [{\"type\": \"abort\"}]}", "Parameter 'actions[0].data' is missing" },
			{ "{\"actions\": [{\"type\": \"abort\", \"data\": {}, \"x\": 1}]}",
			  "Parameter 'actions[0].x' is unexpected" },
			{ "{\"actions\": [{\"type\": \"abort\", \"data\": {\"x\": 1}}]}",
			  "Parameter 'actions[0].data.x' is unexpected" },
			{ "{\"actions\": [{\"type\": \"abort\", \"data\": {}}, {\"type\": \"block-dirty-bitmap-add\", \"data\": {\"node\": \"n\"}}]}",
			  "Parameter 'actions[1].data.name' is missing" },
			{ "{\"actions\": [{\"type\": \"drive-backup\", \"data\": {\"device\": \"d\", \"target\": \"t\", \"sync\": \"most\"}}]}",
			  "Parameter 'actions[0].data.sync' does not accept value 'most'" },
			{ "{\"actions\": [], \"properties\": {\"completion-mode\": \"x\"}}",
			  "Parameter 'properties.completion-mode' does not accept value 'x'" },
			{ "{\"actions\": [], \"properties\": {\"y\": 1}}", "Parameter 'properties.y' is unexpected" },
			{ "{\"actions\": [{\"type\": \"block-dirty-bitmap-add\", \"data\": {\"node\": \"n\", \"name\": \"b\"}}], \"properties\": {\"completion-mode\": \"grouped\"}}",
			  "Action 'block-dirty-bitmap-add' does not support transaction property completion-mode = grouped" },
			{ "{\"actions\": [{\"type\": \"abort\", \"data\": {}}]}", "Transaction aborted using Abort action" },
			{ "{\"actions\": []}", "(no error)" },
			{ "{\"actions\": [], \"properties\": {\"completion-mode\": \"grouped\"}}", "(no error)" },
		};
		char req[1024];
		size_t k;

		for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
			snprintf(req, sizeof(req), "{\"execute\": \"transaction\", \"arguments\": %s}\n",
				 cases[k][0]);
			tap_ok(!strcmp(ask(fd, req, d, sizeof(d)), cases[k][1]), "transaction %s: %s",
			       cases[k][0], d);
		}
	}
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"job-cancel\", \"arguments\": {\"id\": \"nope\"}}\n", d, sizeof(d)),
		       "Job not found"), "job-cancel of an unknown job: %s", d);
	tap_ok(!strcmp(ask(fd, "{\"execute\": \"block-job-cancel\", \"arguments\": {\"device\": \"nope\"}}\n", d, sizeof(d)),
		       "Block job 'nope' not found"), "block-job-cancel of an unknown job: %s", d);
	/* the NBD server's commands (no dm needed without exports) */
	{
		char req[512], nsock[128];

		snprintf(nsock, sizeof(nsock), "%s.nbd", path);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"nbd-server-stop\"}\n", d, sizeof(d)),
			       "NBD server not running"), "nbd-server-stop before a start: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {}}}\n",
				   d, sizeof(d)), "Parameter 'addr.type' is missing"), "addr without type: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"tcp\"}}}\n",
				   d, sizeof(d)), "Parameter 'addr.type' does not accept value 'tcp'"),
		       "unknown addr type: %s", d);
		snprintf(req, sizeof(req), "{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": "
			 "{\"type\": \"unix\", \"path\": \"%s\"}, \"tls-creds\": \"t0\"}}\n", nsock);
		tap_ok(!strcmp(ask(fd, req, d, sizeof(d)), "No TLS credentials with id 't0'"),
		       "tls-creds of no object: %s", d);
		test_tls_creds(fd, nsock);
		tap_ok(!strncmp(ask(fd, "{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": "
				    "{\"type\": \"inet\", \"host\": \"127.0.0.1\", \"port\": \"0\"}}}\n",
				    d, sizeof(d)), "NBD over TCP needs TLS", 22), "inet without the opt-in: %s", d);
		/* QEMU's SocketAddressLegacy form */
		snprintf(req, sizeof(req), "{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": "
			 "{\"type\": \"unix\", \"data\": {\"path\": \"%s\"}}, \"max-connections\": 4}}\n", nsock);
		tap_ok(!strcmp(ask(fd, req, d, sizeof(d)), "(no error)") && access(nsock, F_OK) == 0,
		       "nbd-server-start, legacy addr: %s", d);
		tap_ok(!strcmp(ask(fd, req, d, sizeof(d)), "NBD server already running"), "again: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"query-block-exports\"}\n", d, sizeof(d)), "(no error)"),
		       "query-block-exports");
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"block-export-del\", \"arguments\": {\"id\": \"x\"}}\n",
				   d, sizeof(d)), "Export 'x' is not found"), "block-export-del: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"block-export-add\", \"arguments\": {\"type\": \"nbd\", "
				   "\"id\": \"1x\", \"node-name\": \"n\"}}\n", d, sizeof(d)),
			       "Invalid block export id"), "block-export-add, bad id: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"block-export-add\", \"arguments\": {\"type\": \"fuse\", "
				   "\"id\": \"x\", \"node-name\": \"n\"}}\n", d, sizeof(d)),
			       "Parameter 'type' does not accept value 'fuse'"), "block-export-add, fuse: %s", d);
		tap_ok(!strcmp(ask(fd, "{\"execute\": \"nbd-server-stop\"}\n", d, sizeof(d)), "(no error)") &&
		       access(nsock, F_OK) != 0, "nbd-server-stop removes the socket");
	}
	raw_send(fd, "{\"execute\": \"block-job-cancel\", \"arguments\": {\"device\": \"nope\"}}\n");
	tap_ok(raw_line(fd, line, sizeof(line)) && strstr(line, "\"class\":\"DeviceNotActive\""),
	       "block-job-* error class DeviceNotActive");

	/* events reach negotiated clients only; the library client sees them */
	fd2 = raw_connect();
	raw_line(fd2, line, sizeof(line));	/* greeting, not negotiated */
	r = qmp_connect(path, &c, err, sizeof(err));
	tap_ok(r == 0, "library client connects (%s)", r ? err : "ok");
	if (r)
		return tap_done();
	qmp_event("TEST_EVENT", NULL);
	{
		json_object *ev = NULL;

		r = qmp_next_event(c, 3000, &ev, err, sizeof(err));
		tap_ok(!r && !strcmp(json_object_get_string(json_object_object_get(ev, "event")), "TEST_EVENT") &&
		       json_object_object_get_ex(json_object_object_get(ev, "timestamp"), "microseconds", NULL),
		       "event with timestamp delivered to a negotiated client");
		json_object_put(ev);
	}
	raw_send(fd, "{\"execute\": \"query-jobs\", \"id\": \"after-event\"}\n");
	tap_ok(raw_line(fd, line, sizeof(line)) && strstr(line, "TEST_EVENT") &&
	       raw_line(fd, line, sizeof(line)) && strstr(line, "after-event"),
	       "raw negotiated client got the event too");
	{
		struct pollfd p = { .fd = fd2, .events = POLLIN };

		tap_ok(poll(&p, 1, 200) == 0, "unnegotiated client got no event");
	}
	/* a client that sends and vanishes */
	for (i = 0; i < 20; i++) {
		int f = raw_connect();

		raw_send(f, "{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-commands\"}");
		close(f);
	}
	r = qmp_execute(c, "query-commands", NULL, NULL, 3000, err, sizeof(err));
	tap_ok(r == 0, "server alive after clients vanished mid-reply");
	qmp_close(c);
	close(fd);
	close(fd2);

	qmp_server_stop();
	pthread_join(th, NULL);
	qmp_server_shutdown();
	tap_ok(access(path, F_OK) != 0, "socket removed at shutdown");
	return tap_done();
}
