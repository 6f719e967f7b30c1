// SPDX-License-Identifier: GPL-2.0
/*
 * QMP server: see qmp-server.h.
 *
 * One poll() loop in the main thread.  Each client has an input tokenizer
 * (json-c, streaming: objects may be split or concatenated) and an output
 * buffer flushed on POLLOUT.  Events are queued by any thread and pushed to
 * every client that completed qmp_capabilities, woken through an eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp-server.h"

#define MAX_CLIENTS 64
#define MAX_OUTPUT (16u << 20)

struct client {
	int fd;
	bool negotiated;
	bool skip_line;		/* discarding input after a framing error */
	json_tokener *tok;
	size_t pending;		/* bytes fed to tok for the current object */
	char *out;
	size_t out_len, out_cap;
};

static struct {
	int listen_fd, event_fd, signal_fd;
	char *path;
	qmp_dispatch_fn dispatch;
	size_t max_request;
	struct client *clients[MAX_CLIENTS];
	volatile bool stop;
	pthread_mutex_t ev_lock;
	json_object **evq;
	size_t nev, evcap;
} srv = { .listen_fd = -1, .event_fd = -1, .signal_fd = -1,
	  .ev_lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t big_cond;
static pthread_once_t cond_once = PTHREAD_ONCE_INIT;

static void cond_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&big_cond, &a);
	pthread_condattr_destroy(&a);
}

void daemon_lock(void)
{
	pthread_once(&cond_once, cond_init);
	pthread_mutex_lock(&big_lock);
}

void daemon_unlock(void)
{
	pthread_mutex_unlock(&big_lock);
}

void daemon_wait(int timeout_ms)
{
	struct timespec ts;

	if (timeout_ms < 0) {
		pthread_cond_wait(&big_cond, &big_lock);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&big_cond, &big_lock, &ts);
}

void daemon_broadcast(void)
{
	pthread_once(&cond_once, cond_init);
	pthread_cond_broadcast(&big_cond);
}

static int vqerr(struct qerr *e, const char *cls, const char *fmt, va_list ap)
{
	e->cls = cls;
	vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
	return -1;
}

int qerr_set(struct qerr *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vqerr(e, "GenericError", fmt, ap);
	va_end(ap);
	return -1;
}

int qerr_set_class(struct qerr *e, const char *cls, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vqerr(e, cls, fmt, ap);
	va_end(ap);
	return -1;
}

const char *json_str_member(json_object *o, const char *k)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

const char *json_unexpected_key(json_object *o, const char *const *allowed)
{
	struct json_object_iterator it = json_object_iter_begin(o), end = json_object_iter_end(o);

	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *k = json_object_iter_peek_name(&it);
		const char *const *a;

		for (a = allowed; *a && strcmp(*a, k); a++)
			;
		if (!*a)
			return k;
	}
	return NULL;
}

/* Queue text for a client; drop it if it stopped reading long ago. */
static void client_send(struct client *c, json_object *o)
{
	size_t len;
	const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

	if (c->fd < 0)
		return;
	if (c->out_len + len + 2 > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + len + 2)
			cap *= 2;
		if (cap > MAX_OUTPUT) {
			fprintf(stderr, "bsyncd: client on fd %d does not read its replies; dropping it\n",
				c->fd);
			close(c->fd);
			c->fd = -1;
			return;
		}
		p = realloc(c->out, cap);
		if (!p)
			return;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, len);
	memcpy(c->out + c->out_len + len, "\r\n", 2);
	c->out_len += len + 2;
}

static void client_flush(struct client *c)
{
	while (c->fd >= 0 && c->out_len) {
		ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w <= 0) {
			close(c->fd);
			c->fd = -1;
			return;
		}
		memmove(c->out, c->out + w, c->out_len - (size_t)w);
		c->out_len -= (size_t)w;
	}
}

static void client_free(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	json_tokener_free(c->tok);
	free(c->out);
	free(c);
}

static void send_error(struct client *c, const char *cls, const char *desc, json_object *id)
{
	json_object *r = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(e, "class", json_object_new_string(cls));
	json_object_object_add(e, "desc", json_object_new_string(desc));
	json_object_object_add(r, "error", e);
	if (id)
		json_object_object_add(r, "id", json_object_get(id));
	client_send(c, r);
	json_object_put(r);
}

