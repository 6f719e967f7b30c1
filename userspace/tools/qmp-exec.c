// SPDX-License-Identifier: GPL-2.0
/*
 * qmp-exec: run QMP commands and wait for events, for shell scripts.
 *
 *   qmp-exec SOCKET ACTION...
 *
 * Actions run in order on one connection:
 *   'JSON'               send this request ({"execute": ..., "arguments": ...});
 *                        print the reply as one JSON line
 *   --events N TIMEOUT   print the next N events, one JSON line each
 *   --until NAME TIMEOUT print events up to and including the first NAME
 *   --elapsed            print {"elapsed": S}: seconds since the last request
 *                        was sent (a job's time without this program's start)
 *   --sh CMD             run CMD with sh -c, the connection kept open
 *
 * Events that arrive while a command runs are kept for a later --events or
 * --until.  TIMEOUT is in seconds (may be fractional).  Exit status: 0, or 1
 * if the connection failed, a reply or an event did not come in time, or an
 * argument was wrong (message on stderr).  An error reply is printed and is
 * not a failure, nor is CMD's exit status (it is printed as {"sh": N}).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "qmp-client.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: qmp-exec SOCKET ['JSON-command' | --events N TIMEOUT | --until EVENT TIMEOUT |\n"
		"                        --elapsed | --sh CMD]...\n");
	exit(1);
}

static int timeout_ms(const char *s)
{
	char *end;
	double t = strtod(s, &end);

	if (*end || t < 0 || t > 86400) {
		fprintf(stderr, "qmp-exec: bad timeout '%s' (seconds)\n", s);
		exit(1);
	}
	return (int)(t * 1000);
}

static void print(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
}

/* Print events until count are printed or one named until is printed. */
static int events(struct qmp_client *c, long count, const char *until, int tmo)
{
	char err[256];
	long n;

	for (n = 0; until || n < count; n++) {
		json_object *ev, *name;
		int r = qmp_next_event(c, tmo, &ev, err, sizeof(err));

		if (r) {
			fprintf(stderr, "qmp-exec: %s (after %ld events)\n", err, n);
			return 1;
		}
		print(ev);
		json_object_object_get_ex(ev, "event", &name);
		r = until && !strcmp(json_object_get_string(name), until);
		json_object_put(ev);
		if (r)
			break;
	}
	return 0;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Run cmd through the shell; its exit status is printed, never fatal. */
static int run_sh(const char *cmd)
{
	int st;

	fflush(stdout);
	st = system(cmd);
	if (st == -1) {
		fprintf(stderr, "qmp-exec: cannot run '%s': %s\n", cmd, strerror(errno));
		return 1;
	}
	printf("{\"sh\": %d}\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct qmp_client *c;
	char err[512];
	double sent = 0;
	int i, r;

	if (argc < 2 || !strcmp(argv[1], "--help"))
		usage();
	r = qmp_connect(argv[1], &c, err, sizeof(err));
	if (r) {
		fprintf(stderr, "qmp-exec: %s\n", err);
		return 1;
	}
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--events") || !strcmp(argv[i], "--until")) {
			char *end;
			long n = 0;

			if (i + 2 >= argc)
				usage();
			if (argv[i][2] == 'e') {
				n = strtol(argv[i + 1], &end, 10);
				if (*end || n < 0) {
					fprintf(stderr, "qmp-exec: bad event count '%s'\n", argv[i + 1]);
					r = 1;
					break;
				}
			}
			r = events(c, n, argv[i][2] == 'u' ? argv[i + 1] : NULL,
				   timeout_ms(argv[i + 2]));
			i += 2;
		} else if (!strcmp(argv[i], "--elapsed")) {
			printf("{\"elapsed\": %.6f}\n", now() - sent);
			fflush(stdout);
		} else if (!strcmp(argv[i], "--sh")) {
			if (++i >= argc)
				usage();
			r = run_sh(argv[i]);
		} else {
			json_object *req = json_tokener_parse(argv[i]), *reply;

			if (!req) {
				fprintf(stderr, "qmp-exec: not JSON: %s\n", argv[i]);
				r = 1;
				break;
			}
			sent = now();
			r = qmp_transact(c, req, &reply, 600000, err, sizeof(err));
			json_object_put(req);
			if (r) {
				fprintf(stderr, "qmp-exec: %s\n", err);
				r = 1;
			} else {
				print(reply);
				json_object_put(reply);
			}
		}
		if (r)
			break;
	}
	qmp_close(c);
	return r ? 1 : 0;
}
