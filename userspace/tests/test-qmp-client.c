// SPDX-License-Identifier: GPL-2.0
/*
 * QMP client library against a scripted server on a Unix socket: greeting
 * and negotiation, replies matched by id, events queued while a command
 * waits, error replies, split and concatenated frames, timeouts, a server
 * that hangs up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp-client.h"
#include "tap.h"

static char sock_path[108];
static int listen_fd;

/* The server's script: for each request line, what to send back. */
static void send_str(int fd, const char *s)
{
	size_t off = 0, n = strlen(s);

	while (off < n) {
		ssize_t w = write(fd, s + off, n - off);

		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* Read one line (a request); returns the "id" value as text in idbuf. */
static int read_request(int fd, char *line, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t r = read(fd, line + n, 1);

		if (r <= 0)
			return -1;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = 0;
	return 0;
}

static const char *req_id(const char *line, char *buf, size_t len)
{
	json_object *o = json_tokener_parse(line), *id;

	snprintf(buf, len, "null");
	if (o && json_object_object_get_ex(o, "id", &id))
		snprintf(buf, len, "%s", json_object_to_json_string(id));
	json_object_put(o);
	return buf;
}

static void *server(void *arg)
{
	char line[4096], id[128], out[8192];
	int fd = accept(listen_fd, NULL, NULL);

	(void)arg;
	if (fd < 0)
		return NULL;
	/* greeting split in two writes */
	send_str(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 0, \"minor\": 1, \"micro\": 0}}, ");
	usleep(20000);
	send_str(fd, "\"capabilities\": []}}\r\n");
	/* qmp_capabilities */
	if (read_request(fd, line, sizeof(line)))
		goto out;
	snprintf(out, sizeof(out), "{\"return\": {}, \"id\": %s}\r\n", req_id(line, id, sizeof(id)));
	send_str(fd, out);
	/* 1: an event, a stale reply, then the reply, all in one write */
	if (read_request(fd, line, sizeof(line)))
		goto out;
	snprintf(out, sizeof(out),
		 "{\"event\": \"E1\", \"data\": {\"n\": 1}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"
		 "{\"return\": {\"stale\": true}, \"id\": \"other\"}\n"
		 "{\"return\": {\"answer\": 42}, \"id\": %s}\n"
		 "{\"event\": \"E2\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\n",
		 req_id(line, id, sizeof(id)));
	send_str(fd, out);
	/* 2: an error reply */
	if (read_request(fd, line, sizeof(line)))
		goto out;
	snprintf(out, sizeof(out),
		 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Bitmap 'x' could not be found\"}, \"id\": %s}\n",
		 req_id(line, id, sizeof(id)));
	send_str(fd, out);
	/* 3: no answer at all (the client times out), then an event and EOF */
	if (read_request(fd, line, sizeof(line)))
		goto out;
	usleep(400000);
	send_str(fd, "{\"event\": \"E3\", \"data\": {}, \"timestamp\": {\"seconds\": 2, \"microseconds\": 0}}\n");
out:
	close(fd);
	return NULL;
}

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp_client *c;
	json_object *ret, *ev, *v;
	char err[256];
	pthread_t th;
	int r;

	snprintf(sock_path, sizeof(sock_path), "/tmp/test-qmp-client.%d", getpid());
	strcpy(sa.sun_path, sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	unlink(sock_path);
	if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(listen_fd, 4)) {
		perror("bind");
		return 1;
	}

	r = qmp_connect("/nonexistent/dir/sock", &c, err, sizeof(err));
	tap_ok(r == -ENOENT && strstr(err, "is bsyncd running"),
	       "connect to a missing socket: -ENOENT with a hint (%d, %s)", r, err);

	pthread_create(&th, NULL, server, NULL);
	r = qmp_connect(sock_path, &c, err, sizeof(err));
	tap_ok(r == 0, "connect, split greeting, negotiation (%s)", r ? err : "ok");
	if (r)
		return tap_done();
	tap_ok(json_object_object_get_ex(qmp_greeting(c), "QMP", NULL), "greeting kept");

	r = qmp_execute(c, "query-x", NULL, &ret, 5000, err, sizeof(err));
	tap_ok(r == 0 && json_object_object_get_ex(ret, "answer", &v) &&
	       json_object_get_int(v) == 42, "reply matched by id, stale reply skipped");
	json_object_put(ret);

	r = qmp_execute(c, "block-dirty-bitmap-clear", NULL, &ret, 5000, err, sizeof(err));
	tap_ok(r == -EREMOTEIO && !strcmp(err, "Bitmap 'x' could not be found") &&
	       !strcmp(qmp_error_class(c), "GenericError") && !ret,
	       "error reply: -EREMOTEIO, desc and class");

	r = qmp_next_event(c, 0, &ev, err, sizeof(err));
	tap_ok(r == 0 && !strcmp(json_object_get_string(json_object_object_get(ev, "event")), "E1"),
	       "event that came before the reply was queued, in order");
	json_object_put(ev);
	r = qmp_next_event(c, 1000, &ev, err, sizeof(err));
	tap_ok(r == 0 && !strcmp(json_object_get_string(json_object_object_get(ev, "event")), "E2"),
	       "event after the reply in the same read");
	json_object_put(ev);

	r = qmp_execute(c, "hang", NULL, &ret, 100, err, sizeof(err));
	tap_ok(r == -ETIMEDOUT, "unanswered command times out (%d)", r);
	r = qmp_next_event(c, 2000, &ev, err, sizeof(err));
	tap_ok(r == 0 && !strcmp(json_object_get_string(json_object_object_get(ev, "event")), "E3"),
	       "late event still delivered");
	json_object_put(ev);
	r = qmp_next_event(c, 2000, &ev, err, sizeof(err));
	tap_ok(r == -ECONNRESET, "server hang-up reported as -ECONNRESET (%d: %s)", r, err);

	qmp_close(c);
	pthread_join(th, NULL);
	close(listen_fd);
	unlink(sock_path);
	return tap_done();
}
