// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD server's sockets and connections (see nbd-server.h for the
 * whole server, nbd-server-internal.h for its files): listening on a Unix
 * or TCP socket (loopback only without TLS), the accepting thread's poll loop, each
 * connection's thread and life, and the exports by name with the
 * references connections hold on them.  What is said on a connection is
 * nbd-handshake.c's and nbd-transmission.c's.
 *
 * A thread accepts connections (poll() on the listener and a wake-up
 * pipe); each connection gets a detached thread of its own that runs the
 * handshake and then serves its requests one at a time with blocking I/O
 * (the TLS handshake is the exception: tls.c runs it non-blocking against
 * a deadline).  Nothing a connection does blocks the others or the daemon.
 * A connection holds a reference on its export (exp->clients); removing an
 * export or stopping the server shuts the sockets down, which wakes the
 * threads, and waits for the references to go.  A connection's memory is
 * bounded: the option being parsed (NBD_MAX_OPTION), a READ piece
 * (NBD_IO_CHUNK) and one BLOCK_STATUS chunk (NBD_MAX_EXTENTS).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbd-server-internal.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool running;
	int listen_fd, wake[2];
	pthread_t acceptor;
	char *unix_path;
	unsigned max_conn;
	const struct tls_creds *tls;
	int nclients;
	struct nbd_client *clients;
	struct nbd_exp *exps;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
	.listen_fd = -1, .wake = { -1, -1 } };

static void set_timeout(int fd, int opt, int secs)
{
	struct timeval tv = { .tv_sec = secs };

	setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * Exports, by name
 */
struct nbd_exp *nbd_exp_get(struct nbd_client *c, const char *name, size_t len)
{
	struct nbd_exp *x;

	pthread_mutex_lock(&S.mu);
	for (x = S.exps; x; x = x->next)
		if (!x->removed && strlen(x->name) == len && !memcmp(x->name, name, len))
			break;
	if (x) {
		x->clients++;
		c->using = x;
	}
	pthread_mutex_unlock(&S.mu);
	return x;
}

void nbd_exp_put(struct nbd_client *c)
{
	pthread_mutex_lock(&S.mu);
	if (c->using) {
		c->using->clients--;
		c->using = NULL;
		pthread_cond_broadcast(&S.cond);
	}
	pthread_mutex_unlock(&S.mu);
}

size_t nbd_exp_names(char (**names)[NBD_MAX_NAME + 1])
{
	struct nbd_exp *x;
	size_t n = 0;

	pthread_mutex_lock(&S.mu);
	for (x = S.exps; x; x = x->next)
		n += !x->removed;
	*names = n ? calloc(n, sizeof(**names)) : NULL;
	n = 0;
	for (x = S.exps; x && *names; x = x->next)
		if (!x->removed)
			memcpy((*names)[n++], x->name, sizeof(**names));
	pthread_mutex_unlock(&S.mu);
	return n;
}

void nbd_server_add(struct nbd_exp *x)
{
	pthread_mutex_lock(&S.mu);
	x->clients = 0;
	x->removed = false;
	x->next = S.exps;
	S.exps = x;
	pthread_mutex_unlock(&S.mu);
}

int nbd_server_clients(struct nbd_exp *x)
{
	int n;

	pthread_mutex_lock(&S.mu);
	n = x->clients;
	pthread_mutex_unlock(&S.mu);
	return n;
}

void nbd_server_remove(struct nbd_exp *x, bool hard)
{
	struct nbd_exp **pp;
	struct nbd_client *c;

	pthread_mutex_lock(&S.mu);
	x->removed = true;
	while (x->clients) {
		struct timespec ts;

		if (hard)
			for (c = S.clients; c; c = c->next)
				if (c->using == x)
					shutdown(c->fd, SHUT_RDWR);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&S.cond, &S.mu, &ts);
	}
	for (pp = &S.exps; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	pthread_mutex_unlock(&S.mu);
}

/*
 * Connections
 */
static void *client_thread(void *arg)
{
	struct nbd_client *c = arg, **pp;

	/* the transmission's buffers only once the handshake is through */
	c->opt = malloc(NBD_MAX_OPTION + 1);
	if (c->opt) {
		set_timeout(c->fd, SO_RCVTIMEO, NBD_HANDSHAKE_TIMEOUT_S);
		set_timeout(c->fd, SO_SNDTIMEO, NBD_SEND_TIMEOUT_S);
		if (!nbd_handshake(c)) {
			free(c->opt);
			c->opt = NULL;
			c->buf = malloc(NBD_BUF_SIZE);
			c->ext = malloc(sizeof(*c->ext) * NBD_MAX_EXTENTS);
			set_timeout(c->fd, SO_RCVTIMEO, 0);	/* idle clients are fine now */
			if (c->buf && c->ext)
				nbd_transmission(c);
		}
	}
	nbd_exp_put(c);
	tls_session_end(c->tls);
	pthread_mutex_lock(&S.mu);
	for (pp = &S.clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	close(c->fd);
	if (c->pipe[0] >= 0) {
		close(c->pipe[0]);
		close(c->pipe[1]);
	}
	S.nclients--;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.mu);
	free(c->opt);
	free(c->buf);
	free(c->ext);
	free(c);
	return NULL;
}

static void accept_one(void)
{
	struct nbd_client *c;
	pthread_attr_t a;
	int fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC), one = 1;

	if (fd < 0) {
		/* out of descriptors or memory: the connection waits, do not spin */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			usleep(100000);
		return;
	}
	pthread_mutex_lock(&S.mu);
	if (S.nclients >= (int)S.max_conn || !(c = calloc(1, sizeof(*c)))) {
		pthread_mutex_unlock(&S.mu);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));	/* fails on Unix sockets */
	c->fd = fd;
	c->pipe[0] = c->pipe[1] = -1;
	c->tls_creds = S.tls;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 256u << 10);
	if (pthread_create((pthread_t[1]){ 0 }, &a, client_thread, c)) {
		close(fd);
		free(c);
	} else {
		c->next = S.clients;
		S.clients = c;
		S.nclients++;
	}
	pthread_attr_destroy(&a);
	pthread_mutex_unlock(&S.mu);
}