static void greet(struct client *c)
{
	json_object *g = json_object_new_object(), *q = json_object_new_object();
	json_object *v = json_object_new_object(), *qv = json_object_new_object();

	json_object_object_add(qv, "major", json_object_new_int(0));
	json_object_object_add(qv, "minor", json_object_new_int(1));
	json_object_object_add(qv, "micro", json_object_new_int(0));
	json_object_object_add(v, "qemu", qv);
	json_object_object_add(v, "package", json_object_new_string("bsyncd"));
	json_object_object_add(q, "version", v);
	json_object_object_add(q, "capabilities", json_object_new_array());
	json_object_object_add(g, "QMP", q);
	client_send(c, g);
	json_object_put(g);
}

/* Handle one complete request object. */
static void handle_request(struct client *c, json_object *req)
{
	json_object *id = NULL, *exec = NULL, *args = NULL, *ret = NULL, *reply;
	struct qerr e = { .cls = "GenericError" };
	const char *cmd;
	int r;

	if (!json_object_is_type(req, json_type_object)) {
		send_error(c, "GenericError", "QMP input must be a JSON object", NULL);
		return;
	}
	json_object_object_get_ex(req, "id", &id);
	{
		static const char *const allowed[] = { "execute", "arguments", "id", NULL };
		const char *key = json_unexpected_key(req, allowed);

		if (key) {
			snprintf(e.desc, sizeof(e.desc), "QMP input member '%s' is unexpected", key);
			send_error(c, "GenericError", e.desc, id);
			return;
		}
	}
	if (!json_object_object_get_ex(req, "execute", &exec)) {
		send_error(c, "GenericError", "QMP input lacks member 'execute'", id);
		return;
	}
	if (!json_object_is_type(exec, json_type_string)) {
		send_error(c, "GenericError", "QMP input member 'execute' must be a string", id);
		return;
	}
	if (json_object_object_get_ex(req, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		send_error(c, "GenericError", "QMP input member 'arguments' must be an object", id);
		return;
	}
	cmd = json_object_get_string(exec);
	if (!strcmp(cmd, "qmp_capabilities")) {
		if (c->negotiated) {
			send_error(c, "CommandNotFound",
				   "Capabilities negotiation is already complete, command ignored", id);
			return;
		}
		if (args) {
			json_object *en;

			static const char *const allowed[] = { "enable", NULL };
			const char *k = json_unexpected_key(args, allowed);

			if (k) {
				snprintf(e.desc, sizeof(e.desc), "Parameter '%s' is unexpected", k);
				send_error(c, "GenericError", e.desc, id);
				return;
			}
			if (json_object_object_get_ex(args, "enable", &en) &&
			    json_object_is_type(en, json_type_array) &&
			    json_object_array_length(en) > 0) {
				snprintf(e.desc, sizeof(e.desc),
					 "Parameter 'enable' does not accept value '%s'",
					 json_object_get_string(json_object_array_get_idx(en, 0)));
				send_error(c, "GenericError", e.desc, id);
				return;
			}
		}
		c->negotiated = true;
		ret = NULL;
		r = 0;
	} else if (!c->negotiated) {
		send_error(c, "CommandNotFound",
			   "Expecting capabilities negotiation with 'qmp_capabilities'", id);
		return;
	} else {
		daemon_lock();
		r = srv.dispatch(cmd, args, &ret, &e);
		daemon_unlock();
	}
	if (r) {
		json_object_put(ret);
		send_error(c, e.cls ? e.cls : "GenericError", e.desc, id);
		return;
	}
	reply = json_object_new_object();
	json_object_object_add(reply, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(reply, "id", json_object_get(id));
	client_send(c, reply);
	json_object_put(reply);
}

/* Feed input bytes to the client's tokenizer, handling each object. */
static void client_input(struct client *c, const char *buf, size_t n)
{
	size_t pos = 0;

	while (pos < n) {
		enum json_tokener_error jerr;
		json_object *o;
		size_t used;

		if (c->skip_line) {
			const char *nl = memchr(buf + pos, '\n', n - pos);

			if (!nl)
				return;
			pos = (size_t)(nl - buf) + 1;
			c->skip_line = false;
			continue;
		}
		if (!c->pending && strchr(" \t\r\n", buf[pos])) {
			pos++;
			continue;
		}
		o = json_tokener_parse_ex(c->tok, buf + pos, (int)(n - pos));
		jerr = json_tokener_get_error(c->tok);
		used = o || jerr != json_tokener_continue ?
		       json_tokener_get_parse_end(c->tok) : n - pos;
		if (o || jerr == json_tokener_success) {
			pos += used;
			c->pending = 0;
			json_tokener_reset(c->tok);
			handle_request(c, o);
			json_object_put(o);
			continue;
		}
		if (jerr == json_tokener_continue) {
			c->pending += used;
			if (c->pending > srv.max_request) {
				char msg[128];

				snprintf(msg, sizeof(msg),
					 "JSON parse error, request larger than %zu bytes", srv.max_request);
				send_error(c, "GenericError", msg, NULL);
				json_tokener_reset(c->tok);
				c->pending = 0;
				/* resynchronise after the last newline seen, or the next one */
				{
					const char *nl = memrchr(buf + pos, '\n', n - pos);

					if (nl) {
						pos = (size_t)(nl - buf) + 1;
						continue;
					}
				}
				c->skip_line = true;
			}
			return;
		}
		{
			char msg[256];

			snprintf(msg, sizeof(msg), "JSON parse error, %s", json_tokener_error_desc(jerr));
			send_error(c, "GenericError", msg, NULL);
		}
		json_tokener_reset(c->tok);
		c->pending = 0;
		/* resynchronise at the next line */
		c->skip_line = true;
		pos += used ? used : 1;
	}
}

void qmp_event(const char *name, json_object *data)
{
	json_object *ev = json_object_new_object(), *ts = json_object_new_object();
	struct timeval tv;
	uint64_t one = 1;
	ssize_t w;

	gettimeofday(&tv, NULL);
	json_object_object_add(ev, "event", json_object_new_string(name));
	json_object_object_add(ev, "data", data ? data : json_object_new_object());
	json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
	json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec));
	json_object_object_add(ev, "timestamp", ts);
	pthread_mutex_lock(&srv.ev_lock);
	if (srv.nev == srv.evcap) {
		size_t cap = srv.evcap ? srv.evcap * 2 : 64;
		json_object **p = realloc(srv.evq, cap * sizeof(*p));

		if (!p) {
			pthread_mutex_unlock(&srv.ev_lock);
			json_object_put(ev);
			return;
		}
		srv.evq = p;
		srv.evcap = cap;
	}
	srv.evq[srv.nev++] = ev;
	pthread_mutex_unlock(&srv.ev_lock);
	if (srv.event_fd >= 0)
		w = write(srv.event_fd, &one, sizeof(one));
	(void)w;
}

