// SPDX-License-Identifier: GPL-2.0
/*
 * QMP transaction: see transaction.h and Documentation/bsyncd.rst.
 *
 * As QEMU's qmp_transaction(): the actions are prepared in order, and the
 * first that fails has the ones before it aborted in reverse order and
 * its error returned; if all prepare, all commit; then each is cleaned.
 * QEMU prepares inside a drained section; here that section is the write
 * gate of every device the actions name, closed before the first prepare
 * and opened after the last (each phase to all devices at once: their
 * writes in flight drain together), so that every kernel-side
 * action (bitmap add/clear/..., the session that freezes a backup's
 * bitmap and fixes its point in time) happens at one instant on all of
 * them: a write is before it on every device or after it on every device.
 * What needs no instant (the snapshot views, what to copy, starting the
 * jobs) comes after the gates open.  A gate that opened by itself (the
 * kernel's bound on how long writes wait) broke the instant: then
 * everything is rolled back and the transaction fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "backup.h"
#include "commands.h"
#include "job.h"
#include "meter.h"
#include "node.h"
#include "transaction.h"

static unsigned int gate_timeout_ms = TXN_GATE_TIMEOUT_MS_DEFAULT;

void transaction_set_gate_timeout(unsigned int ms)
{
	gate_timeout_ms = ms;
}

struct txn;
struct action;

struct action_ops {
	const char *type;
	/* Before the gates close, what no earlier action changes: 0 or -1 with e set. */
	int (*stage)(struct action *a, struct qerr *e);
	/* Take effect (gates closed): 0 or -1 with e set. */
	int (*prepare)(struct txn *t, struct action *a, struct qerr *e);
	/* After the gates opened, before any commit: 0 or -1 with e set. */
	int (*settle)(struct action *a, struct qerr *e);
	void (*commit)(struct txn *t, struct action *a);
	/* Undo a successful prepare. */
	void (*abort)(struct action *a);
	/* After commit or abort, or after a failed prepare. */
	void (*clean)(struct action *a);
};

struct action {
	const struct action_ops *ops;
	json_object *data;
	const char *node, *name;	/* bitmap actions: the bitmap */
	char tmp[64];			/* its copy from before the action, "" if none */
	bool was_recording;
	bool added;			/* block-dirty-bitmap-add made it */
	struct backup_args bargs;
	struct backup_job *backup;	/* prepared, not yet a job */
};

struct txn {
	struct action *acts;
	size_t n;
	uint64_t token;
	bool grouped;
	struct job_txn *jobs;		/* grouped: the jobs' group */
	struct node_msg *gates;		/* the devices whose gate closes, in name order */
	size_t ngated;
};

static void msg_quiet(const char *node, const char *msg)
{
	char err[512];

	if (node_message(node, msg, NULL, err, sizeof(err)))
		fprintf(stderr, "bsyncd: transaction rollback: %s\n", err);
}

/*
 * A recording bitmap beside a->name, of its granularity, so that abort can
 * give it its bits back (QEMU keeps the old HBitmap): a copy of it (copy),
 * or empty, to catch the writes a disabled bitmap misses.  It records from
 * the instant on, so an abort after the gates opened loses no write.
 */
static int keep_bits(struct txn *t, struct action *a, uint64_t granularity, bool copy,
		     struct qerr *e)
{
	char msg[BITMAP_NAME_MAX + 96], err[512];

	snprintf(a->tmp, sizeof(a->tmp), TXN_TMP_PREFIX "%016" PRIx64 ".%zu", t->token,
		 (size_t)(a - t->acts));
	snprintf(msg, sizeof(msg), "add %s %" PRIu64, a->tmp, granularity);
	if (node_message(a->node, msg, NULL, err, sizeof(err))) {
		a->tmp[0] = 0;
		return qerr_set(e, "cannot keep the bits of bitmap '%s' to undo the action: %s",
				a->name, err);
	}
	snprintf(msg, sizeof(msg), "merge %s %s", a->tmp, a->name);
	if (copy && node_message(a->node, msg, NULL, err, sizeof(err)))
		return qerr_set(e, "cannot keep the bits of bitmap '%s' to undo the action: %s",
				a->name, err);
	return 0;
}

static void drop_copy(struct action *a)
{
	char msg[96];

	if (!a->tmp[0])
		return;
	snprintf(msg, sizeof(msg), "remove %s", a->tmp);
	msg_quiet(a->node, msg);
	a->tmp[0] = 0;
}

