// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncd: backup jobs on bsync devices over QMP.  See Documentation/bsyncd.rst.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "backup.h"
#include "commands.h"
#include "inflight.h"
#include "job.h"
#include "nbd-export.h"
#include "log.h"
#include "qmp-server.h"
#include "transaction.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bsyncd [--socket PATH] [--store-dir DIR] [--checksums on|off]\n"
		"              [--gate-timeout MS] [--verbose]\n"
		"  --socket PATH     QMP socket (default /run/bsyncd.sock), created 0600\n"
		"  --store-dir DIR   where copy-before-write scratch files are made\n"
		"                    (default /var/lib/bsyncd; must not be on a protected device)\n"
		"  --checksums on|off  keep IMAGE.sums, an XXH64 hash of each data cluster, beside\n"
		"                    each backup image, for 'bsyncctl chain verify' (default on)\n"
		"  --gate-timeout MS  how long a transaction may hold guest writes (1..60000,\n"
		"                    default 5000): a gate held longer opens by itself and\n"
		"                    the transaction fails\n"
		"  --verbose         log every QMP command, its failures and job state changes\n");
}

/*
 * Tell systemd (Type=notify) that the QMP socket accepts connections: a
 * READY=1 datagram to $NOTIFY_SOCKET, a path or an abstract name ('@...').
 * Without the variable (not started by systemd) nothing is sent.
 */
static void notify_ready(void)
{
	static const char msg[] = "READY=1";
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;
	int fd;

	if (!path || !*path)
		return;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		fprintf(stderr, "bsyncd: NOTIFY_SOCKET=%s: not a Unix socket path; "
			"readiness not sent\n", path);
		return;
	}
	memcpy(sa.sun_path, path, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL, (struct sockaddr *)&sa,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		fprintf(stderr, "bsyncd: cannot notify systemd at %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	/* Not for the programs bsyncd may run. */
	unsetenv("NOTIFY_SOCKET");
}

/* SIGTERM/SIGINT: cancel every job (bitmaps are reclaimed), wait, stop. */
static void on_signal(int sig)
{
	struct job *j, *next;
	struct qerr e;

	fprintf(stderr, "bsyncd: %s: cancelling jobs and exiting\n", strsignal(sig));
	daemon_lock();
	for (j = job_first(); j; j = next) {
		next = j->next;
		if (j->status != JOB_STATUS_CONCLUDED && j->status != JOB_STATUS_NULL &&
		    j->status != JOB_STATUS_ABORTING)
			job_cancel(j, &e);
	}
	while (job_threads_running())
		daemon_wait(200);
	daemon_unlock();
	qmp_server_stop();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "store-dir", required_argument, NULL, 'd' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "checksums", required_argument, NULL, 'c' },
		{ "gate-timeout", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct qmp_server_opts so = { .socket_path = "/run/bsyncd.sock",
				      .dispatch = commands_dispatch };
	const char *store_dir = "/var/lib/bsyncd";
	char err[512];
	int c, r;

	while ((c = getopt_long(argc, argv, "s:d:vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			so.socket_path = optarg;
			break;
		case 'd':
			store_dir = optarg;
			break;
		case 'v':
			bsyncd_verbose = true;
			break;
		case 'c':
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "bsyncd: --checksums: '%s' is not on or off\n", optarg);
				return 2;
			}
			backup_set_checksums(!strcmp(optarg, "on"));
			break;
		case 'g': {
			char *end;
			unsigned long ms = strtoul(optarg, &end, 10);

			if (*end || !*optarg || ms < 1 || ms > TXN_GATE_TIMEOUT_MS_MAX) {
				fprintf(stderr, "bsyncd: --gate-timeout: '%s' is not a number of milliseconds from 1 to %u\n",
					optarg, TXN_GATE_TIMEOUT_MS_MAX);
				return 2;
			}
			transaction_set_gate_timeout((unsigned int)ms);
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (mkdir(store_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "bsyncd: cannot create store directory %s: %s\n", store_dir,
			strerror(errno));
		return 1;
	}
	backup_set_store_dir(store_dir);
	inflight_set_dir(store_dir);
	signal(SIGPIPE, SIG_IGN);
	r = qmp_server_start(&so, err, sizeof(err));
	if (r) {
		fprintf(stderr, "bsyncd: %s\n", err);
		return 1;
	}
	daemon_lock();
	r = backup_recover();
	daemon_unlock();
	if (r)
		fprintf(stderr, "bsyncd: reclaimed %d frozen bitmap%s\n", r, r == 1 ? "" : "s");
	r = inflight_report();
	if (r)
		fprintf(stderr, "bsyncd: %d backup image%s left incomplete by a daemon that died\n",
			r, r == 1 ? "" : "s");
	fprintf(stderr, "bsyncd: listening on %s\n", so.socket_path);
	notify_ready();
	r = qmp_server_run(on_signal);
	qmp_server_shutdown();
	nbd_export_shutdown();
	backup_shutdown();
	if (r) {
		fprintf(stderr, "bsyncd: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