static void deliver_events(void)
{
	size_t i, j;

	pthread_mutex_lock(&srv.ev_lock);
	for (i = 0; i < srv.nev; i++) {
		for (j = 0; j < MAX_CLIENTS; j++)
			if (srv.clients[j] && srv.clients[j]->negotiated)
				client_send(srv.clients[j], srv.evq[i]);
		json_object_put(srv.evq[i]);
	}
	srv.nev = 0;
	pthread_mutex_unlock(&srv.ev_lock);
}

int qmp_server_start(const struct qmp_server_opts *o, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	sigset_t mask;
	mode_t old;
	int r;

	srv.dispatch = o->dispatch;
	srv.max_request = o->max_request ? o->max_request : (1u << 20);
	if (strlen(o->socket_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long (at most %zu bytes)",
			 o->socket_path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, o->socket_path);
	/* A socket left by a dead daemon is replaced; a live one is refused. */
	{
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (probe >= 0 && !connect(probe, (struct sockaddr *)&sa, sizeof(sa))) {
			close(probe);
			snprintf(err, errlen, "%s: another bsyncd is already listening there",
				 o->socket_path);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(o->socket_path);
	}
	srv.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (srv.listen_fd < 0) {
		r = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-r));
		return r;
	}
	old = umask(0177);
	r = bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r || listen(srv.listen_fd, 16)) {
		r = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", o->socket_path, strerror(-r));
		return r;
	}
	chmod(o->socket_path, 0600);
	srv.path = strdup(o->socket_path);
	srv.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	srv.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (srv.event_fd < 0 || srv.signal_fd < 0) {
		r = -errno;
		snprintf(err, errlen, "eventfd/signalfd: %s", strerror(-r));
		return r;
	}
	return 0;
}