/* The bitmap := (its copy and) what was written since: undoes a clear or a merge. */
static void restore_copy(struct action *a, bool clear_first)
{
	char msg[BITMAP_NAME_MAX + 96];

	if (!a->tmp[0])
		return;
	if (clear_first) {
		snprintf(msg, sizeof(msg), "clear %s", a->name);
		msg_quiet(a->node, msg);
	}
	snprintf(msg, sizeof(msg), "merge %s %s", a->name, a->tmp);
	msg_quiet(a->node, msg);
}

static void bitmap_names(struct action *a)
{
	a->node = json_str_member(a->data, "node");
	a->name = json_str_member(a->data, "name");
	if (!a->name)
		a->name = json_str_member(a->data, "target");	/* merge */
}

/* abort */
static int abort_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	return qerr_set(e, "Transaction aborted using Abort action");
}

/* block-dirty-bitmap-add */
static int add_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	bitmap_names(a);
	if (commands_call("block-dirty-bitmap-add", a->data, e))
		return -1;
	a->added = true;
	return 0;
}

static void add_abort(struct action *a)
{
	char msg[BITMAP_NAME_MAX + 16];

	snprintf(msg, sizeof(msg), "remove %s", a->name);
	msg_quiet(a->node, msg);
}

/*
 * block-dirty-bitmap-remove: checked at prepare, removed at commit (QEMU
 * marks it busy meanwhile), so that abort has nothing to undo.
 */
static int remove_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	struct node_bitmap b;

	bitmap_names(a);
	return commands_bitmap_usable(a->node, a->name, false, &b, e);
}

static void remove_commit(struct txn *t, struct action *a)
{
	struct qerr e = { 0 };

	if (commands_call("block-dirty-bitmap-remove", a->data, &e))
		fprintf(stderr, "bsyncd: transaction: %s\n", e.desc);
}

/* block-dirty-bitmap-clear and -merge: a copy from before, for abort */
static int copy_then(struct txn *t, struct action *a, const char *cmd, struct qerr *e)
{
	struct node_bitmap b;

	bitmap_names(a);
	if (commands_bitmap_usable(a->node, a->name, true, &b, e) ||
	    keep_bits(t, a, b.granularity, true, e))
		return -1;
	return commands_call(cmd, a->data, e);
}

static int clear_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	return copy_then(t, a, "block-dirty-bitmap-clear", e);
}

static void clear_abort(struct action *a)
{
	restore_copy(a, false);
}

static int merge_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	return copy_then(t, a, "block-dirty-bitmap-merge", e);
}

static void merge_abort(struct action *a)
{
	restore_copy(a, true);
}

/*
 * block-dirty-bitmap-enable and -disable: abort sets the state back; a
 * disabled bitmap gets the writes made until then from a bitmap that
 * recorded them meanwhile.
 */
static int switch_prepare(struct txn *t, struct action *a, const char *cmd, struct qerr *e)
{
	struct node_bitmap b;

	bitmap_names(a);
	if (commands_bitmap_usable(a->node, a->name, true, &b, e))
		return -1;
	a->was_recording = b.recording;
	if (a->was_recording && !strcmp(cmd, "block-dirty-bitmap-disable") &&
	    keep_bits(t, a, b.granularity, false, e))
		return -1;
	return commands_call(cmd, a->data, e);
}

static int enable_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	return switch_prepare(t, a, "block-dirty-bitmap-enable", e);
}

static int disable_prepare(struct txn *t, struct action *a, struct qerr *e)
{
	return switch_prepare(t, a, "block-dirty-bitmap-disable", e);
}

static void switch_abort(struct action *a)
{
	char msg[BITMAP_NAME_MAX + 16];

	snprintf(msg, sizeof(msg), "%s %s", a->was_recording ? "enable" : "disable", a->name);
	msg_quiet(a->node, msg);
	restore_copy(a, false);
}

/*
 * drive-backup: the target and the store before the gates close, the
 * session (the instant, the frozen bitmap) at prepare, the view after the
 * gates open, the job at commit (QEMU starts it there).
 */
static const char *backup_id(const struct backup_args *b)
{
	return b->job_id ? b->job_id : b->device;
}

