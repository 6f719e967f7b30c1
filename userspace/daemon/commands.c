// SPDX-License-Identifier: GPL-2.0
/*
 * QMP commands: see commands.h.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "commands.h"
#include "dm-bsync-format.h"
#include "log.h"
#include "dmctl.h"
#include "job.h"
#include "nbd-export.h"
#include "tls-creds.h"
#include "node.h"
#include "transaction.h"

enum atype { A_STR, A_INT, A_BOOL, A_ENUM, A_ARRAY, A_OBJECT };

struct arg {
	const char *name;
	enum atype type;
	bool required;
	const char *const *values;	/* A_ENUM */
};

#define MAX_ARGS 24

struct command {
	const char *name;
	int (*fn)(json_object *args, json_object **ret, struct qerr *e);
	struct arg args[MAX_ARGS];
};

static const char *const sync_values[] = { "top", "full", "none", "incremental", "bitmap", NULL };
static const char *const bmode_values[] = { "on-success", "never", "always", NULL };
static const char *const newmode_values[] = { "existing", "absolute-paths", NULL };
static const char *const format_values[] = { "qcow2", "raw", NULL };
static const char *const onerr_values[] = { "report", "ignore", "enospc", "stop", "auto", NULL };
static const char *const op_values[] = { "read", NULL };
/* why bsyncctl backup --fallback full took a full backup (cmd-backup.c) */
static const char *const fallback_values[] = { "bitmap-missing", "bitmap-inconsistent",
	"base-missing", "base-partial", "base-damaged", "base-unreadable", "device-resized", NULL };
static const char *const export_type_values[] = { "nbd", NULL };
static const char *const export_del_values[] = { "safe", "hard", NULL };
static const char *const qom_type_values[] = { "tls-creds-x509", "tls-creds-psk", NULL };
static const char *const endpoint_values[] = { "client", "server", NULL };

static const char *const type_names[] = {
	[A_STR] = "string", [A_INT] = "integer", [A_BOOL] = "boolean",
	[A_ENUM] = "string", [A_ARRAY] = "array", [A_OBJECT] = "object",
};

/* Visit args against the schema in its order, then refuse unknown members. */
static int check_args(const struct command *c, json_object *args, struct qerr *e)
{
	const char *allowed[MAX_ARGS + 1];
	const struct arg *a;
	size_t n = 0;

	for (a = c->args; a->name; a++) {
		json_object *v;
		bool ok;

		allowed[n++] = a->name;
		if (!args || !json_object_object_get_ex(args, a->name, &v) || !v) {
			if (a->required)
				return qerr_set(e, "Parameter '%s' is missing", a->name);
			continue;
		}
		switch (a->type) {
		case A_STR:
		case A_ENUM:
			ok = json_object_is_type(v, json_type_string);
			break;
		case A_INT:
			ok = json_object_is_type(v, json_type_int);
			break;
		case A_BOOL:
			ok = json_object_is_type(v, json_type_boolean);
			break;
		case A_ARRAY:
			ok = json_object_is_type(v, json_type_array);
			break;
		default:
			ok = json_object_is_type(v, json_type_object);
			break;
		}
		if (!ok)
			return qerr_set(e, "Invalid parameter type for '%s', expected: %s",
					a->name, type_names[a->type]);
		if (a->type == A_ENUM) {
			const char *s = json_object_get_string(v);
			const char *const *p;

			for (p = a->values; *p && strcmp(*p, s); p++)
				;
			if (!*p)
				return qerr_set(e, "Parameter '%s' does not accept value '%s'", a->name, s);
		}
	}
	allowed[n] = NULL;
	if (args) {
		const char *k = json_unexpected_key(args, allowed);

		if (k)
			return qerr_set(e, "Parameter '%s' is unexpected", k);
	}
	return 0;
}

static const char *str_arg(json_object *args, const char *name)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, name, &v) || !v)
		return NULL;
	return json_object_get_string(v);
}

static bool bool_arg(json_object *args, const char *name, bool def)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, name, &v) || !v)
		return def;
	return json_object_get_boolean(v);
}

static int64_t int_arg(json_object *args, const char *name, int64_t def)
{
	json_object *v;

	if (!args || !json_object_object_get_ex(args, name, &v) || !v)
		return def;
	return json_object_get_int64(v);
}

