// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl activate: bring up the bsync devices declared in /etc/bsynctab,
 * at boot before any VM starts (scripts/bsync-activate.service).
 *
 * Each entry in order: a device of that name that already is bsync over the
 * same origin and metadata device is left alone; one with another table is
 * an error naming both; otherwise ORIGIN (and the metadata device) are
 * waited for and the daemon makes the device (never with force).  A failed
 * entry does not stop the others; the report at the end names every device
 * that is not up and why.  See Documentation/bsynctab.rst.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "bsyncctl.h"
#include "bsynctab.h"
#include "dmctl.h"
#include "qmp-client.h"

enum { ACT_OPT_CONFIG = 1, ACT_OPT_WAIT };
enum act_state { ACT_ACTIVE, ACT_ACTIVATED, ACT_FAILED };
static const char *const act_states[] = { "active", "activated", "failed" };

#define ACTIVATE_WAIT_MAX 3600	/* seconds */
#define ACTIVATE_POLL_NS 100000000L

struct activate_opts {
	const char *config;
	const char *wait;
};

/* One run of activate. */
struct act {
	struct cli *c;
	const struct bsynctab *tab;
	unsigned int wait;	/* --wait */
	double deadline;	/* progress_now() by which paths must be there */
	int daemon_status;	/* the exit status of a failed connection, or 0 */
	char daemon_err[1024];	/* its message */
};

static int activate_opt(void *arg, int id, const char *val)
{
	struct activate_opts *o = arg;

	if (id == ACT_OPT_CONFIG)
		o->config = val;
	else if (id == ACT_OPT_WAIT)
		o->wait = val;
	return 0;
}

/* "/dev/mapper/vg-lv (253:1)", "/dev/sdb (8:16)" or "device 8:16". */
static const char *describe_dev(unsigned int ma, unsigned int mi, char *buf, size_t len)
{
	char path[96], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name", ma, mi);
	f = fopen(path, "re");
	if (f) {
		if (fgets(line, sizeof(line), f) && line[0] != '\n') {
			line[strcspn(line, "\n")] = 0;
			snprintf(buf, len, "/dev/mapper/%s (%u:%u)", line, ma, mi);
			found = true;
		}
		fclose(f);
		if (found)
			return buf;
	}
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", ma, mi);
	f = fopen(path, "re");
	if (f) {
		while (!found && fgets(line, sizeof(line), f))
			if (!strncmp(line, "DEVNAME=", 8)) {
				line[strcspn(line, "\n")] = 0;
				snprintf(buf, len, "/dev/%s (%u:%u)", line + 8, ma, mi);
				found = true;
			}
		fclose(f);
		if (found)
			return buf;
	}
	snprintf(buf, len, "device %u:%u", ma, mi);
	return buf;
}

/* A bsync table line: "ORIGIN [N [zeroed] [metadata MD]]". */
struct bsync_table {
	unsigned int origin_ma, origin_mi;
	bool has_metadata;
	unsigned int md_ma, md_mi;
};

static int parse_bsync_table(const char *params, struct bsync_table *bt)
{
	const char *md = strstr(params, " metadata ");

	memset(bt, 0, sizeof(*bt));
	if (sscanf(params, "%u:%u", &bt->origin_ma, &bt->origin_mi) != 2)
		return -EINVAL;
	if (md) {
		if (sscanf(md, " metadata %u:%u", &bt->md_ma, &bt->md_mi) != 2)
			return -EINVAL;
		bt->has_metadata = true;
	}
	return 0;
}

/*
 * /dev/mapper/NAME exists: is it what the entry declares?  ACT_ACTIVE, or
 * ACT_FAILED with msg.
 */