static int backup_stage_action(struct action *a, struct qerr *e)
{
	if (commands_backup_args(a->data, &a->bargs, e))
		return -1;
	a->backup = backup_stage(&a->bargs, e);
	return a->backup ? 0 : -1;
}

static int backup_prepare_action(struct txn *t, struct action *a, struct qerr *e)
{
	struct action *p;

	/* the jobs of earlier actions are not known to QMP yet */
	for (p = t->acts; p < a; p++) {
		if (!p->backup)
			continue;
		if (!strcmp(p->bargs.device, a->bargs.device))
			return qerr_set(e, "Node '%s' is busy: block device is in use by block job: backup",
					a->bargs.device);
		if (!strcmp(backup_id(&p->bargs), backup_id(&a->bargs)))
			return qerr_set(e, "Job ID '%s' already in use", backup_id(&a->bargs));
	}
	return backup_stage_instant(a->backup, &a->bargs, e);
}

static int backup_settle(struct action *a, struct qerr *e)
{
	return backup_prepare_view(a->backup, e);
}

static void backup_commit_action(struct txn *t, struct action *a)
{
	struct backup_job *b = a->backup;
	struct qerr e = { 0 };

	a->backup = NULL;	/* the job's now, or discarded */
	if (backup_launch_txn(b, &a->bargs, t->jobs, &e))
		fprintf(stderr, "bsyncd: transaction: job %s: %s\n", backup_id(&a->bargs), e.desc);
}

static void backup_abort_action(struct action *a)
{
	if (a->backup)
		backup_discard(a->backup);
	a->backup = NULL;
}

static const struct action_ops action_ops[] = {
	{ .type = "abort", .prepare = abort_prepare },
	{ .type = "block-dirty-bitmap-add", .prepare = add_prepare, .abort = add_abort },
	{ .type = "block-dirty-bitmap-remove", .prepare = remove_prepare, .commit = remove_commit },
	{ .type = "block-dirty-bitmap-clear", .prepare = clear_prepare, .abort = clear_abort,
	  .clean = drop_copy },
	{ .type = "block-dirty-bitmap-enable", .prepare = enable_prepare, .abort = switch_abort },
	{ .type = "block-dirty-bitmap-disable", .prepare = disable_prepare, .abort = switch_abort,
	  .clean = drop_copy },
	{ .type = "block-dirty-bitmap-merge", .prepare = merge_prepare, .abort = merge_abort,
	  .clean = drop_copy },
	{ .type = "drive-backup", .stage = backup_stage_action, .prepare = backup_prepare_action,
	  .settle = backup_settle, .commit = backup_commit_action, .abort = backup_abort_action,
	  .clean = backup_abort_action },
};

#define NOPS (sizeof(action_ops) / sizeof(action_ops[0]))

/* QEMU names a member of an action by its path: actions[i].data.<member>. */
static void prefix_param(struct qerr *e, size_t i)
{
	static const char p[] = "Parameter '";
	char rest[sizeof(e->desc) - 64];

	if (strncmp(e->desc, p, strlen(p)))
		return;
	snprintf(rest, sizeof(rest), "%s", e->desc + strlen(p));
	snprintf(e->desc, sizeof(e->desc), "%sactions[%zu].data.%s", p, i % 1000000, rest);
}