/*
 * Nodes
 */
static int cmd_device_add(json_object *args, json_object **ret, struct qerr *e)
{
	const char *name = str_arg(args, "node-name");
	char err[512];
	int r = node_exists(name);

	if (r > 0 || (r == 0 && dmctl_exists(name) > 0))
		return qerr_set(e, "node-name '%s' is already in use", name);
	if (node_add(name, str_arg(args, "origin"), bool_arg(args, "zeroed", false),
		     str_arg(args, "metadata"), bool_arg(args, "force", false), err, sizeof(err)))
		return qerr_set(e, "%s", err);
	return 0;
}

static int lookup_node(const char *name, struct qerr *e)
{
	int r = node_exists(name);

	if (r < 0)
		return qerr_set(e, "cannot look up node '%s': %s", name, strerror(-r));
	if (!r)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", name, name);
	return 0;
}

static int cmd_device_remove(json_object *args, json_object **ret, struct qerr *e)
{
	const char *name = str_arg(args, "node-name");
	struct job *j;
	char err[512];

	if (lookup_node(name, e))
		return -1;
	j = job_find_device(name);
	if (j)
		return qerr_set(e, "Node '%s' is busy: block device is in use by block job: %s",
				name, j->drv->type);
	backup_views_settle(name);
	if (node_remove(name, err, sizeof(err)))
		return qerr_set(e, "%s", err);
	return 0;
}

static json_object *bitmap_json(const struct node_bitmap *b)
{
	json_object *o = json_object_new_object();

	if (!b->anonymous)
		json_object_object_add(o, "name", json_object_new_string(b->name));
	json_object_object_add(o, "recording", json_object_new_boolean(b->recording));
	json_object_object_add(o, "persistent", json_object_new_boolean(b->persistent));
	json_object_object_add(o, "busy", json_object_new_boolean(b->busy));
	/* As QEMU's BlockDirtyInfo: present only when true. */
	if (b->inconsistent)
		json_object_object_add(o, "inconsistent", json_object_new_boolean(true));
	json_object_object_add(o, "granularity", json_object_new_int64((int64_t)b->granularity));
	json_object_object_add(o, "count", json_object_new_int64((int64_t)b->count));
	return o;
}

static int cmd_query_nodes(json_object *args, json_object **ret, struct qerr *e)
{
	json_object *a = json_object_new_array();
	char **names;
	int i, r = node_list(&names);

	if (r) {
		json_object_put(a);
		return qerr_set(e, "cannot list bsync devices: %s", strerror(-r));
	}
	for (i = 0; names[i]; i++) {
		json_object *o = json_object_new_object(), *bms = json_object_new_array();
		struct node_bitmap *v = NULL;
		struct node_info info;
		char path[256], err[256];
		size_t n = 0, k;

		node_path(names[i], path, sizeof(path));
		node_get_info(names[i], &info, err, sizeof(err));
		node_bitmaps(names[i], &v, &n);
		for (k = 0; k < n; k++)
			json_object_array_add(bms, bitmap_json(&v[k]));
		free(v);
		json_object_object_add(o, "node-name", json_object_new_string(names[i]));
		json_object_object_add(o, "drv", json_object_new_string("bsync"));
		json_object_object_add(o, "file", json_object_new_string(path));
		json_object_object_add(o, "ro", json_object_new_boolean(false));
		json_object_object_add(o, "encrypted", json_object_new_boolean(false));
		json_object_object_add(o, "detect_zeroes", json_object_new_string("off"));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)info.size));
		json_object_object_add(o, "dirty-bitmaps", bms);
		json_object_array_add(a, o);
	}
	node_names_free(names);
	*ret = a;
	return 0;
}

/*
 * Bitmaps (block/monitor/bitmap-qmp-cmds.c texts)
 */
static int lookup_bitmap(const char *node, const char *name, struct node_bitmap *b,
			 struct qerr *e)
{
	int r = node_exists(node);

	if (r <= 0)
		return qerr_set(e, "Node '%s' not found", node);
	r = node_find_bitmap(node, name, b);
	if (r == -ENOENT)
		return qerr_set(e, "Dirty bitmap '%s' not found", name);
	if (r)
		return qerr_set(e, "cannot list the bitmaps of '%s': %s", node, strerror(-r));
	return 0;
}

