// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl backup: drive-backup, and with --wait the job's outcome; of
 * several devices, one transaction whose jobs complete as a group.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsyncctl.h"
#include "qcow2-read.h"

static const char *const sync_modes[] = { "full", "top", "bitmap", "incremental", "none", NULL };
static const char *const bitmap_modes[] = { "on-success", "never", "always", NULL };

enum {
	OPT_SYNC = 1, OPT_BITMAP, OPT_BITMAP_MODE, OPT_BACKING, OPT_EXISTING, OPT_SPEED,
	OPT_JOB_ID, OPT_NO_AUTO_FINALIZE, OPT_NO_AUTO_DISMISS, OPT_WAIT, OPT_FALLBACK,
};

/* The most devices one backup takes at one instant. */
#define GROUP_MAX 16

struct backup_opts {
	struct cli *c;
	const struct cli_cmd *cmd;
	const char *sync, *bitmap, *bitmap_mode, *job_id;
	const char *backing[GROUP_MAX];	/* one per DEVICE, in their order */
	int nbacking;
	uint64_t speed;
	bool have_speed, existing, no_auto_finalize, no_auto_dismiss, wait, fallback;
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
		if (o->nbacking == GROUP_MAX)
			return cli_usage_error(o->c, o->cmd, "--backing: at most %d", GROUP_MAX);
		o->backing[o->nbacking++] = val;
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
	case OPT_FALLBACK:
		if (strcmp(val, "full"))
			return cli_usage_error(o->c, o->cmd, "--fallback: '%s' is not full", val);
		o->fallback = true;
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

/* Why an incremental is impossible (--fallback full). */
struct fallback {
	const char *reason;	/* bitmap-missing, ... ; NULL: the incremental can go ahead */
	char detail[PATH_MAX + 1024];
};

/* Device node's entry in query-named-block-nodes (a reference into list), or NULL. */
static json_object *find_node(json_object *list, const char *node)
{
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *o = json_object_array_get_idx(list, i);
		const char *name = jstr(o, "node-name");

		if (name && !strcmp(name, node))
			return o;
	}
	return NULL;
}

static json_object *find_bitmap(json_object *node, const char *name)
{
	json_object *bms = NULL;

	if (!json_object_object_get_ex(node, "dirty-bitmaps", &bms) || !bms)
		return NULL;
	for (size_t i = 0; i < json_object_array_length(bms); i++) {
		json_object *b = json_object_array_get_idx(bms, i);
		const char *n = jstr(b, "name");

		if (n && !strcmp(n, name))
			return b;
	}
	return NULL;
}

/*
 * Can the incremental be taken?  The bitmap must exist and be consistent,
 * the backing image (named relative to TARGET's directory, as the daemon
 * and QEMU take it) must be a valid base, and of the device's size.
 * 0 (f->reason set or not) or an exit status, the error printed.
 */
static int check_incremental(struct cli *c, const struct backup_opts *o, const char *device,
			     const char *target, struct fallback *f)
{
	char base[PATH_MAX + 256], why[800], a[32], b[32];
	json_object *list = NULL, *node, *bm;
	uint64_t dev_size, base_size;
	int r, st;

	f->reason = NULL;
	r = conn_exec(c, "query-named-block-nodes", NULL, &list);
	if (r)
		return r;
	node = find_node(list, device);
	if (!node) {	/* the backup itself says it is not found */
		json_object_put(list);
		return 0;
	}
	dev_size = (uint64_t)jint(node, "size");
	bm = find_bitmap(node, o->bitmap);
	if (!bm) {
		f->reason = "bitmap-missing";
		snprintf(f->detail, sizeof(f->detail),
			 "device %s has no bitmap '%s' (the device was made again without it, or it "
			 "was removed): nothing tells what changed", device, o->bitmap);
	} else if (jbool(bm, "inconsistent")) {
		f->reason = "bitmap-inconsistent";
		snprintf(f->detail, sizeof(f->detail),
			 "bitmap '%s' of %s is inconsistent (its metadata failed, or the host crashed "
			 "while it was not saved): it may miss writes", o->bitmap, device);
	}
	json_object_put(list);
	if (f->reason || !o->nbacking)
		return 0;
	qcow2_backing_path(target, o->backing[0], base, sizeof(base));
	st = chain_check_base(base, &base_size, why, sizeof(why));
	if (st == EXIT_CHAIN_BROKEN) {
		f->reason = "base-missing";
		snprintf(f->detail, sizeof(f->detail), "the base image or a link below it is missing: %s",
			 why);
	} else if (st == EXIT_CHAIN_PARTIAL) {
		f->reason = "base-partial";
		snprintf(f->detail, sizeof(f->detail), "the base image's chain holds a failed backup: %s",
			 why);
	} else if (st == EXIT_CHAIN_DAMAGED) {
		f->reason = "base-damaged";
		snprintf(f->detail, sizeof(f->detail), "the base image's chain is damaged: %s", why);
	} else if (st == EXIT_CHAIN_SIZE) {
		f->reason = "device-resized";
		snprintf(f->detail, sizeof(f->detail), "the base image's chain spans a resize: %s", why);
	} else if (st) {
		f->reason = "base-unreadable";
		snprintf(f->detail, sizeof(f->detail), "the base image's chain cannot be read: %s", why);
	} else if (base_size != dev_size) {
		f->reason = "device-resized";
		snprintf(f->detail, sizeof(f->detail),
			 "device %s is %s, its base image %s was %s: the device was resized", device,
			 fmt_size(dev_size, a, sizeof(a)), base, fmt_size(base_size, b, sizeof(b)));
	}
	return 0;
}

