// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl backup: drive-backup, and with --wait the job's outcome.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsyncctl.h"

static const char *const sync_modes[] = { "full", "top", "bitmap", "incremental", "none", NULL };
static const char *const bitmap_modes[] = { "on-success", "never", "always", NULL };

enum {
	OPT_SYNC = 1, OPT_BITMAP, OPT_BITMAP_MODE, OPT_BACKING, OPT_EXISTING, OPT_SPEED,
	OPT_JOB_ID, OPT_NO_AUTO_FINALIZE, OPT_NO_AUTO_DISMISS, OPT_WAIT,
};

struct backup_opts {
	struct cli *c;
	const struct cli_cmd *cmd;
	const char *sync, *bitmap, *bitmap_mode, *backing, *job_id;
	uint64_t speed;
	bool have_speed, existing, no_auto_finalize, no_auto_dismiss, wait;
};

static int backup_opt(void *arg, int id, const char *val)
{
	struct backup_opts *o = arg;
	char list[128];

	switch (id) {
	case OPT_SYNC:
		if (parse_enum(val, sync_modes) < 0)
			return cli_usage_error(o->c, o->cmd, "--sync: '%s' is not %s", val,
					       enum_list(sync_modes, list, sizeof(list)));
		o->sync = val;
		break;
	case OPT_BITMAP:
		o->bitmap = val;
		break;
	case OPT_BITMAP_MODE:
		if (parse_enum(val, bitmap_modes) < 0)
			return cli_usage_error(o->c, o->cmd, "--bitmap-mode: '%s' is not %s", val,
					       enum_list(bitmap_modes, list, sizeof(list)));
		o->bitmap_mode = val;
		break;
	case OPT_BACKING:
		o->backing = val;
		break;
	case OPT_EXISTING:
		o->existing = true;
		break;
	case OPT_SPEED:
		if (parse_rate(val, &o->speed) || o->speed > INT64_MAX)
			return cli_usage_error(o->c, o->cmd,
					       "--speed: '%s' is not a rate (bytes per second, with an optional K, M or G suffix)",
					       val);
		o->have_speed = true;
		break;
	case OPT_JOB_ID:
		o->job_id = val;
		break;
	case OPT_NO_AUTO_FINALIZE:
		o->no_auto_finalize = true;
		break;
	case OPT_NO_AUTO_DISMISS:
		o->no_auto_dismiss = true;
		break;
	case OPT_WAIT:
		o->wait = true;
		break;
	}
	return 0;
}

/* TARGET relative to our directory, not the daemon's. */
static void absolute(const char *path, char *buf, size_t len)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		snprintf(buf, len, "%s", path);
	else
		snprintf(buf, len, "%s/%s", strcmp(cwd, "/") ? cwd : "", path);
}

int cmd_backup(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "sync", 0, true, OPT_SYNC },
		{ "bitmap", 0, true, OPT_BITMAP },
		{ "bitmap-mode", 0, true, OPT_BITMAP_MODE },
		{ "backing", 0, true, OPT_BACKING },
		{ "existing", 0, false, OPT_EXISTING },
		{ "speed", 0, true, OPT_SPEED },
		{ "job-id", 0, true, OPT_JOB_ID },
		{ "no-auto-finalize", 0, false, OPT_NO_AUTO_FINALIZE },
		{ "no-auto-dismiss", 0, false, OPT_NO_AUTO_DISMISS },
		{ "wait", 'w', false, OPT_WAIT },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "DEVICE", "TARGET" };
	struct backup_opts o = { .c = c, .cmd = cmd };
	char target[PATH_MAX + 256], list[128], **pos;
	json_object *args, *ret;
	const char *id;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, backup_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 2, 2, names);
	if (r)
		return r;
	if (!o.sync)
		return cli_usage_error(c, cmd, "missing option --sync (%s)",
				       enum_list(sync_modes, list, sizeof(list)));
	id = o.job_id ? o.job_id : pos[0];
	absolute(pos[1], target, sizeof(target));
	cli_set_what(c, "backup %s", pos[0]);

	args = json_object_new_object();
	if (o.job_id)
		json_object_object_add(args, "job-id", json_object_new_string(o.job_id));
	json_object_object_add(args, "device", json_object_new_string(pos[0]));
	json_object_object_add(args, "target", json_object_new_string(target));
	json_object_object_add(args, "format", json_object_new_string("qcow2"));
	json_object_object_add(args, "sync", json_object_new_string(o.sync));
	if (o.existing)
		json_object_object_add(args, "mode", json_object_new_string("existing"));
	if (o.bitmap)
		json_object_object_add(args, "bitmap", json_object_new_string(o.bitmap));
	if (o.bitmap_mode)
		json_object_object_add(args, "bitmap-mode", json_object_new_string(o.bitmap_mode));
	if (o.backing)
		json_object_object_add(args, "backing-file", json_object_new_string(o.backing));
	if (o.have_speed)
		json_object_object_add(args, "speed", json_object_new_int64((int64_t)o.speed));
	if (o.no_auto_finalize)
		json_object_object_add(args, "auto-finalize", json_object_new_boolean(false));
	if (o.no_auto_dismiss)
		json_object_object_add(args, "auto-dismiss", json_object_new_boolean(false));

	r = conn_exec(c, "drive-backup", args, &ret);
	if (r)
		return r;
	if (o.wait) {
		json_object_put(ret);
		return job_wait(c, id, true);
	}
	if (c->json)
		print_json(c, ret);
	else if (!c->quiet)
		fprintf(c->out, "backup job '%s' started; 'bsyncctl job wait %s' follows it\n", id, id);
	json_object_put(ret);
	return 0;
}