static int check_busy(const struct node_bitmap *b, struct qerr *e)
{
	if (b->busy)
		return qerr_set(e, "Bitmap '%s' is currently in use by another operation and cannot be used",
				b->name);
	return 0;
}

/*
 * QEMU's bdrv_dirty_bitmap_check() text.  Its hint ("Try
 * block-dirty-bitmap-remove to delete this bitmap from disk") is not sent
 * over QMP, by QEMU either.  Unlike QEMU, block-dirty-bitmap-clear is
 * allowed: the kernel makes a cleared bitmap consistent again.
 */
static int check_consistent(const struct node_bitmap *b, struct qerr *e)
{
	if (b->inconsistent)
		return qerr_set(e, "Bitmap '%s' is inconsistent and cannot be used", b->name);
	return 0;
}

int commands_bitmap_usable(const char *node, const char *name, bool consistent,
			   struct node_bitmap *b, struct qerr *e)
{
	if (lookup_bitmap(node, name, b, e) || check_busy(b, e) ||
	    (consistent && check_consistent(b, e)))
		return -1;
	return 0;
}

static int bitmap_msg(const char *node, const char *msg, struct qerr *e)
{
	char err[512];

	if (node_message(node, msg, NULL, err, sizeof(err)))
		return qerr_set(e, "%s", err);
	return 0;
}

/*
 * Room for one more persistent bitmap on node, in QEMU's texts: block.c
 * (a node whose driver cannot store bitmaps) and qcow2-bitmap.c (the table
 * is full).
 */
static int check_persistent_room(const char *node, struct qerr *e)
{
	struct node_bitmap *v;
	struct node_info info;
	char err[256];
	size_t n, i, np = 0;
	int r;

	if (node_get_info(node, &info, err, sizeof(err)))
		return qerr_set(e, "%s", err);
	if (!info.has_metadata)
		return qerr_set(e, "Can't store persistent bitmaps to %s: %s", node, strerror(ENOTSUP));
	r = node_bitmaps(node, &v, &n);
	if (r)
		return qerr_set(e, "cannot list the bitmaps of '%s': %s", node, strerror(-r));
	for (i = 0; i < n; i++)
		np += !v[i].anonymous && v[i].persistent;
	free(v);
	if (np >= BSYNC_MD_MAX_BITMAPS)
		return qerr_set(e, "Maximum number of persistent bitmaps is already reached");
	return 0;
}

static int cmd_bitmap_add(json_object *args, json_object **ret, struct qerr *e)
{
	const char *node = str_arg(args, "node"), *name = str_arg(args, "name"), *p;
	int64_t gran = int_arg(args, "granularity", 65536);
	bool persistent = bool_arg(args, "persistent", false);
	char msg[BITMAP_NAME_MAX + 64], err[512];
	struct node_bitmap b;
	int r;

	if (!name[0])
		return qerr_set(e, "Bitmap name cannot be empty");
	r = node_exists(node);
	if (r <= 0)
		return qerr_set(e, "Cannot find device='%s' nor node-name='%s'", node, node);
	if (gran < 512 || (gran & (gran - 1)))
		return qerr_set(e, "Granularity must be power of 2 and at least 512");
	if (gran > (1ll << 30))
		return qerr_set(e, "Granularity must be at most 1 GiB on a bsync device");
	if (persistent) {
		r = check_persistent_room(node, e);
		if (r)
			return r;
	}
	if (!node_find_bitmap(node, name, &b))
		return qerr_set(e, "Bitmap already exists: %s", name);
	if (strlen(name) > 127)
		return qerr_set(e, "Bitmap name too long: %s", name);
	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_-.:+@", *p))
			return qerr_set(e, "Bitmap name '%s': character '%c' is not allowed on a bsync device "
					"(use letters, digits and _-.:+@)", name, *p);
	snprintf(msg, sizeof(msg), "add %s %" PRId64 "%s%s", name, gran,
		 bool_arg(args, "disabled", false) ? " disabled" : "", persistent ? " persistent" : "");
	r = node_message(node, msg, NULL, err, sizeof(err));
	if (r == -EMLINK && persistent)
		return qerr_set(e, "Maximum number of persistent bitmaps is already reached");
	if (r == -ENOSPC && persistent)
		return qerr_set(e, "Can't store persistent bitmap '%s' in '%s': no room "
				"(the bits do not fit on the metadata device, or the device has its "
				"maximum of bitmaps: see the kernel log)", name, node);
	if (r)
		return qerr_set(e, "%s", err);
	return 0;
}