/*
 * Make the bitmap fit for a full backup that restarts the chain: a missing
 * one is added, an inconsistent one cleared.
 */
static int fallback_prepare(struct cli *c, const struct backup_opts *o, const char *device,
			    const struct fallback *f)
{
	json_object *args;

	if (strcmp(f->reason, "bitmap-missing") && strcmp(f->reason, "bitmap-inconsistent"))
		return 0;
	args = json_object_new_object();
	json_object_object_add(args, "node", json_object_new_string(device));
	json_object_object_add(args, "name", json_object_new_string(o->bitmap));
	return conn_exec(c, strcmp(f->reason, "bitmap-missing") ? "block-dirty-bitmap-clear"
								: "block-dirty-bitmap-add", args, NULL);
}

static void fallback_report(struct cli *c, const struct backup_opts *o, const char *device,
			    const char *target, const struct fallback *f)
{
	const char *done = !strcmp(f->reason, "bitmap-missing") ? "added" :
			   !strcmp(f->reason, "bitmap-inconsistent") ? "cleared" : NULL;

	if (c->json) {
		json_object *j = json_object_new_object(), *fb = json_object_new_object();

		json_object_object_add(fb, "from", json_object_new_string("incremental"));
		json_object_object_add(fb, "to", json_object_new_string("full"));
		json_object_object_add(fb, "reason", json_object_new_string(f->reason));
		json_object_object_add(fb, "detail", json_object_new_string(f->detail));
		json_object_object_add(fb, "bitmap", json_object_new_string(o->bitmap));
		json_object_object_add(fb, "bitmap-action", done ? json_object_new_string(done) : NULL);
		json_object_object_add(fb, "target", json_object_new_string(target));
		json_object_object_add(j, "fallback", fb);
		print_json(c, j);
		json_object_put(j);
	}
	cli_error(c, "backup %s: no incremental (%s): %s; taking a full backup instead into %s, "
		  "which starts a new chain%s%s%s", device, f->reason, f->detail, target,
		  done ? " (bitmap '" : "", done ? o->bitmap : "",
		  !done ? "" : !strcmp(done, "added") ? "' added: not persistent)" : "' cleared)");
}

/* drive-backup's arguments for one device. */
static json_object *backup_args(const struct backup_opts *o, const char *device, const char *target,
				const char *backing, const struct fallback *f)
{
	json_object *args = json_object_new_object();

	if (o->job_id)
		json_object_object_add(args, "job-id", json_object_new_string(o->job_id));
	json_object_object_add(args, "device", json_object_new_string(device));
	json_object_object_add(args, "target", json_object_new_string(target));
	json_object_object_add(args, "format", json_object_new_string("qcow2"));
	json_object_object_add(args, "sync", json_object_new_string(o->sync));
	if (o->existing)
		json_object_object_add(args, "mode", json_object_new_string("existing"));
	if (o->bitmap)
		json_object_object_add(args, "bitmap", json_object_new_string(o->bitmap));
	if (o->bitmap_mode)
		json_object_object_add(args, "bitmap-mode", json_object_new_string(o->bitmap_mode));
	if (backing)
		json_object_object_add(args, "backing-file", json_object_new_string(backing));
	if (o->have_speed)
		json_object_object_add(args, "speed", json_object_new_int64((int64_t)o->speed));
	if (o->no_auto_finalize)
		json_object_object_add(args, "auto-finalize", json_object_new_boolean(false));
	if (o->no_auto_dismiss)
		json_object_object_add(args, "auto-dismiss", json_object_new_boolean(false));
	if (f && f->reason) {	/* the daemon tells its clients too (BSYNC_BACKUP_FALLBACK) */
		json_object_object_add(args, "x-fallback-reason", json_object_new_string(f->reason));
		json_object_object_add(args, "x-fallback-detail", json_object_new_string(f->detail));
	}
	return args;
}

