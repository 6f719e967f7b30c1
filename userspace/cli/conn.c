// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: finding the daemon and talking QMP to it (lib/qmp-client).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsyncctl.h"
#include "qmp-client.h"

const char *conn_socket_path(const struct cli *c)
{
	const char *env = getenv("BSYNCD_SOCKET");

	if (c->socket)
		return c->socket;
	if (env && *env)
		return env;
	/* The unit's socket if it is there, else bsyncd's own default. */
	if (access(BSYNCD_SOCKET_UNIT, F_OK) == 0)
		return BSYNCD_SOCKET_UNIT;
	if (access(BSYNCD_SOCKET_BUILTIN, F_OK) == 0)
		return BSYNCD_SOCKET_BUILTIN;
	return BSYNCD_SOCKET_UNIT;
}

static const char *connect_hint(int err)
{
	switch (err) {
	case ENOENT:
	case ECONNREFUSED:
		return "bsyncd is not running: start it with 'systemctl start bsyncd', "
		       "or run 'bsyncd --socket PATH' and pass bsyncctl the same --socket PATH";
	case EACCES:
	case EPERM:
		return "the socket is only open to root; run bsyncctl as root";
	case ENOTSOCK:
		return "that path is not a socket; check --socket or $BSYNCD_SOCKET";
	default:
		return NULL;
	}
}

int conn_open_msg(struct cli *c, char *msg, size_t len)
{
	const char *path = conn_socket_path(c);
	char err[512];
	int r;

	if (c->qmp)
		return 0;
	r = qmp_connect(path, &c->qmp, err, sizeof(err));
	if (!r)
		return 0;
	if (r != -ENAMETOOLONG && connect_hint(-r))
		snprintf(msg, len, "cannot connect to bsyncd at %s: %s (%s)", path, strerror(-r),
			 connect_hint(-r));
	else
		snprintf(msg, len, "cannot connect to bsyncd at %s: %s", path, err);
	return EXIT_NO_DAEMON;
}

int conn_open(struct cli *c)
{
	char msg[1024];
	int r = conn_open_msg(c, msg, sizeof(msg));

	if (r)
		cli_error(c, "%s", msg);
	return r;
}

void conn_close(struct cli *c)
{
	qmp_close(c->qmp);
	c->qmp = NULL;
}

int conn_exec(struct cli *c, const char *cmd, json_object *args, json_object **ret)
{
	char err[1024];
	int r;

	if (ret)
		*ret = NULL;
	r = conn_open(c);
	if (r) {
		json_object_put(args);
		return r;
	}
	r = qmp_execute(c->qmp, cmd, args, ret, CLI_TIMEOUT_MS, err, sizeof(err));
	json_object_put(args);
	if (!r)
		return 0;
	cli_error(c, "%s: %s", c->what, err);
	/* QEMU's hint for this error, which QMP does not carry */
	if (r == -EREMOTEIO && strstr(err, "is inconsistent and cannot be used"))
		fputs("hint: the bitmap may miss writes: 'bsyncctl bitmap clear' makes it usable again\n"
		      "(the next backup must then be full), 'bsyncctl bitmap remove' deletes it\n",
		      c->err);
	if (r == -EREMOTEIO)
		return EXIT_FAILED;
	return EXIT_PROTOCOL;
}

int conn_run(struct cli *c, const char *cmd, json_object *args)
{
	json_object *ret = NULL;
	int r = conn_exec(c, cmd, args, &ret);

	if (!r && c->json)
		print_json(c, ret);
	json_object_put(ret);
	return r;
}

int conn_event(struct cli *c, int timeout_ms, json_object **ev)
{
	char err[512];
	int r = qmp_next_event(c->qmp, timeout_ms, ev, err, sizeof(err));

	if (!r || r == -ETIMEDOUT)
		return r;
	cli_error(c, "%s: %s", c->what, err);
	return EXIT_PROTOCOL;
}

int conn_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	      const char *query, json_object **ret)
{
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 0, 0, NULL, &pos, &n);
	if (!r)
		r = conn_exec(c, query, NULL, ret);
	if (r)
		return r;
	if (!c->json)
		return 0;
	print_json(c, *ret);
	json_object_put(*ret);
	return CLI_LISTED;
}