/* consistent: the verb needs a bitmap that may not miss writes */
static int simple_bitmap_cmd(json_object *args, const char *verb, bool consistent, struct qerr *e)
{
	const char *node = str_arg(args, "node"), *name = str_arg(args, "name");
	char msg[BITMAP_NAME_MAX + 32];
	struct node_bitmap b;

	if (lookup_bitmap(node, name, &b, e) || check_busy(&b, e) ||
	    (consistent && check_consistent(&b, e)))
		return -1;
	snprintf(msg, sizeof(msg), "%s %s", verb, name);
	return bitmap_msg(node, msg, e);
}

static int cmd_bitmap_remove(json_object *args, json_object **ret, struct qerr *e)
{
	return simple_bitmap_cmd(args, "remove", false, e);
}

static int cmd_bitmap_clear(json_object *args, json_object **ret, struct qerr *e)
{
	return simple_bitmap_cmd(args, "clear", false, e);
}

static int cmd_bitmap_enable(json_object *args, json_object **ret, struct qerr *e)
{
	return simple_bitmap_cmd(args, "enable", true, e);
}

static int cmd_bitmap_disable(json_object *args, json_object **ret, struct qerr *e)
{
	return simple_bitmap_cmd(args, "disable", true, e);
}

static int cmd_bitmap_merge(json_object *args, json_object **ret, struct qerr *e)
{
	const char *node = str_arg(args, "node"), *target = str_arg(args, "target");
	json_object *srcs = json_object_object_get(args, "bitmaps");
	struct node_bitmap b;
	size_t i, n = json_object_array_length(srcs), len;
	char *msg;
	int r;

	if (lookup_bitmap(node, target, &b, e) || check_busy(&b, e) || check_consistent(&b, e))
		return -1;
	len = strlen(target) + 16 + n * (BITMAP_NAME_MAX + 2);
	msg = malloc(len);
	if (!msg)
		return qerr_set(e, "out of memory");
	snprintf(msg, len, "merge %s", target);
	for (i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(srcs, i), *v;
		const char *sname, *snode = node;

		if (json_object_is_type(s, json_type_string)) {
			sname = json_object_get_string(s);
		} else if (json_object_is_type(s, json_type_object) &&
			   json_object_object_get_ex(s, "node", &v) &&
			   json_object_is_type(v, json_type_string) &&
			   json_object_object_get_ex(s, "name", NULL)) {
			snode = json_object_get_string(v);
			sname = json_object_get_string(json_object_object_get(s, "name"));
		} else {
			free(msg);
			return qerr_set(e, "Invalid parameter type for 'bitmaps[%zu]', expected: BlockDirtyBitmapOrStr",
					i);
		}
		if (strcmp(snode, node)) {
			r = node_exists(snode);
			free(msg);
			if (r <= 0)
				return qerr_set(e, "Node '%s' not found", snode);
			return qerr_set(e, "Merging bitmaps of different bsync devices ('%s' into '%s') is not supported",
					snode, node);
		}
		if (node_find_bitmap(node, sname, &b)) {
			free(msg);
			return qerr_set(e, "Dirty bitmap '%s' not found", sname);
		}
		if (check_busy(&b, e) || check_consistent(&b, e)) {
			free(msg);
			return -1;
		}
		strcat(msg, " ");
		strcat(msg, sname);
	}
	r = n ? bitmap_msg(node, msg, e) : 0;
	free(msg);
	return r;
}

/*
 * Jobs
 */
/*
 * QEMU's do_backup_common() refuses an inconsistent bitmap in its
 * bdrv_dirty_bitmap_check(), right after the busy check.  backup_start()
 * runs the checks before that one; this one comes first only when none of
 * them would fail, so the order of the texts is QEMU's.
 */