/*
 * Several DEVICE TARGET pairs: one transaction, at one instant for all,
 * whose jobs (each named after its device) complete as a group.
 */
static int backup_group(struct cli *c, struct backup_opts *o, char **pos, int n)
{
	const char *ids[GROUP_MAX];
	json_object *args, *acts, *props, *ret;
	char target[PATH_MAX + 256];
	int i, r;

	if (o->job_id)
		return cli_usage_error(c, o->cmd, "--job-id names one job: with several devices each "
				       "job is named after its device");
	if (o->fallback)
		return cli_usage_error(c, o->cmd, "--fallback full takes one device");
	if (o->nbacking && o->nbacking != n)
		return cli_usage_error(c, o->cmd, "--backing: give it once per DEVICE, in their order "
				       "(%d given for %d devices)", o->nbacking, n);
	cli_set_what(c, "backup %s ...", pos[0]);
	acts = json_object_new_array();
	for (i = 0; i < n; i++) {
		json_object *a = json_object_new_object();

		ids[i] = pos[2 * i];
		absolute(pos[2 * i + 1], target, sizeof(target));
		json_object_object_add(a, "type", json_object_new_string("drive-backup"));
		json_object_object_add(a, "data", backup_args(o, pos[2 * i], target,
							      o->nbacking ? o->backing[i] : NULL, NULL));
		json_object_array_add(acts, a);
	}
	props = json_object_new_object();
	json_object_object_add(props, "completion-mode", json_object_new_string("grouped"));
	args = json_object_new_object();
	json_object_object_add(args, "actions", acts);
	json_object_object_add(args, "properties", props);
	r = conn_exec(c, "transaction", args, &ret);
	if (r)
		return r;
	if (o->wait) {
		json_object_put(ret);
		return jobs_wait(c, ids, n);
	}
	if (c->json) {
		print_json(c, ret);
	} else if (!c->quiet) {
		fprintf(c->out, "backup jobs");
		for (i = 0; i < n; i++)
			fprintf(c->out, "%s '%s'", i ? "," : "", ids[i]);
		fprintf(c->out, " started at one instant, as one group; 'bsyncctl job wait ID' "
			"follows each\n");
	}
	json_object_put(ret);
	return 0;
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
		{ "fallback", 0, true, OPT_FALLBACK },
		{ NULL, 0, false, 0 },
	};
	static const char *const names[] = { "DEVICE", "TARGET" };
	struct backup_opts o = { .c = c, .cmd = cmd };
	struct fallback f = { 0 };
	char target[PATH_MAX + 256], list[128], **pos;
	json_object *args, *ret;
	const char *id;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, backup_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 2, 2 * GROUP_MAX, names);
	if (r)
		return r;
	if (n % 2)
		return cli_usage_error(c, cmd, "missing argument TARGET after DEVICE %s", pos[n - 1]);
	if (!o.sync)
		return cli_usage_error(c, cmd, "missing option --sync (%s)",
				       enum_list(sync_modes, list, sizeof(list)));
	if (n > 2)
		return backup_group(c, &o, pos, n / 2);
	if (o.nbacking > 1)
		return cli_usage_error(c, cmd, "--backing: given %d times for one device", o.nbacking);
	if (o.fallback && (strcmp(o.sync, "incremental") || !o.bitmap || o.existing))
		return cli_usage_error(c, cmd, "--fallback full goes with --sync incremental, --bitmap "
				       "and a new TARGET");
	id = o.job_id ? o.job_id : pos[0];
	absolute(pos[1], target, sizeof(target));
	cli_set_what(c, "backup %s", pos[0]);
	if (o.fallback) {
		r = check_incremental(c, &o, pos[0], target, &f);
		if (!r && f.reason)
			r = fallback_prepare(c, &o, pos[0], &f);
		if (r)
			return r;
		if (f.reason) {
			fallback_report(c, &o, pos[0], target, &f);
			o.sync = "full";
			o.bitmap_mode = "on-success";
			o.nbacking = 0;
		}
	}

	args = backup_args(&o, pos[0], target, o.nbacking ? o.backing[0] : NULL, &f);
	r = conn_exec(c, "drive-backup", args, &ret);
	if (r)
		return r;
	if (o.wait) {
		json_object_put(ret);
		r = job_wait(c, id, true);
		return !r && f.reason ? EXIT_FELL_BACK : r;
	}
	if (c->json)
		print_json(c, ret);
	else if (!c->quiet)
		fprintf(c->out, "backup job '%s' started; 'bsyncctl job wait %s' follows it\n", id, id);
	json_object_put(ret);
	return f.reason ? EXIT_FELL_BACK : 0;
}
