// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl bitmap add|remove|clear|enable|disable|merge|list.
 */
#include <errno.h>
#include <string.h>

#include "bsyncctl.h"

enum { OPT_GRAN = 1, OPT_DISABLED, OPT_PERSISTENT };

struct add_opts {
	struct cli *c;
	const struct cli_cmd *cmd;
	uint64_t gran;
	bool have_gran, disabled, persistent;
};

static int add_opt(void *arg, int id, const char *val)
{
	struct add_opts *o = arg;

	if (id == OPT_DISABLED) {
		o->disabled = true;
		return 0;
	}
	if (id == OPT_PERSISTENT) {
		o->persistent = true;
		return 0;
	}
	if (parse_size(val, &o->gran))
		return cli_usage_error(o->c, o->cmd,
				       "--granularity: '%s' is not a size (a number with an optional K, M or G suffix)",
				       val);
	o->have_gran = true;
	return 0;
}

int cmd_bitmap_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "granularity", 'g', true, OPT_GRAN },
		{ "disabled", 0, false, OPT_DISABLED },
		{ "persistent", 0, false, OPT_PERSISTENT },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "DEVICE", "NAME" };
	struct add_opts o = { .c = c, .cmd = cmd };
	json_object *args;
	char **pos;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, add_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 2, 2, names);
	if (r)
		return r;
	if (o.have_gran && o.gran > INT64_MAX)
		return cli_usage_error(c, cmd, "--granularity: %llu is too large",
				       (unsigned long long)o.gran);
	cli_set_what(c, "bitmap add %s %s", pos[0], pos[1]);
	args = json_object_new_object();
	json_object_object_add(args, "node", json_object_new_string(pos[0]));
	json_object_object_add(args, "name", json_object_new_string(pos[1]));
	if (o.have_gran)
		json_object_object_add(args, "granularity", json_object_new_int64((int64_t)o.gran));
	if (o.disabled)
		json_object_object_add(args, "disabled", json_object_new_boolean(true));
	if (o.persistent)
		json_object_object_add(args, "persistent", json_object_new_boolean(true));
	return conn_run(c, "block-dirty-bitmap-add", args);
}

/* remove, clear, enable, disable */
int cmd_bitmap_simple(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "DEVICE", "NAME" };
	json_object *args;
	char qcmd[64], **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 2, 2, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "bitmap %s %s %s", cmd->verb, pos[0], pos[1]);
	snprintf(qcmd, sizeof(qcmd), "block-dirty-bitmap-%s", cmd->verb);
	args = json_object_new_object();
	json_object_object_add(args, "node", json_object_new_string(pos[0]));
	json_object_object_add(args, "name", json_object_new_string(pos[1]));
	return conn_run(c, qcmd, args);
}

int cmd_bitmap_merge(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "DEVICE", "TARGET", "SOURCE" };
	json_object *args, *srcs;
	char **pos;
	int i, n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 3, -1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "bitmap merge %s %s", pos[0], pos[1]);
	args = json_object_new_object();
	srcs = json_object_new_array();
	for (i = 2; i < n; i++)
		json_object_array_add(srcs, json_object_new_string(pos[i]));
	json_object_object_add(args, "node", json_object_new_string(pos[0]));
	json_object_object_add(args, "target", json_object_new_string(pos[1]));
	json_object_object_add(args, "bitmaps", srcs);
	return conn_run(c, "block-dirty-bitmap-merge", args);
}

static int add_bitmap_rows(struct cli *c, struct table *t, json_object *node)
{
	const char *dev = jstr(node, "node-name");
	json_object *bms = NULL;
	size_t i;

	if (!json_object_object_get_ex(node, "dirty-bitmaps", &bms) || !bms)
		return 0;
	for (i = 0; i < json_object_array_length(bms); i++) {
		json_object *b = json_object_array_get_idx(bms, i);
		const char *name = jstr(b, "name");
		char gran[32], dirty[32];
		const char *row[8];

		if (c->quiet) {
			if (name)
				fprintf(c->out, "%s\n", name);
			continue;
		}
		row[0] = dev;
		row[1] = name ? name : "-";
		row[2] = fmt_size_c(c, (uint64_t)jint(b, "granularity"), gran, sizeof(gran));
		row[3] = fmt_size_c(c, (uint64_t)jint(b, "count"), dirty, sizeof(dirty));
		row[4] = jbool(b, "recording") ? "yes" : "no";
		row[5] = jbool(b, "busy") ? "yes" : "no";
		row[6] = jbool(b, "persistent") ? "yes" : "no";
		row[7] = jbool(b, "inconsistent") ? "yes" : "no";
		if (table_add(t, row))
			return -ENOMEM;
	}
	return 0;
}

int cmd_bitmap_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const head[] = { "DEVICE", "NAME", "GRANULARITY", "DIRTY",
					    "RECORDING", "BUSY", "PERSISTENT", "INCONSISTENT" };
	static const enum align align[] = { ALIGN_LEFT, ALIGN_LEFT, ALIGN_RIGHT, ALIGN_RIGHT,
					    ALIGN_LEFT, ALIGN_LEFT, ALIGN_LEFT, ALIGN_LEFT };
	static const char *const names[] = { "DEVICE" };
	json_object *ret, *sel;
	const char *dev;
	struct table t;
	bool found = false;
	char **pos;
	size_t i;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 0, 1, names, &pos, &n);
	if (r)
		return r;
	dev = n ? pos[0] : NULL;
	if (dev)
		cli_set_what(c, "bitmap list %s", dev);
	r = conn_exec(c, "query-named-block-nodes", NULL, &ret);
	if (r)
		return r;
	/* The daemon's node objects, unchanged; only those of DEVICE if given. */
	sel = json_object_new_array();
	for (i = 0; i < json_object_array_length(ret); i++) {
		json_object *o = json_object_array_get_idx(ret, i);
		const char *name = jstr(o, "node-name");

		if (!dev || (name && !strcmp(name, dev))) {
			json_object_array_add(sel, json_object_get(o));
			found = true;
		}
	}
	json_object_put(ret);
	if (dev && !found) {
		cli_error(c, "%s: Cannot find device='%s' nor node-name='%s'", c->what, dev, dev);
		json_object_put(sel);
		return EXIT_FAILED;
	}
	if (c->json) {
		print_json(c, sel);
		json_object_put(sel);
		return 0;
	}
	table_init(&t, 8, head, align);
	for (i = 0; i < json_object_array_length(sel) && !r; i++)
		if (add_bitmap_rows(c, &t, json_object_array_get_idx(sel, i))) {
			cli_error(c, "%s: %s", c->what, strerror(ENOMEM));
			r = EXIT_FAILED;
		}
	if (!c->quiet && !r)
		table_print(&t, c->out);
	fflush(c->out);
	table_free(&t);
	json_object_put(sel);
	return r;
}