static enum act_state check_existing(struct act *a, const struct bsynctab_entry *e, char *msg,
				     size_t len)
{
	const char *file = a->tab->path, *name = e->name;
	char have[320], have_md[320], fix[512];
	struct dmctl_table t;
	struct bsync_table bt;
	struct stat st;
	unsigned int ma, mi;
	int r = dmctl_status(name, true, &t);

	snprintf(fix, sizeof(fix), "once nothing uses it, remove it with 'bsyncctl device remove "
		 "%s' (or correct %s:%u), then run 'bsyncctl activate' again", name, file, e->line);
	if (r == -ENODATA) {
		snprintf(msg, len, "/dev/mapper/%s exists without a table (a device left half-made): "
			 "remove it with 'dmsetup remove %s', then run 'bsyncctl activate' again",
			 name, name);
		return ACT_FAILED;
	}
	if (r) {
		snprintf(msg, len, "cannot read the table of /dev/mapper/%s: %s", name, strerror(-r));
		return ACT_FAILED;
	}
	if (strcmp(t.type, "bsync")) {
		bool over = sscanf(t.params, "%u:%u", &ma, &mi) == 2;

		snprintf(msg, len, "/dev/mapper/%s already exists as a '%s' device%s%s, not a bsync "
			 "device over %s: rename or remove that device (dmsetup), or give this one "
			 "another name in %s:%u, then run 'bsyncctl activate' again", name, t.type,
			 over ? " over " : "", over ? describe_dev(ma, mi, have, sizeof(have)) : "",
			 e->origin, file, e->line);
		dmctl_table_free(&t);
		return ACT_FAILED;
	}
	r = parse_bsync_table(t.params, &bt);
	if (r)
		snprintf(msg, len, "/dev/mapper/%s is a bsync device whose table bsyncctl does not "
			 "understand ('%s'): is this bsyncctl older than the module?", name, t.params);
	dmctl_table_free(&t);
	if (r)
		return ACT_FAILED;
	describe_dev(bt.origin_ma, bt.origin_mi, have, sizeof(have));
	if (stat(e->origin, &st)) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s, but the declared origin "
			 "%s cannot be checked (%s): %s", name, have, e->origin, strerror(errno), fix);
		return ACT_FAILED;
	}
	if (!S_ISBLK(st.st_mode) || major(st.st_rdev) != bt.origin_ma ||
	    minor(st.st_rdev) != bt.origin_mi) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s, not over %s: %s", name,
			 have, e->origin, fix);
		return ACT_FAILED;
	}
	if (bt.has_metadata)
		describe_dev(bt.md_ma, bt.md_mi, have_md, sizeof(have_md));
	if (e->metadata && stat(e->metadata, &st)) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s, but the declared "
			 "metadata device %s cannot be checked (%s): %s", name, e->origin,
			 e->metadata, strerror(errno), fix);
		return ACT_FAILED;
	}
	if (!e->metadata && bt.has_metadata) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s with metadata device %s, "
			 "but %s:%u declares none: %s", name, e->origin, have_md, file, e->line, fix);
		return ACT_FAILED;
	}
	if (e->metadata && !bt.has_metadata) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s without a metadata "
			 "device, not with metadata=%s: %s", name, e->origin, e->metadata, fix);
		return ACT_FAILED;
	}
	if (e->metadata && (!S_ISBLK(st.st_mode) || major(st.st_rdev) != bt.md_ma ||
			    minor(st.st_rdev) != bt.md_mi)) {
		snprintf(msg, len, "/dev/mapper/%s is a bsync device over %s with metadata device %s, "
			 "not %s: %s", name, e->origin, have_md, e->metadata, fix);
		return ACT_FAILED;
	}
	return ACT_ACTIVE;
}

/* Wait until path is a block device, or the deadline; 0 or -errno with msg. */
static int wait_path(struct act *a, const struct bsynctab_entry *e, const char *what,
		     const char *path, char *msg, size_t len)
{
	const struct timespec poll = { 0, ACTIVATE_POLL_NS };
	struct stat st;

	for (;;) {
		if (!stat(path, &st))
			break;
		if (errno != ENOENT && errno != ENOTDIR) {
			snprintf(msg, len, "cannot check %s %s: %s", what, path, strerror(errno));
			return -errno;
		}
		if (progress_now() >= a->deadline) {
			if (a->wait)
				snprintf(msg, len, "%s %s did not appear within %u s: attach the disk, "
					 "or correct the path in %s:%u", what, path, a->wait,
					 a->tab->path, e->line);
			else
				snprintf(msg, len, "%s %s does not exist: attach the disk, or correct "
					 "the path in %s:%u", what, path, a->tab->path, e->line);
			return -ENOENT;
		}
		nanosleep(&poll, NULL);
	}
	if (!S_ISBLK(st.st_mode)) {
		snprintf(msg, len, "%s %s is not a block device: correct the path in %s:%u", what,
			 path, a->tab->path, e->line);
		return -ENOTBLK;
	}
	return 0;
}