void qmp_server_stop(void)
{
	uint64_t one = 1;
	ssize_t w;

	srv.stop = true;
	w = write(srv.event_fd, &one, sizeof(one));
	(void)w;
}

static void accept_client(void)
{
	struct client *c;
	int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < MAX_CLIENTS && srv.clients[i]; i++)
		;
	c = i < MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		static const char busy[] = "{\"error\": {\"class\": \"GenericError\", "
					   "\"desc\": \"too many QMP clients\"}}\r\n";
		ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

		(void)w;
		close(fd);
		return;
	}
	c->fd = fd;
	c->tok = json_tokener_new_ex(64);
	srv.clients[i] = c;
	greet(c);
}

int qmp_server_run(void (*on_signal)(int sig))
{
	while (!srv.stop) {
		struct pollfd pfd[3 + MAX_CLIENTS];
		int map[3 + MAX_CLIENTS];
		size_t i, n = 0;
		int r;

		deliver_events();
		for (i = 0; i < MAX_CLIENTS; i++)
			if (srv.clients[i]) {
				client_flush(srv.clients[i]);
				if (srv.clients[i]->fd < 0) {
					client_free(srv.clients[i]);
					srv.clients[i] = NULL;
				}
			}
		pfd[n] = (struct pollfd){ .fd = srv.listen_fd, .events = POLLIN };
		map[n++] = -1;
		pfd[n] = (struct pollfd){ .fd = srv.event_fd, .events = POLLIN };
		map[n++] = -2;
		pfd[n] = (struct pollfd){ .fd = srv.signal_fd, .events = POLLIN };
		map[n++] = -3;
		for (i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = srv.clients[i];

			if (!c)
				continue;
			pfd[n] = (struct pollfd){ .fd = c->fd,
						  .events = POLLIN | (c->out_len ? POLLOUT : 0) };
			map[n++] = (int)i;
		}
		r = poll(pfd, n, -1);
		if (r < 0 && errno != EINTR)
			return -errno;
		for (i = 0; r > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (map[i] == -1) {
				accept_client();
			} else if (map[i] == -2) {
				uint64_t v;
				ssize_t rd = read(srv.event_fd, &v, sizeof(v));

				(void)rd;
			} else if (map[i] == -3) {
				struct signalfd_siginfo si;

				if (read(srv.signal_fd, &si, sizeof(si)) == sizeof(si) && on_signal)
					on_signal((int)si.ssi_signo);
			} else {
				struct client *c = srv.clients[map[i]];
				char buf[16384];
				ssize_t rd;

				if (pfd[i].revents & POLLOUT)
					client_flush(c);
				if (c->fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				rd = read(c->fd, buf, sizeof(buf));
				if (rd < 0 && (errno == EINTR || errno == EAGAIN))
					continue;
				if (rd <= 0) {
					close(c->fd);
					c->fd = -1;
					continue;
				}
				client_input(c, buf, (size_t)rd);
			}
		}
	}
	deliver_events();
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (srv.clients[i])
			client_flush(srv.clients[i]);
	return 0;
}

void qmp_server_shutdown(void)
{
	size_t i;

	for (i = 0; i < MAX_CLIENTS; i++)
		if (srv.clients[i]) {
			client_free(srv.clients[i]);
			srv.clients[i] = NULL;
		}
	if (srv.path) {
		unlink(srv.path);
		free(srv.path);
		srv.path = NULL;
	}
	if (srv.listen_fd >= 0)
		close(srv.listen_fd);
	if (srv.event_fd >= 0)
		close(srv.event_fd);
	if (srv.signal_fd >= 0)
		close(srv.signal_fd);
	srv.listen_fd = srv.event_fd = srv.signal_fd = -1;
	pthread_mutex_lock(&srv.ev_lock);
	for (i = 0; i < srv.nev; i++)
		json_object_put(srv.evq[i]);
	free(srv.evq);
	srv.evq = NULL;
	srv.nev = srv.evcap = 0;
	pthread_mutex_unlock(&srv.ev_lock);
}
