/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QMP server: the Unix socket, framing, greeting, capabilities negotiation,
 * and events sent to every negotiated client.
 *
 * The main thread runs qmp_server_run(); commands are handed to the
 * dispatcher one at a time with the daemon lock held.  qmp_event() may be
 * called from any thread, with or without the daemon lock.
 */
#ifndef BSYNCD_QMP_SERVER_H
#define BSYNCD_QMP_SERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

/* A command's error: QMP class and description. */
struct qerr {
	const char *cls;	/* "GenericError", "CommandNotFound", ... */
	char desc[1024];
};

/* Set a GenericError (or cls) with a formatted description; returns -1. */
__attribute__((format(printf, 2, 3)))
int qerr_set(struct qerr *e, const char *fmt, ...);
__attribute__((format(printf, 3, 4)))
int qerr_set_class(struct qerr *e, const char *cls, const char *fmt, ...);

/*
 * Run one command: 0 with *ret (NULL means {}), or nonzero with e filled.
 * Called with the daemon lock held.
 */
typedef int (*qmp_dispatch_fn)(const char *cmd, json_object *args, json_object **ret,
			       struct qerr *e);

struct qmp_server_opts {
	const char *socket_path;
	qmp_dispatch_fn dispatch;
	size_t max_request;	/* bytes of one request; 0 = 1 MiB */
};

/* Create the socket (mode 0600, replacing a stale one). 0 or -errno. */
int qmp_server_start(const struct qmp_server_opts *o, char *err, size_t errlen);
/*
 * Serve until qmp_server_stop() (or SIGTERM/SIGINT, which call the
 * on_signal hook set by main).  Returns 0 or -errno.
 */
int qmp_server_run(void (*on_signal)(int sig));
/* Make qmp_server_run() return after the current iteration (any thread). */
void qmp_server_stop(void);
/* Remove the socket and close every client. */
void qmp_server_shutdown(void);

/* Broadcast an event (data is consumed; NULL = {}).  Any thread. */
void qmp_event(const char *name, json_object *data);

/* The first key of o not in the NULL-terminated allowed list, or NULL. */
const char *json_unexpected_key(json_object *o, const char *const *allowed);
/* Member @k of @o if it is a string, else NULL (absent, null, another type; @o may be NULL). */
const char *json_str_member(json_object *o, const char *k);

/* The daemon lock, held by the dispatcher and by job threads. */
void daemon_lock(void);
void daemon_unlock(void);
/* Wait on the daemon's condition variable (lock held); timeout_ms < 0 = forever. */
void daemon_wait(int timeout_ms);
/* Wake every daemon_wait() (lock held or not). */
void daemon_broadcast(void);

#endif
