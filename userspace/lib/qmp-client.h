/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small QMP client: for bsyncctl, tools and tests talking to bsyncd (or to
 * QEMU itself).  One connection per handle; not thread-safe.
 *
 * qmp_connect() connects to the Unix socket, reads the greeting and
 * negotiates capabilities.  qmp_execute() sends one command and waits for
 * its reply; events that arrive meanwhile are queued and handed out later by
 * qmp_next_event(), so none is lost.
 *
 * Every int function returns 0 or -errno; a message a person can act on is
 * written to err (errlen bytes, may be NULL).  A command the server answers
 * with an error returns -EREMOTEIO and the server's "desc" in err;
 * qmp_error_class() then gives its "class" (e.g. "GenericError").
 */
#ifndef BSYNC_QMP_CLIENT_H
#define BSYNC_QMP_CLIENT_H

#include <stddef.h>

#include <json-c/json.h>

struct qmp_client;

/* Connect to path, read the greeting, send qmp_capabilities. */
int qmp_connect(const char *path, struct qmp_client **out, char *err, size_t errlen);
/* Close the connection and free everything, queued events included. */
void qmp_close(struct qmp_client *c);

/* The server's greeting object ({"QMP": {...}}); owned by c. */
json_object *qmp_greeting(const struct qmp_client *c);

/*
 * Execute cmd with args (an object or NULL; borrowed, not consumed).
 * On success *ret (may be NULL) receives the "return" value; the caller
 * owns it (json_object_put).  On a QMP error: -EREMOTEIO, desc in err.
 * timeout_ms < 0 waits forever.
 */
int qmp_execute(struct qmp_client *c, const char *cmd, json_object *args,
		json_object **ret, int timeout_ms, char *err, size_t errlen);

/*
 * Send a complete request object (borrowed) as it is, with an "id" added
 * if it has none, and return the whole reply object ({"return"} or
 * {"error"}) in *reply (caller owns it).  For tools that print replies.
 */
int qmp_transact(struct qmp_client *c, json_object *request, json_object **reply,
		 int timeout_ms, char *err, size_t errlen);

/*
 * The next event ({"event", "data", "timestamp"}): a queued one, or one read
 * within timeout_ms (< 0: forever).  -ETIMEDOUT if none came; caller owns *ev.
 */
int qmp_next_event(struct qmp_client *c, int timeout_ms, json_object **ev,
		   char *err, size_t errlen);

/* Class of the last error reply ("" if none). */
const char *qmp_error_class(const struct qmp_client *c);

#endif