/* "a, b" of the node's persistent bitmaps, "none", or why not known. */
static void persistent_bitmaps(struct act *a, const char *name, char *buf, size_t len)
{
	json_object *ret = NULL;
	char err[480];
	size_t i, k, n = 0;
	int r;

	r = qmp_execute(a->c->qmp, "query-named-block-nodes", NULL, &ret, CLI_TIMEOUT_MS, err,
			sizeof(err));
	if (r) {
		snprintf(buf, len, "unknown: %s", err);
		return;
	}
	buf[0] = 0;
	for (i = 0; i < json_object_array_length(ret); i++) {
		json_object *o = json_object_array_get_idx(ret, i), *bms = NULL;

		if (!jstr(o, "node-name") || strcmp(jstr(o, "node-name"), name) ||
		    !json_object_object_get_ex(o, "dirty-bitmaps", &bms))
			continue;
		for (k = 0; k < json_object_array_length(bms) && n < len; k++) {
			json_object *b = json_object_array_get_idx(bms, k);

			if (jbool(b, "persistent") && jstr(b, "name"))
				n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "",
						      jstr(b, "name"));
		}
	}
	if (!buf[0])
		snprintf(buf, len, "none");
	json_object_put(ret);
}

static enum act_state activate_one(struct act *a, const struct bsynctab_entry *e, char *msg,
				   size_t len)
{
	char bitmaps[512], err[960];
	json_object *args;
	int r = dmctl_exists(e->name);

	if (r > 0)
		return check_existing(a, e, msg, len);
	if (r < 0) {
		snprintf(msg, len, "cannot ask device-mapper about /dev/mapper/%s: %s (run bsyncctl "
			 "as root; is the dm_mod module loaded?)", e->name, strerror(-r));
		return ACT_FAILED;
	}
	if (wait_path(a, e, "origin", e->origin, msg, len) ||
	    (e->metadata && wait_path(a, e, "metadata device", e->metadata, msg, len)))
		return ACT_FAILED;
	if (!a->daemon_status)
		a->daemon_status = conn_open_msg(a->c, a->daemon_err, sizeof(a->daemon_err));
	if (a->daemon_status) {
		snprintf(msg, len, "%s", a->daemon_err);
		return ACT_FAILED;
	}
	args = json_object_new_object();
	json_object_object_add(args, "node-name", json_object_new_string(e->name));
	json_object_object_add(args, "origin", json_object_new_string(e->origin));
	if (e->zeroed)
		json_object_object_add(args, "zeroed", json_object_new_boolean(true));
	if (e->metadata)
		json_object_object_add(args, "metadata", json_object_new_string(e->metadata));
	r = qmp_execute(a->c->qmp, "bsync-device-add", args, NULL, CLI_TIMEOUT_MS, err, sizeof(err));
	json_object_put(args);
	if (r) {
		/* activate never forces: say what to do instead */
		char *force = strstr(err, " (or pass force to add it anyway)");

		if (force)
			snprintf(force, sizeof(err) - (size_t)(force - err),
				 " ('bsyncctl activate' adds it)");
		snprintf(msg, len, "%s", err);
		if (r != -EREMOTEIO) {
			/* The connection is gone: the entries after this one fail the same way. */
			a->daemon_status = EXIT_PROTOCOL;
			snprintf(a->daemon_err, sizeof(a->daemon_err), "lost bsyncd: %s", err);
		}
		return ACT_FAILED;
	}
	persistent_bitmaps(a, e->name, bitmaps, sizeof(bitmaps));
	snprintf(msg, len, "activated over %s (persistent bitmaps: %s)", e->origin, bitmaps);
	return ACT_ACTIVATED;
}

static int parse_wait(struct cli *c, const struct cli_cmd *cmd, const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (!*s || *s == '-' || *s == '+' || *end || errno || v > ACTIVATE_WAIT_MAX)
		return cli_usage_error(c, cmd, "--wait: '%s' is not a number of seconds from 0 to %d",
				       s, ACTIVATE_WAIT_MAX);
	*out = (unsigned int)v;
	return 0;
}