/* The arguments, all checked before any action is prepared (QAPI's visit). */
static int parse(json_object *args, struct txn *t, struct qerr *e)
{
	static const char *const action_keys[] = { "type", "data", NULL };
	static const char *const prop_keys[] = { "completion-mode", NULL };
	json_object *acts = json_object_object_get(args, "actions"), *props, *v;
	size_t i, k;

	if (json_object_object_get_ex(args, "properties", &props) && props) {
		const char *key = json_unexpected_key(props, prop_keys);

		if (key)
			return qerr_set(e, "Parameter 'properties.%s' is unexpected", key);
		if (json_object_object_get_ex(props, "completion-mode", &v)) {
			const char *mode = json_object_get_string(v);

			if (!json_object_is_type(v, json_type_string))
				return qerr_set(e, "Invalid parameter type for 'properties.completion-mode', expected: string");
			if (strcmp(mode, "individual") && strcmp(mode, "grouped"))
				return qerr_set(e, "Parameter 'properties.completion-mode' does not accept value '%s'",
						mode);
			t->grouped = !strcmp(mode, "grouped");
		}
	}
	t->n = json_object_array_length(acts);
	t->acts = calloc(t->n ? t->n : 1, sizeof(*t->acts));
	if (!t->acts)
		return qerr_set(e, "out of memory");
	for (i = 0; i < t->n; i++) {
		json_object *o = json_object_array_get_idx(acts, i), *data;
		struct action *a = &t->acts[i];
		const char *type, *key;

		if (!json_object_is_type(o, json_type_object))
			return qerr_set(e, "Invalid parameter type for 'actions[%zu]', expected: object", i);
		if (!json_object_object_get_ex(o, "type", &v))
			return qerr_set(e, "Parameter 'actions[%zu].type' is missing", i);
		if (!json_object_is_type(v, json_type_string))
			return qerr_set(e, "Invalid parameter type for 'actions[%zu].type', expected: string", i);
		type = json_object_get_string(v);
		for (k = 0; k < NOPS && strcmp(action_ops[k].type, type); k++)
			;
		if (k == NOPS)
			return qerr_set(e, "Parameter 'actions[%zu].type' does not accept value '%s'", i, type);
		a->ops = &action_ops[k];
		key = json_unexpected_key(o, action_keys);
		if (key)
			return qerr_set(e, "Parameter 'actions[%zu].%s' is unexpected", i, key);
		if (!json_object_object_get_ex(o, "data", &data) || !data)
			return qerr_set(e, "Parameter 'actions[%zu].data' is missing", i);
		if (!json_object_is_type(data, json_type_object))
			return qerr_set(e, "Invalid parameter type for 'actions[%zu].data', expected: object", i);
		a->data = data;
		if (!strcmp(type, "abort")) {
			static const char *const none[] = { NULL };

			key = json_unexpected_key(data, none);
			if (key)
				return qerr_set(e, "Parameter 'actions[%zu].data.%s' is unexpected", i, key);
		} else if (commands_check(type, data, e)) {
			prefix_param(e, i);
			return -1;
		}
	}
	/* qmp_transaction(): only jobs know the group */
	for (i = 0; t->grouped && i < t->n; i++)
		if (strcmp(t->acts[i].ops->type, "drive-backup"))
			return qerr_set(e, "Action '%s' does not support transaction property completion-mode = grouped",
					t->acts[i].ops->type);
	return 0;
}

static int cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct node_msg *)a)->node, ((const struct node_msg *)b)->node);
}

/*
 * The bsync devices the actions name, once each, in name order.  A name
 * that is no bsync device gets no gate: its action fails with its own error.
 */
static int gate_list(struct txn *t, struct qerr *e)
{
	size_t i, j, n = 0;

	t->gates = calloc(t->n ? t->n : 1, sizeof(*t->gates));
	if (!t->gates)
		return qerr_set(e, "out of memory");
	for (i = 0; i < t->n; i++) {
		const char *dev = json_str_member(t->acts[i].data, "node");

		if (!dev)
			dev = json_str_member(t->acts[i].data, "device");
		if (!dev || node_exists(dev) <= 0)
			continue;
		for (j = 0; j < n && strcmp(t->gates[j].node, dev); j++)
			;
		if (j == n)
			t->gates[n++].node = dev;
	}
	qsort(t->gates, n, sizeof(*t->gates), cmp_node);
	t->ngated = n;
	return 0;
}

/*
 * Open the gates of gates[0..n), all at once; the first (in name order)
 * that had opened by itself, or NULL.
 */
static const char *gates_open(struct txn *t, size_t n)
{
	const char *broken = NULL;
	char msg[64];
	size_t i;

	snprintf(msg, sizeof(msg), "gate_open %" PRIu64, t->token);
	node_message_all(t->gates, n, msg);
	for (i = 0; i < n; i++) {
		if (!t->gates[i].r)
			continue;
		fprintf(stderr, "bsyncd: transaction: %s\n", t->gates[i].err);
		if (!broken)
			broken = t->gates[i].node;
	}
	return broken;
}

/*
 * Close every gate at once: each close waits for its device's writes in
 * flight, so writes wait for the slowest device's drain, not the sum of
 * them.  If one fails, those that closed open again, and the error is the
 * first failure's in name order.
 */