static int backup_bitmap_inconsistent(const struct backup_args *a, struct qerr *e)
{
	struct node_bitmap b;
	bool incremental = !strcmp(a->sync, "incremental");

	if (!a->bitmap || (a->format && strcmp(a->format, "qcow2")))
		return 0;
	if (incremental && a->bitmap_mode && strcmp(a->bitmap_mode, "on-success"))
		return 0;
	if (!a->bitmap_mode && !incremental)
		return 0;
	if (node_exists(a->device) <= 0 || node_find_bitmap(a->device, a->bitmap, &b) || b.busy)
		return 0;
	return check_consistent(&b, e);
}

int commands_backup_args(json_object *args, struct backup_args *out, struct qerr *e)
{
	struct backup_args a = {
		.job_id = str_arg(args, "job-id"),
		.device = str_arg(args, "device"),
		.target = str_arg(args, "target"),
		.format = str_arg(args, "format"),
		.sync = str_arg(args, "sync"),
		.mode = str_arg(args, "mode"),
		.bitmap = str_arg(args, "bitmap"),
		.bitmap_mode = str_arg(args, "bitmap-mode"),
		.backing_file = str_arg(args, "backing-file"),
		.backing_fmt = str_arg(args, "backing-fmt"),
		.x_store = str_arg(args, "x-store"),
		.x_fallback_reason = str_arg(args, "x-fallback-reason"),
		.x_fallback_detail = str_arg(args, "x-fallback-detail"),
		.auto_finalize = bool_arg(args, "auto-finalize", true),
		.auto_dismiss = bool_arg(args, "auto-dismiss", true),
		.speed = int_arg(args, "speed", 0),
	};
	const char *oe;

	if (backup_bitmap_inconsistent(&a, e))
		return -1;
	/* a fall-back is a full backup taken instead of an incremental */
	if (a.x_fallback_reason && strcmp(a.sync, "full"))
		return qerr_set(e, "'x-fallback-reason' requires sync mode 'full', not '%s'", a.sync);
	if (a.x_fallback_detail && !a.x_fallback_reason)
		return qerr_set(e, "'x-fallback-detail' requires 'x-fallback-reason'");
	if (bool_arg(args, "compress", false))
		return qerr_set(e, "Compression is not supported for this drive %s", a.device);
	oe = str_arg(args, "on-source-error");
	if (oe && strcmp(oe, "report"))
		return qerr_set(e, "on-source-error '%s' is not supported: bsyncd reports errors", oe);
	oe = str_arg(args, "on-target-error");
	if (oe && strcmp(oe, "report"))
		return qerr_set(e, "on-target-error '%s' is not supported: bsyncd reports errors", oe);
	*out = a;
	return 0;
}

static int cmd_drive_backup(json_object *args, json_object **ret, struct qerr *e)
{
	struct backup_args a;

	if (commands_backup_args(args, &a, e))
		return -1;
	return backup_start(&a, e);
}

static int find_job(json_object *args, const char *key, struct job **j, struct qerr *e)
{
	const char *id = str_arg(args, key);

	*j = job_find(id);
	if (*j)
		return 0;
	if (!strcmp(key, "device"))
		return qerr_set_class(e, "DeviceNotActive", "Block job '%s' not found", id);
	return qerr_set(e, "Job not found");
}

static int cmd_query_jobs(json_object *args, json_object **ret, struct qerr *e)
{
	*ret = job_query_jobs();
	return 0;
}

static int cmd_query_block_jobs(json_object *args, json_object **ret, struct qerr *e)
{
	*ret = job_query_block_jobs();
	return 0;
}

#define JOB_CMD(fname, key, call)						\
static int fname(json_object *args, json_object **ret, struct qerr *e)	\
{									\
	struct job *j;							\
									\
	if (find_job(args, key, &j, e))					\
		return -1;						\
	return call(j, e);						\
}