int cmd_activate(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "config", 'c', true, ACT_OPT_CONFIG },
		{ "wait", 'w', true, ACT_OPT_WAIT },
		{ NULL, 0, false, 0 },
	};
	struct activate_opts o = { .config = BSYNCTAB_DEFAULT };
	struct act a = { .c = c };
	enum act_state *state = NULL;
	char **msgs = NULL, **pos;
	json_object *arr = NULL;
	struct bsynctab tab;
	size_t i, nfailed = 0;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, activate_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 0, 0, NULL);
	if (!r && o.wait)
		r = parse_wait(c, cmd, o.wait, &a.wait);
	if (r)
		return r;
	if (!o.config[0])
		return cli_usage_error(c, cmd, "--config: no file given");
	r = bsynctab_load(o.config, &tab);
	if (r == -ENOENT) {
		cli_error(c, "activate: cannot read %s: %s (it declares the devices to bring up: "
			  "see bsynctab(5), Documentation/bsynctab.rst)", o.config, strerror(-r));
		return EXIT_FAILED;
	}
	if (r) {
		cli_error(c, "activate: cannot read %s: %s", o.config, strerror(-r));
		bsynctab_free(&tab);
		return EXIT_FAILED;
	}
	a.tab = &tab;
	a.deadline = progress_now() + a.wait;
	state = calloc(tab.n + 1, sizeof(*state));
	msgs = calloc(tab.n + 1, sizeof(*msgs));
	if (!state || !msgs) {
		cli_error(c, "activate: %s", strerror(ENOMEM));
		r = EXIT_FAILED;
		goto out;
	}
	for (i = 0; i < tab.n; i++) {
		const struct bsynctab_entry *e = &tab.v[i];
		char msg[2048];

		if (e->error) {
			state[i] = ACT_FAILED;
			snprintf(msg, sizeof(msg), "%s", e->error);
			cli_error(c, "%s", msg);
		} else {
			msg[0] = 0;
			state[i] = activate_one(&a, e, msg, sizeof(msg));
			if (state[i] == ACT_FAILED)
				cli_error(c, "activate %s: %s", e->name, msg);
			else if (!c->json && state[i] == ACT_ACTIVE)
				fprintf(c->out, "%s: already active\n", e->name);
			else if (!c->json)
				fprintf(c->out, "%s: %s\n", e->name, msg);
			fflush(c->out);
		}
		if (state[i] == ACT_FAILED) {
			nfailed++;
			msgs[i] = strdup(msg);
		}
	}
	if (c->json) {
		arr = json_object_new_array();
		for (i = 0; i < tab.n; i++) {
			json_object *eo = json_object_new_object();
			const struct bsynctab_entry *e = &tab.v[i];

			json_object_object_add(eo, "name", json_object_new_string(e->name));
			json_object_object_add(eo, "origin",
					       e->origin ? json_object_new_string(e->origin) : NULL);
			json_object_object_add(eo, "state", json_object_new_string(act_states[state[i]]));
			if (state[i] == ACT_FAILED)
				json_object_object_add(eo, "error",
						       json_object_new_string(msgs[i] ? msgs[i] : ""));
			json_object_array_add(arr, eo);
		}
		print_json(c, arr);
		json_object_put(arr);
	}
	r = EXIT_OK;
	if (nfailed) {
		fprintf(c->err, "bsyncctl: activate: %zu of %zu device%s declared in %s could not be "
			"brought up:\n", nfailed, tab.n, tab.n == 1 ? "" : "s", tab.path);
		for (i = 0; i < tab.n; i++)
			if (state[i] == ACT_FAILED)
				fprintf(c->err, "  %s: %s\n", tab.v[i].name,
					msgs[i] ? msgs[i] : strerror(ENOMEM));
		fprintf(c->err, "Where /dev/mapper/NAME is absent, a VM configured on it fails to "
			"start rather than run untracked. Fix each, then run 'bsyncctl activate' "
			"again: it leaves the active devices alone.\n");
		fflush(c->err);
		r = a.daemon_status ? a.daemon_status : EXIT_FAILED;
	}
out:
	if (msgs)
		for (i = 0; i < tab.n; i++)
			free(msgs[i]);
	free(msgs);
	free(state);
	bsynctab_free(&tab);
	return r;
}