static int gates_close(struct txn *t, struct qerr *e)
{
	struct node_msg *g = t->gates;
	size_t i, n = 0;
	char msg[64];

	snprintf(msg, sizeof(msg), "gate_close %" PRIu64 " %u", t->token, gate_timeout_ms);
	node_message_all(g, t->ngated, msg);
	for (i = 0; i < t->ngated && !g[i].r; i++)
		;
	if (i == t->ngated)
		return 0;
	if (g[i].r == -ETIMEDOUT)
		qerr_set(e, "Node '%s': its in-flight writes did not complete within %u ms; no action was taken",
			 g[i].node, gate_timeout_ms);
	else if (g[i].r == -EBUSY)
		qerr_set(e, "Node '%s' is busy: its write gate is held by another transaction",
			 g[i].node);
	else
		qerr_set(e, "cannot close the write gate of '%s' (a dm-bsync module without gate_close?): %s",
			 g[i].node, g[i].err);
	for (i = 0; i < t->ngated; i++)
		if (!g[i].r)
			g[n++] = g[i];
	gates_open(t, n);
	return -1;
}

static uint64_t new_token(void)
{
	static uint64_t seq;
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = ((uint64_t)time(NULL) << 20) ^ ++seq;
	return v ? v : 1;
}

/* Abort the prepared actions acts[0..n) in reverse order. */
static void abort_prepared(struct txn *t, size_t n)
{
	while (n--)
		if (t->acts[n].ops->abort)
			t->acts[n].ops->abort(&t->acts[n]);
}

static void clean_all(struct txn *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (t->acts[i].ops->clean)
			t->acts[i].ops->clean(&t->acts[i]);
}

/*
 * Stage what can be made before the gates close, then prepare every action
 * with the gates closed; 0 or -1 with e set, all undone.  A failed stage
 * reports its error only if every action before it prepares (QEMU's order).
 */
static int prepare_all(struct txn *t, struct qerr *e)
{
	struct qerr staged = { 0 };
	const char *broken;
	size_t i, n;
	struct meter m;

	for (n = 0; n < t->n; n++)
		if (t->acts[n].ops->stage && t->acts[n].ops->stage(&t->acts[n], &staged))
			break;
	if (gates_close(t, e)) {
		clean_all(t, t->n);
		return -1;
	}
	meter_start(&m);
	for (i = 0; i < n; i++)
		if (t->acts[i].ops->prepare(t, &t->acts[i], e))
			break;
	if (i < t->n) {
		if (i == n)
			*e = staged;
		/*
		 * Undone after the gates open (a session is not ended under a
		 * hold): what the actions took away, writes included, comes
		 * back from the bitmaps kept beside them and from successors.
		 */
		gates_open(t, t->ngated);
		abort_prepared(t, i);
		clean_all(t, t->n);
		return -1;
	}
	broken = gates_open(t, t->ngated);
	fprintf(stderr, "bsyncd: transaction: %zu actions on %zu devices; writes held for %.3f s\n",
		t->n, t->ngated, meter_read(&m));
	if (broken) {
		abort_prepared(t, t->n);
		clean_all(t, t->n);
		return qerr_set(e, "The transaction did not take effect at one instant: the write gate of '%s' "
				"opened by itself after %u ms, before all actions were taken; it was rolled back "
				"(bsyncd --gate-timeout)", broken, gate_timeout_ms);
	}
	return 0;
}

int transaction_cmd(json_object *args, json_object **ret, struct qerr *e)
{
	struct txn t = { .token = new_token() };
	int r = -1;
	size_t i;

	if (parse(args, &t, e) || gate_list(&t, e))
		goto out;
	if (prepare_all(&t, e))
		goto out;
	for (i = 0; i < t.n; i++)
		if (t.acts[i].ops->settle && t.acts[i].ops->settle(&t.acts[i], e))
			break;
	if (i < t.n) {
		abort_prepared(&t, t.n);
		clean_all(&t, t.n);
		goto out;
	}
	if (t.grouped) {
		t.jobs = job_txn_new();
		if (!t.jobs) {
			abort_prepared(&t, t.n);
			clean_all(&t, t.n);
			qerr_set(e, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < t.n; i++)
		if (t.acts[i].ops->commit)
			t.acts[i].ops->commit(&t, &t.acts[i]);
	clean_all(&t, t.n);
	job_txn_put(t.jobs);
	r = 0;
out:
	free(t.acts);
	free(t.gates);
	return r;
}
