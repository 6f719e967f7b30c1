// SPDX-License-Identifier: GPL-2.0
/*
 * A small QMP client: see qmp-client.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp-client.h"

#define QMP_MAX_EVENTS_QUEUED 4096

struct qmp_client {
	int fd;
	json_tokener *tok;
	char buf[65536];
	size_t pos, len;
	json_object *greeting;
	json_object **events;	/* FIFO */
	size_t nev, evcap;
	uint64_t next_id;
	char error_class[64];
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Next object from what is buffered: 1 and *obj, 0 if more input is needed. */
static int parse_buffered(struct qmp_client *c, json_object **obj, char *err, size_t errlen)
{
	enum json_tokener_error jerr;
	json_object *o;

	while (c->pos < c->len && strchr(" \t\r\n", c->buf[c->pos]))
		c->pos++;
	if (c->pos == c->len)
		return 0;
	o = json_tokener_parse_ex(c->tok, c->buf + c->pos, (int)(c->len - c->pos));
	jerr = json_tokener_get_error(c->tok);
	if (o) {
		c->pos += json_tokener_get_parse_end(c->tok);
		json_tokener_reset(c->tok);
		*obj = o;
		return 1;
	}
	if (jerr == json_tokener_continue) {
		c->pos = c->len;	/* the tokener keeps the partial object */
		return 0;
	}
	fail(err, errlen, "malformed JSON from the server: %s", json_tokener_error_desc(jerr));
	json_tokener_reset(c->tok);
	return -EPROTO;
}

/* Read one JSON object from the socket, waiting until deadline (<0: forever). */
static int read_object(struct qmp_client *c, int64_t deadline, json_object **obj,
		       char *err, size_t errlen)
{
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		int r, timeout = -1;
		ssize_t n;

		r = parse_buffered(c, obj, err, errlen);
		if (r)
			return r < 0 ? r : 0;
		if (c->pos == c->len)
			c->pos = c->len = 0;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0) {
				fail(err, errlen, "timed out waiting for the server");
				return -ETIMEDOUT;
			}
			timeout = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		r = poll(&pfd, 1, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = -errno;
			fail(err, errlen, "poll on the QMP socket: %s", strerror(-r));
			return r;
		}
		if (r == 0)
			continue;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			fail(err, errlen, "read from the QMP socket: %s", strerror(-r));
			return r;
		}
		if (n == 0) {
			fail(err, errlen, "the server closed the connection");
			return -ECONNRESET;
		}
		c->len += (size_t)n;
	}
}

static int queue_event(struct qmp_client *c, json_object *ev, char *err, size_t errlen)
{
	if (c->nev == c->evcap) {
		size_t cap = c->evcap ? c->evcap * 2 : 16;
		json_object **p;

		if (c->nev >= QMP_MAX_EVENTS_QUEUED) {
			json_object_put(ev);
			fail(err, errlen, "more than %d unread events", QMP_MAX_EVENTS_QUEUED);
			return -ENOBUFS;
		}
		p = realloc(c->events, cap * sizeof(*p));
		if (!p) {
			json_object_put(ev);
			return -ENOMEM;
		}
		c->events = p;
		c->evcap = cap;
	}
	c->events[c->nev++] = ev;
	return 0;
}

static int send_object(struct qmp_client *c, json_object *o, char *err, size_t errlen)
{
	size_t len, off = 0;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

	while (off <= len) {
		/* the object, then a newline */
		const char *p = off < len ? s + off : "\n";
		size_t n = off < len ? len - off : 1;
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int r = -errno;

			fail(err, errlen, "write to the QMP socket: %s", strerror(-r));
			return r;
		}
		off += (size_t)w;
	}
	return 0;
}

const char *qmp_error_class(const struct qmp_client *c)
{
	return c->error_class;
}

json_object *qmp_greeting(const struct qmp_client *c)
{
	return c->greeting;
}

