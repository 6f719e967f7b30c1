// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl export start|stop|add|remove|list: pull-mode backups over NBD
 * (nbd-server-start/-stop, block-export-add/-del, query-block-exports).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"

enum { OPT_EXP_TCP = 1, OPT_EXP_LOOPBACK, OPT_EXP_MAXCONN, OPT_EXP_ID, OPT_EXP_NAME, OPT_EXP_BITMAP, OPT_EXP_HARD };

struct export_opts {
	const char *tcp, *id, *name, *bitmap;
	const char *maxconn;
	bool loopback, hard;
};

static int export_opt(void *arg, int id, const char *val)
{
	struct export_opts *o = arg;

	switch (id) {
	case OPT_EXP_TCP: o->tcp = val; break;
	case OPT_EXP_LOOPBACK: o->loopback = true; break;
	case OPT_EXP_MAXCONN: o->maxconn = val; break;
	case OPT_EXP_ID: o->id = val; break;
	case OPT_EXP_NAME: o->name = val; break;
	case OPT_EXP_BITMAP: o->bitmap = val; break;
	case OPT_EXP_HARD: o->hard = true; break;
	}
	return 0;
}

/*
 * The options, then exactly one argument (names[0] in the usage) into
 * *arg, and "export VERB ARG" as what failed: 0 or an exit status.
 */
static int export_parse_one(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
			    const struct cli_opt *opts, const char *const *names,
			    struct export_opts *o, const char **arg)
{
	char **pos;
	int n, r = cli_parse(c, cmd, argc, argv, opts, export_opt, o, &pos, &n);

	if (!r)
		r = cli_want_args(c, cmd, n, 1, 1, names);
	if (r)
		return r;
	*arg = pos[0];
	cli_set_what(c, "export %s %s", cmd->verb, pos[0]);
	return 0;
}

int cmd_export_start(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "tcp", 0, true, OPT_EXP_TCP },
		{ "insecure-loopback", 0, false, OPT_EXP_LOOPBACK },
		{ "max-connections", 0, true, OPT_EXP_MAXCONN },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "SOCKET" };
	struct export_opts o = { 0 };
	json_object *args, *addr;
	char path[PATH_MAX], **pos;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, export_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, o.tcp ? 0 : 1, o.tcp ? 0 : 1, names);
	if (r)
		return r;
	addr = json_object_new_object();
	if (o.tcp) {
		const char *colon = strrchr(o.tcp, ':');
		char host[256];

		if (!colon || colon == o.tcp || !colon[1] || (size_t)(colon - o.tcp) >= sizeof(host)) {
			json_object_put(addr);
			return cli_usage_error(c, cmd, "--tcp: '%s' is not HOST:PORT", o.tcp);
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - o.tcp), o.tcp);
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {	/* [::1]:10809 */
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = 0;
		}
		json_object_object_add(addr, "type", json_object_new_string("inet"));
		json_object_object_add(addr, "host", json_object_new_string(host));
		json_object_object_add(addr, "port", json_object_new_string(colon + 1));
		cli_set_what(c, "export start --tcp %s", o.tcp);
	} else {
		if (pos[0][0] == '/' || !realpath(".", path) ||
		    strlen(path) + strlen(pos[0]) + 2 > sizeof(path))
			snprintf(path, sizeof(path), "%s", pos[0]);
		else
			strcat(strcat(path, "/"), pos[0]);	/* the daemon has its own directory */
		json_object_object_add(addr, "type", json_object_new_string("unix"));
		json_object_object_add(addr, "path", json_object_new_string(path));
		cli_set_what(c, "export start %s", pos[0]);
	}
	args = json_object_new_object();
	json_object_object_add(args, "addr", addr);
	if (o.loopback)
		json_object_object_add(args, "x-allow-tcp-loopback", json_object_new_boolean(true));
	if (o.maxconn) {
		char *end;
		long v = strtol(o.maxconn, &end, 10);

		if (*end || end == o.maxconn || v < 0 || v > 1000) {
			json_object_put(args);
			return cli_usage_error(c, cmd, "--max-connections: '%s' is not a number from 0 to 1000",
					       o.maxconn);
		}
		json_object_object_add(args, "max-connections", json_object_new_int64(v));
	}
	return conn_run(c, "nbd-server-start", args);
}

int cmd_export_stop(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	char **pos;
	int n, r = cli_parse_plain(c, cmd, argc, argv, 0, 0, NULL, &pos, &n);

	if (r)
		return r;
	cli_set_what(c, "export stop");
	return conn_run(c, "nbd-server-stop", NULL);
}

int cmd_export_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "id", 0, true, OPT_EXP_ID },
		{ "name", 'n', true, OPT_EXP_NAME },
		{ "bitmap", 'b', true, OPT_EXP_BITMAP },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "DEVICE" };
	struct export_opts o = { 0 };
	const char *device;
	json_object *args;
	int r = export_parse_one(c, cmd, argc, argv, opts, names, &o, &device);

	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "type", json_object_new_string("nbd"));
	json_object_object_add(args, "id", json_object_new_string(o.id ? o.id : device));
	json_object_object_add(args, "node-name", json_object_new_string(device));
	if (o.name)
		json_object_object_add(args, "name", json_object_new_string(o.name));
	json_object_object_add(args, "writable", json_object_new_boolean(false));
	if (o.bitmap) {
		json_object *a = json_object_new_array();

		json_object_array_add(a, json_object_new_string(o.bitmap));
		json_object_object_add(args, "bitmaps", a);
	}
	return conn_run(c, "block-export-add", args);
}

int cmd_export_remove(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "hard", 0, false, OPT_EXP_HARD },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "ID" };
	struct export_opts o = { 0 };
	const char *id;
	json_object *args;
	int r = export_parse_one(c, cmd, argc, argv, opts, names, &o, &id);

	if (r)
		return r;
	args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_string(id));
	if (o.hard)
		json_object_object_add(args, "mode", json_object_new_string("hard"));
	return conn_run(c, "block-export-del", args);
}

int cmd_export_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const head[] = { "ID", "DEVICE", "TYPE" };
	static const enum align align[] = { ALIGN_LEFT, ALIGN_LEFT, ALIGN_LEFT };
	json_object *ret;
	struct table t;
	size_t i;
	int r;

	r = conn_list(c, cmd, argc, argv, "query-block-exports", &ret);
	if (r)
		return r == CLI_LISTED ? 0 : r;
	table_init(&t, 3, head, align);
	for (i = 0; i < json_object_array_length(ret); i++) {
		json_object *o = json_object_array_get_idx(ret, i);
		const char *row[3];

		if (c->quiet) {
			fprintf(c->out, "%s\n", jstr(o, "id"));
			continue;
		}
		row[0] = jstr(o, "id");
		row[1] = jstr(o, "node-name");
		row[2] = jstr(o, "type");
		r = list_row(c, cmd, &t, row);
		if (r)
			break;
	}
	return list_end(c, &t, ret, r);
}
