// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl device add|remove|list.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsyncctl.h"

enum { OPT_ZEROED = 1, OPT_METADATA, OPT_FORCE };

struct device_add_opts {
	bool zeroed, force;
	const char *metadata;
};

static int device_opt(void *arg, int id, const char *val)
{
	struct device_add_opts *o = arg;

	if (id == OPT_ZEROED)
		o->zeroed = true;
	else if (id == OPT_FORCE)
		o->force = true;
	else if (id == OPT_METADATA)
		o->metadata = val;
	return 0;
}

/* The daemon resolves paths from its own directory: make path absolute. */
static void device_abspath(const char *path, char *buf, size_t len)
{
	char real[PATH_MAX];

	if (path[0] == '/' || !realpath(path, real))
		snprintf(buf, len, "%s", path);
	else
		snprintf(buf, len, "%s", real);
}

int cmd_device_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "zeroed", 0, false, OPT_ZEROED },
		{ "metadata", 0, true, OPT_METADATA },
		{ "force", 0, false, OPT_FORCE },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "NAME", "ORIGIN" };
	char origin[PATH_MAX], metadata[PATH_MAX], **pos;
	struct device_add_opts o = { 0 };
	json_object *args;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, device_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 2, 2, names);
	if (r)
		return r;
	if (o.metadata && !o.metadata[0])
		return cli_usage_error(c, cmd, "--metadata: no device given");
	device_abspath(pos[1], origin, sizeof(origin));
	cli_set_what(c, "device add %s", pos[0]);
	args = json_object_new_object();
	json_object_object_add(args, "node-name", json_object_new_string(pos[0]));
	json_object_object_add(args, "origin", json_object_new_string(origin));
	if (o.zeroed)
		json_object_object_add(args, "zeroed", json_object_new_boolean(true));
	if (o.force)
		json_object_object_add(args, "force", json_object_new_boolean(true));
	if (o.metadata) {
		device_abspath(o.metadata, metadata, sizeof(metadata));
		json_object_object_add(args, "metadata", json_object_new_string(metadata));
	}
	return conn_run(c, "bsync-device-add", args);
}

int cmd_device_remove(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "NAME" };
	json_object *args;
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 1, 1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "device remove %s", pos[0]);
	args = json_object_new_object();
	json_object_object_add(args, "node-name", json_object_new_string(pos[0]));
	return conn_run(c, "bsync-device-remove", args);
}

int cmd_device_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const head[] = { "NAME", "SIZE", "BITMAPS", "PATH" };
	static const enum align align[] = { ALIGN_LEFT, ALIGN_RIGHT, ALIGN_RIGHT, ALIGN_LEFT };
	json_object *ret;
	struct table t;
	size_t i;
	int r;

	r = conn_list(c, cmd, argc, argv, "query-named-block-nodes", &ret);
	if (r)
		return r == CLI_LISTED ? 0 : r;
	table_init(&t, 4, head, align);
	for (i = 0; i < json_object_array_length(ret); i++) {
		json_object *o = json_object_array_get_idx(ret, i), *bms = NULL;
		char size[32], nbm[16];
		const char *row[4];

		json_object_object_get_ex(o, "dirty-bitmaps", &bms);
		if (c->quiet) {
			fprintf(c->out, "%s\n", jstr(o, "node-name"));
			continue;
		}
		snprintf(nbm, sizeof(nbm), "%zu", bms ? json_object_array_length(bms) : 0);
		row[0] = jstr(o, "node-name");
		row[1] = fmt_size_c(c, (uint64_t)jint(o, "size"), size, sizeof(size));
		row[2] = nbm;
		row[3] = jstr(o, "file");
		r = list_row(c, cmd, &t, row);
		if (r)
			break;
	}
	return list_end(c, &t, ret, r);
}