int qmp_transact(struct qmp_client *c, json_object *request, json_object **reply,
		 int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	json_object *req, *id, *o;
	int r;

	*reply = NULL;
	if (!json_object_is_type(request, json_type_object)) {
		fail(err, errlen, "a QMP request must be a JSON object");
		return -EINVAL;
	}
	/* Shallow copy so that an id can be added without touching the caller's. */
	req = json_object_new_object();
	if (!req)
		return -ENOMEM;
	for (struct json_object_iterator it = json_object_iter_begin(request),
	     end = json_object_iter_end(request);
	     !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
		json_object_object_add(req, json_object_iter_peek_name(&it),
				       json_object_get(json_object_iter_peek_value(&it)));
	if (!json_object_object_get_ex(req, "id", &id)) {
		char buf[32];

		snprintf(buf, sizeof(buf), "bsync-%llu", (unsigned long long)++c->next_id);
		id = json_object_new_string(buf);
		json_object_object_add(req, "id", id);
	}
	r = send_object(c, req, err, errlen);
	if (r)
		goto out;
	for (;;) {
		json_object *rid;

		r = read_object(c, deadline, &o, err, errlen);
		if (r)
			goto out;
		if (json_object_object_get_ex(o, "event", NULL)) {
			r = queue_event(c, o, err, errlen);
			if (r)
				goto out;
			continue;
		}
		/* A reply to an earlier, timed-out request is skipped. */
		if (json_object_object_get_ex(o, "id", &rid) && !json_object_equal(rid, id)) {
			json_object_put(o);
			continue;
		}
		break;
	}
	*reply = o;
out:
	json_object_put(req);
	return r;
}

int qmp_execute(struct qmp_client *c, const char *cmd, json_object *args,
		json_object **ret, int timeout_ms, char *err, size_t errlen)
{
	json_object *req = json_object_new_object(), *reply = NULL, *v, *e;
	int r;

	if (ret)
		*ret = NULL;
	c->error_class[0] = 0;
	if (!req)
		return -ENOMEM;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	r = qmp_transact(c, req, &reply, timeout_ms, err, errlen);
	json_object_put(req);
	if (r)
		return r;
	if (json_object_object_get_ex(reply, "return", &v)) {
		if (ret)
			*ret = json_object_get(v);
	} else if (json_object_object_get_ex(reply, "error", &e)) {
		json_object *cls, *desc;

		if (json_object_object_get_ex(e, "class", &cls))
			snprintf(c->error_class, sizeof(c->error_class), "%s",
				 json_object_get_string(cls));
		json_object_object_get_ex(e, "desc", &desc);
		fail(err, errlen, "%s", desc ? json_object_get_string(desc) : "error without desc");
		r = -EREMOTEIO;
	} else {
		fail(err, errlen, "reply to %s has neither return nor error", cmd);
		r = -EPROTO;
	}
	json_object_put(reply);
	return r;
}

int qmp_next_event(struct qmp_client *c, int timeout_ms, json_object **ev,
		   char *err, size_t errlen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	json_object *o;
	int r;

	*ev = NULL;
	if (c->nev) {
		*ev = c->events[0];
		memmove(c->events, c->events + 1, --c->nev * sizeof(*c->events));
		return 0;
	}
	for (;;) {
		r = read_object(c, deadline, &o, err, errlen);
		if (r)
			return r;
		if (json_object_object_get_ex(o, "event", NULL)) {
			*ev = o;
			return 0;
		}
		json_object_put(o);	/* a stray reply */
	}
}

int qmp_connect(const char *path, struct qmp_client **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp_client *c;
	json_object *o = NULL;
	int r;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fail(err, errlen, "socket path %s is longer than %zu bytes", path,
		     sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->tok = json_tokener_new();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!c->tok || c->fd < 0) {
		r = c->tok ? -errno : -ENOMEM;
		fail(err, errlen, "cannot make a socket: %s", strerror(-r));
		goto bad;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		r = -errno;
		fail(err, errlen, "cannot connect to %s: %s (is bsyncd running?)", path,
		     strerror(-r));
		goto bad;
	}
	r = read_object(c, now_ms() + 10000, &o, err, errlen);
	if (r)
		goto bad;
	if (!json_object_object_get_ex(o, "QMP", NULL)) {
		json_object_put(o);
		fail(err, errlen, "%s did not greet with a QMP banner", path);
		r = -EPROTO;
		goto bad;
	}
	c->greeting = o;
	r = qmp_execute(c, "qmp_capabilities", NULL, NULL, 10000, err, errlen);
	if (r)
		goto bad;
	*out = c;
	return 0;
bad:
	qmp_close(c);
	return r;
}

void qmp_close(struct qmp_client *c)
{
	size_t i;

	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->tok)
		json_tokener_free(c->tok);
	json_object_put(c->greeting);
	for (i = 0; i < c->nev; i++)
		json_object_put(c->events[i]);
	free(c->events);
	free(c);
}