JOB_CMD(cmd_job_finalize, "id", job_finalize)
JOB_CMD(cmd_job_cancel, "id", job_cancel)
JOB_CMD(cmd_job_dismiss, "id", job_dismiss)
JOB_CMD(cmd_job_pause, "id", job_pause)
JOB_CMD(cmd_job_resume, "id", job_resume)
JOB_CMD(cmd_block_job_pause, "device", job_pause)
JOB_CMD(cmd_block_job_resume, "device", job_resume)
JOB_CMD(cmd_block_job_finalize, "id", job_finalize)
JOB_CMD(cmd_block_job_dismiss, "id", job_dismiss)

static int cmd_block_job_cancel(json_object *args, json_object **ret, struct qerr *e)
{
	struct job *j;

	if (find_job(args, "device", &j, e))
		return -1;
	if (j->user_paused && !bool_arg(args, "force", false))
		return qerr_set(e, "The block job for device '%s' is currently paused", j->id);
	return job_cancel(j, e);
}

static int cmd_block_job_set_speed(json_object *args, json_object **ret, struct qerr *e)
{
	struct job *j;

	if (find_job(args, "device", &j, e))
		return -1;
	return job_set_speed(j, int_arg(args, "speed", 0), e);
}

static int cmd_inject_error(json_object *args, json_object **ret, struct qerr *e)
{
	return backup_inject_error(str_arg(args, "device"), int_arg(args, "skip", 0),
				   int_arg(args, "errno", EIO), e);
}

static int cmd_query_version(json_object *args, json_object **ret, struct qerr *e)
{
	json_object *o = json_object_new_object(), *q = json_object_new_object();

	json_object_object_add(q, "major", json_object_new_int(0));
	json_object_object_add(q, "minor", json_object_new_int(1));
	json_object_object_add(q, "micro", json_object_new_int(0));
	json_object_object_add(o, "qemu", q);
	json_object_object_add(o, "package", json_object_new_string("bsyncd"));
	*ret = o;
	return 0;
}

static int cmd_query_commands(json_object *args, json_object **ret, struct qerr *e);

#define S(n) { n, A_STR, true, NULL }
#define SO(n) { n, A_STR, false, NULL }
#define I(n) { n, A_INT, false, NULL }
#define B(n) { n, A_BOOL, false, NULL }
#define E(n, req, v) { n, A_ENUM, req, v }