static void *accept_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { S.listen_fd, POLLIN, 0 }, { S.wake[0], POLLIN, 0 } };

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			usleep(100000);
			continue;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN)
			accept_one();
		else if (p[0].revents)
			usleep(100000);	/* an error on the listener: do not spin */
	}
}

static bool loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

static int listen_inet(const struct nbd_server_opts *o, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, one = 1, r;

	r = getaddrinfo(o->host, o->port, &hints, &res);
	if (r) {
		snprintf(err, errlen, "address resolution failed for %s:%s: %s", o->host, o->port,
			 gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai && !o->tls; ai = ai->ai_next)
		if (!loopback(ai->ai_addr)) {
			freeaddrinfo(res);
			snprintf(err, errlen, "NBD over TCP without TLS is only served on a loopback address: "
				 "'%s' is not one (use 127.0.0.1 or ::1, or a Unix socket)", o->host);
			return -EPERM;
		}
	r = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, SOMAXCONN))
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "Failed to bind socket to %s:%s: %s", o->host, o->port,
			 strerror(-r));
		return r;
	}
	return fd;
}

static int listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "UNIX socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "Failed to bind socket to %s: a file that is not a socket is there",
				 path);
			return -EEXIST;
		}
		unlink(path);	/* a stale socket */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(path, 0600) ||
	    listen(fd, SOMAXCONN)) {
		r = -errno;
		snprintf(err, errlen, "Failed to bind socket to %s: %s", path, strerror(-r));
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		return r;
	}
	return fd;
}

int nbd_server_start(const struct nbd_server_opts *o, char *err, size_t errlen)
{
	struct rlimit rl;
	int fd, r;

	if (S.running) {
		snprintf(err, errlen, "NBD server already running");
		return -EBUSY;
	}
	fd = o->unix_path ? listen_unix(o->unix_path, err, errlen) : listen_inet(o, err, errlen);
	if (fd < 0)
		return fd;
	if (pipe2(S.wake, O_CLOEXEC)) {
		r = -errno;
		goto fail;
	}
	S.listen_fd = fd;
	S.max_conn = o->max_connections && o->max_connections < NBD_MAX_CONNECTIONS_CAP ?
		     o->max_connections : NBD_MAX_CONNECTIONS_CAP;
	/* the connections must leave the rest of the daemon descriptors to work with */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 2 * NBD_MAX_CONNECTIONS_CAP) {
			rl.rlim_cur = rl.rlim_max < 2 * NBD_MAX_CONNECTIONS_CAP ? rl.rlim_max :
				      2 * NBD_MAX_CONNECTIONS_CAP;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur < S.max_conn + NBD_FD_RESERVE)
			S.max_conn = rl.rlim_cur > 2 * NBD_FD_RESERVE ?
				     (unsigned)(rl.rlim_cur - NBD_FD_RESERVE) : NBD_FD_RESERVE / 2;
	}
	S.unix_path = o->unix_path ? strdup(o->unix_path) : NULL;
	S.tls = o->tls;
	r = pthread_create(&S.acceptor, NULL, accept_thread, NULL);
	if (r) {
		r = -r;
		close(S.wake[0]);
		close(S.wake[1]);
		goto fail;
	}
	S.running = true;
	return 0;
fail:
	snprintf(err, errlen, "cannot start the NBD server: %s", strerror(-r));
	close(fd);
	if (o->unix_path)
		unlink(o->unix_path);
	free(S.unix_path);
	S.unix_path = NULL;
	S.listen_fd = -1;
	S.tls = NULL;
	return r;
}

bool nbd_server_running(void)
{
	return S.running;
}

void nbd_server_stop(void)
{
	struct nbd_client *c;

	if (!S.running)
		return;
	if (write(S.wake[1], "x", 1) != 1)
		shutdown(S.listen_fd, SHUT_RDWR);
	pthread_join(S.acceptor, NULL);
	close(S.listen_fd);
	close(S.wake[0]);
	close(S.wake[1]);
	S.listen_fd = S.wake[0] = S.wake[1] = -1;
	if (S.unix_path)
		unlink(S.unix_path);
	free(S.unix_path);
	S.unix_path = NULL;
	pthread_mutex_lock(&S.mu);
	while (S.nclients) {
		struct timespec ts;

		for (c = S.clients; c; c = c->next)
			shutdown(c->fd, SHUT_RDWR);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec++;
		pthread_cond_timedwait(&S.cond, &S.mu, &ts);
	}
	pthread_mutex_unlock(&S.mu);
	S.tls = NULL;
	S.running = false;
}