static const struct command commands[] = {
	{ "query-version", cmd_query_version, { { 0 } } },
	{ "query-commands", cmd_query_commands, { { 0 } } },
	{ "bsync-device-add", cmd_device_add,
	  { S("node-name"), S("origin"), B("zeroed"), SO("metadata"), B("force") } },
	{ "bsync-device-remove", cmd_device_remove, { S("node-name") } },
	{ "query-named-block-nodes", cmd_query_nodes, { B("flat") } },
	{ "block-dirty-bitmap-add", cmd_bitmap_add,
	  { S("node"), S("name"), I("granularity"), B("persistent"), B("disabled") } },
	{ "block-dirty-bitmap-remove", cmd_bitmap_remove, { S("node"), S("name") } },
	{ "block-dirty-bitmap-clear", cmd_bitmap_clear, { S("node"), S("name") } },
	{ "block-dirty-bitmap-enable", cmd_bitmap_enable, { S("node"), S("name") } },
	{ "block-dirty-bitmap-disable", cmd_bitmap_disable, { S("node"), S("name") } },
	{ "block-dirty-bitmap-merge", cmd_bitmap_merge,
	  { S("node"), S("target"), { "bitmaps", A_ARRAY, true, NULL } } },
	{ "drive-backup", cmd_drive_backup,
	  { SO("job-id"), S("device"), S("target"), E("format", false, format_values),
	    E("sync", true, sync_values), E("mode", false, newmode_values), I("speed"),
	    SO("bitmap"), E("bitmap-mode", false, bmode_values), B("compress"),
	    E("on-source-error", false, onerr_values), E("on-target-error", false, onerr_values),
	    B("auto-finalize"), B("auto-dismiss"), SO("filter-node-name"),
	    { "x-perf", A_OBJECT, false, NULL }, B("discard-source"),
	    SO("backing-file"), E("backing-fmt", false, format_values), SO("x-store"),
	    E("x-fallback-reason", false, fallback_values), SO("x-fallback-detail") } },
	{ "query-jobs", cmd_query_jobs, { { 0 } } },
	{ "query-block-jobs", cmd_query_block_jobs, { { 0 } } },
	{ "job-finalize", cmd_job_finalize, { S("id") } },
	{ "job-cancel", cmd_job_cancel, { S("id") } },
	{ "job-dismiss", cmd_job_dismiss, { S("id") } },
	{ "job-pause", cmd_job_pause, { S("id") } },
	{ "job-resume", cmd_job_resume, { S("id") } },
	{ "block-job-cancel", cmd_block_job_cancel, { S("device"), B("force") } },
	{ "block-job-pause", cmd_block_job_pause, { S("device") } },
	{ "block-job-resume", cmd_block_job_resume, { S("device") } },
	{ "block-job-finalize", cmd_block_job_finalize, { S("id") } },
	{ "block-job-dismiss", cmd_block_job_dismiss, { S("id") } },
	{ "block-job-set-speed", cmd_block_job_set_speed,
	  { S("device"), { "speed", A_INT, true, NULL } } },
	{ "nbd-server-start", nbd_export_cmd_server_start,
	  { { "addr", A_OBJECT, true, NULL }, SO("tls-creds"), SO("tls-authz"),
	    I("max-connections"), B("x-allow-tcp-loopback") } },
	{ "nbd-server-stop", nbd_export_cmd_server_stop, { { 0 } } },
	{ "block-export-add", nbd_export_cmd_add,
	  { E("type", true, export_type_values), S("id"), S("node-name"), SO("name"),
	    SO("description"), B("writable"), B("writethrough"), B("fixed-iothread"),
	    SO("iothread"), { "bitmaps", A_ARRAY, false, NULL }, B("allocation-depth") } },
	{ "block-export-del", nbd_export_cmd_del, { S("id"), E("mode", false, export_del_values) } },
	{ "query-block-exports", nbd_export_cmd_query, { { 0 } } },
	{ "object-add", tls_creds_cmd_object_add,
	  { E("qom-type", true, qom_type_values), S("id"), SO("dir"),
	    E("endpoint", false, endpoint_values), B("verify-peer"), SO("priority"),
	    SO("username") } },
	{ "object-del", tls_creds_cmd_object_del, { S("id") } },
	{ "transaction", transaction_cmd,
	  { { "actions", A_ARRAY, true, NULL }, { "properties", A_OBJECT, false, NULL } } },
	{ "x-debug-inject-error", cmd_inject_error,
	  { S("device"), E("operation", true, op_values), I("skip"), I("errno") } },
};

static int cmd_query_commands(json_object *args, json_object **ret, struct qerr *e)
{
	json_object *a = json_object_new_array(), *o;
	size_t i;

	o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string("qmp_capabilities"));
	json_object_array_add(a, o);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(commands[i].name));
		json_object_array_add(a, o);
	}
	*ret = a;
	return 0;
}

static const struct command *find_command(const char *cmd)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, cmd))
			return &commands[i];
	return NULL;
}

int commands_check(const char *cmd, json_object *args, struct qerr *e)
{
	const struct command *c = find_command(cmd);

	if (!c)
		return qerr_set_class(e, "CommandNotFound", "The command %s has not been found", cmd);
	return check_args(c, args, e);
}

int commands_call(const char *cmd, json_object *args, struct qerr *e)
{
	const struct command *c = find_command(cmd);
	json_object *ret = NULL;
	int r;

	if (!c)
		return qerr_set_class(e, "CommandNotFound", "The command %s has not been found", cmd);
	r = c->fn(args, &ret, e);
	json_object_put(ret);
	return r;
}

static int dispatch(const char *cmd, json_object *args, json_object **ret, struct qerr *e)
{
	size_t i;

	*ret = NULL;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, cmd))
			continue;
		if (check_args(&commands[i], args, e))
			return -1;
		return commands[i].fn(args, ret, e);
	}
	return qerr_set_class(e, "CommandNotFound", "The command %s has not been found", cmd);
}

int commands_dispatch(const char *cmd, json_object *args, json_object **ret, struct qerr *e)
{
	int r;

	bsyncd_debug("%s %s", cmd,
		     args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN) : "{}");
	r = dispatch(cmd, args, ret, e);
	if (r)
		bsyncd_debug("%s failed: %s", cmd, e->desc);
	return r;
}
