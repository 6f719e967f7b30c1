// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl job list|finalize|cancel|dismiss|pause|resume|wait, and events.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bsyncctl.h"

#define WAIT_TICK_MS 250

int cmd_job_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const head[] = { "ID", "TYPE", "STATUS", "DONE", "TOTAL",
					    "PROGRESS", "ERROR" };
	static const enum align align[] = { ALIGN_LEFT, ALIGN_LEFT, ALIGN_LEFT, ALIGN_RIGHT,
					    ALIGN_RIGHT, ALIGN_RIGHT, ALIGN_LEFT };
	json_object *ret;
	struct table t;
	size_t i;
	int r;

	r = conn_list(c, cmd, argc, argv, "query-jobs", &ret);
	if (r)
		return r == CLI_LISTED ? 0 : r;
	table_init(&t, 7, head, align);
	for (i = 0; i < json_object_array_length(ret) && !r; i++) {
		json_object *o = json_object_array_get_idx(ret, i);
		uint64_t done = (uint64_t)jint(o, "current-progress");
		uint64_t total = (uint64_t)jint(o, "total-progress");
		char d[32], tt[32], pct[16];
		const char *row[7];

		if (c->quiet) {
			fprintf(c->out, "%s\n", jstr(o, "id"));
			continue;
		}
		snprintf(pct, sizeof(pct), "%d%%",
			 total ? (int)((done > total ? total : done) * 100 / total) : 0);
		row[0] = jstr(o, "id");
		row[1] = jstr(o, "type");
		row[2] = jstr(o, "status");
		row[3] = fmt_size_c(c, done, d, sizeof(d));
		row[4] = fmt_size_c(c, total, tt, sizeof(tt));
		row[5] = pct;
		row[6] = jstr(o, "error") ? jstr(o, "error") : "-";
		if (table_add(&t, row)) {
			cli_error(c, "job list: %s", strerror(ENOMEM));
			r = EXIT_FAILED;
		}
	}
	if (!c->quiet && !r)
		table_print(&t, c->out);
	fflush(c->out);
	table_free(&t);
	json_object_put(ret);
	return r;
}

/* finalize, cancel, dismiss, pause, resume */
int cmd_job_verb(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "ID" };
	json_object *args;
	char qcmd[32], **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 1, 1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "job %s %s", cmd->verb, pos[0]);
	snprintf(qcmd, sizeof(qcmd), "job-%s", cmd->verb);
	args = json_object_new_object();
	json_object_object_add(args, "id", json_object_new_string(pos[0]));
	return conn_run(c, qcmd, args);
}

/*
 * Waiting for a job
 */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct waiter {
	struct cli *c;
	const char *id;
	bool tty, drawn;
	int width;
	struct progress p;
	uint64_t done, total;
};

static void draw(struct waiter *w)
{
	char line[512];

	progress_update(&w->p, progress_now(), w->done);
	progress_format(line, sizeof(line), w->width - 1, w->done, w->total,
			w->p.rate, progress_eta(&w->p, w->done, w->total));
	fprintf(w->c->out, "\r%s\033[K", line);
	fflush(w->c->out);
	w->drawn = true;
}

static void undraw(struct waiter *w)
{
	if (w->drawn) {
		fputs("\r\033[K", w->c->out);
		fflush(w->c->out);
		w->drawn = false;
	}
}

/* The job's entry in query-jobs (a new reference), or NULL; *r an exit status. */
static json_object *query_job(struct cli *c, const char *id, int *r)
{
	json_object *ret, *found = NULL;
	size_t i;

	*r = conn_exec(c, "query-jobs", NULL, &ret);
	if (*r)
		return NULL;
	for (i = 0; i < json_object_array_length(ret); i++) {
		json_object *o = json_object_array_get_idx(ret, i);
		const char *jid = jstr(o, "id");

		if (jid && !strcmp(jid, id))
			found = json_object_get(o);
	}
	json_object_put(ret);
	return found;
}

static bool is_cancel_error(const char *err)
{
	return err && !strcmp(err, "Operation canceled");
}

/*
 * How the job ended: o is its final event's data or its query-jobs entry,
 * shown is what --json prints (the whole event, or the entry).
 */
static int outcome(struct waiter *w, json_object *o, json_object *shown, const char *event)
{
	struct cli *c = w->c;
	const char *err = jstr(o, "error");
	char d[32], t[32];

	undraw(w);
	if (c->json)
		print_json(c, shown);
	if (event && !strcmp(event, "BLOCK_JOB_CANCELLED")) {
		cli_error(c, "%s: job '%s' was cancelled", c->what, w->id);
		return EXIT_CANCELLED;
	}
	if (event && !strcmp(event, "BLOCK_JOB_PENDING")) {
		if (!c->json && !c->quiet)
			fprintf(c->out, "job '%s' is pending: 'bsyncctl job finalize %s' ends it\n",
				w->id, w->id);
		return EXIT_OK;
	}
	if (is_cancel_error(err)) {
		cli_error(c, "%s: job '%s' was cancelled", c->what, w->id);
		return EXIT_CANCELLED;
	}
	if (err) {
		cli_error(c, "%s: job '%s' failed: %s", c->what, w->id, err);
		return EXIT_FAILED;
	}
	if (!c->json && !c->quiet) {
		uint64_t len = (uint64_t)(event ? jint(o, "len") : jint(o, "total-progress"));

		fprintf(c->out, "job '%s' completed: %s of %s\n", w->id,
			fmt_size((uint64_t)(event ? jint(o, "offset") : jint(o, "current-progress")),
				 d, sizeof(d)),
			fmt_size(len, t, sizeof(t)));
	}
	return EXIT_OK;
}

/*
 * An event that ends the wait: the job's completion, cancellation, or its
 * pending state.  Returns 1 (and *r) if it did.
 */
static int handle_event(struct waiter *w, json_object *ev, int *r)
{
	const char *name = jstr(ev, "event"), *jid;
	json_object *data = NULL;

	json_object_object_get_ex(ev, "data", &data);
	if (!name || !data)
		return 0;
	if (!strcmp(name, "BLOCK_JOB_COMPLETED") || !strcmp(name, "BLOCK_JOB_CANCELLED")) {
		jid = jstr(data, "device");
		if (!jid || strcmp(jid, w->id))
			return 0;
		*r = outcome(w, data, ev, name);
		return 1;
	}
	if (!strcmp(name, "BLOCK_JOB_PENDING")) {
		jid = jstr(data, "id");
		if (!jid || strcmp(jid, w->id))
			return 0;
		*r = outcome(w, data, ev, name);
		return 1;
	}
	return 0;
}

int job_wait(struct cli *c, const char *id, bool started_here)
{
	struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
	struct waiter w = { .c = c, .id = id };
	json_object *job = NULL, *ev;
	double next_poll = 0;
	int r = 0;

	w.tty = isatty(fileno(c->out)) && !c->json;
	w.width = w.tty ? terminal_width(fileno(c->out)) : 80;
	progress_init(&w.p, progress_now());
	r = conn_open(c);
	if (r)
		return r;
	if (!started_here) {
		/* Events after this query reach us; the query tells what came before. */
		job = query_job(c, id, &r);
		if (r)
			return r;
		if (!job) {
			cli_error(c, "%s: Job not found", c->what);
			return EXIT_FAILED;
		}
		if (!strcmp(jstr(job, "status"), "concluded") || !strcmp(jstr(job, "status"), "null")) {
			r = outcome(&w, job, job, NULL);
			json_object_put(job);
			return r;
		}
		if (!strcmp(jstr(job, "status"), "pending")) {
			json_object_put(job);
			if (!c->json && !c->quiet)
				fprintf(c->out, "job '%s' is pending: 'bsyncctl job finalize %s' ends it\n",
					id, id);
			return EXIT_OK;
		}
		json_object_put(job);
	}

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	interrupted = 0;
	for (;;) {
		int er = conn_event(c, WAIT_TICK_MS, &ev);

		if (interrupted) {
			undraw(&w);
			cli_error(c, "%s: interrupted; job '%s' goes on ('bsyncctl job list' shows it)",
				  c->what, id);
			r = 128 + SIGINT;
			break;
		}
		if (er == 0) {
			int done = handle_event(&w, ev, &r);

			json_object_put(ev);
			if (done)
				break;
		} else if (er != -ETIMEDOUT) {
			undraw(&w);
			r = er;
			break;
		}
		if (w.tty && progress_now() >= next_poll) {
			job = query_job(c, id, &r);
			if (r) {
				undraw(&w);
				break;
			}
			if (job) {
				w.done = (uint64_t)jint(job, "current-progress");
				w.total = (uint64_t)jint(job, "total-progress");
				json_object_put(job);
				draw(&w);
			}
			next_poll = progress_now() + WAIT_TICK_MS / 1000.0;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	return r;
}

/*
 * Wait for the jobs ids[0..n), started here (a group): each outcome is
 * printed as it comes; the exit status is a failure's if any, else a
 * cancel's.  No progress bar: several would share one line.
 */
int jobs_wait(struct cli *c, const char *const *ids, int n)
{
	struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
	struct waiter *w = calloc((size_t)n, sizeof(*w));
	bool *done = calloc((size_t)n, sizeof(*done));
	int i, left = n, r = 0;

	if (!w || !done) {
		free(w);
		free(done);
		cli_error(c, "%s: %s", c->what, strerror(ENOMEM));
		return EXIT_FAILED;
	}
	for (i = 0; i < n; i++) {
		w[i].c = c;
		w[i].id = ids[i];
	}
	r = conn_open(c);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	interrupted = 0;
	if (r)
		left = 0;
	while (left) {
		json_object *ev;
		int er = conn_event(c, WAIT_TICK_MS, &ev);

		if (interrupted) {
			cli_error(c, "%s: interrupted; the jobs go on ('bsyncctl job list' shows them)",
				  c->what);
			r = 128 + SIGINT;
			break;
		}
		if (er == -ETIMEDOUT)
			continue;
		if (er) {
			r = er;
			break;
		}
		for (i = 0; i < n; i++) {
			int jr;

			if (done[i] || !handle_event(&w[i], ev, &jr))
				continue;
			done[i] = true;
			left--;
			/* a failure says more than the cancels it caused */
			if (jr == EXIT_FAILED || (jr && !r))
				r = jr;
		}
		json_object_put(ev);
		if (r && r != EXIT_FAILED && r != EXIT_CANCELLED)
			break;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	free(w);
	free(done);
	return r;
}

int cmd_job_wait(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "ID" };
	char **pos;
	int n, r;

	r = cli_parse_plain(c, cmd, argc, argv, 1, 1, names, &pos, &n);
	if (r)
		return r;
	cli_set_what(c, "job wait %s", pos[0]);
	return job_wait(c, pos[0], false);
}

/*
 * events
 */

enum { OPT_COUNT = 1 };

struct events_opts {
	struct cli *c;
	const struct cli_cmd *cmd;
	long count;
};

static int events_opt(void *arg, int id, const char *val)
{
	struct events_opts *o = arg;
	char *end;

	(void)id;
	errno = 0;
	o->count = strtol(val, &end, 10);
	if (errno || *end || o->count < 1 || end == val)
		return cli_usage_error(o->c, o->cmd, "--count: '%s' is not a positive number", val);
	return 0;
}

static void print_event(struct cli *c, json_object *ev)
{
	json_object *ts = NULL, *data = NULL;
	char when[64] = "-";

	if (c->json) {
		fprintf(c->out, "%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
								       JSON_C_TO_STRING_NOSLASHESCAPE));
		fflush(c->out);
		return;
	}
	if (json_object_object_get_ex(ev, "timestamp", &ts)) {
		time_t s = (time_t)jint(ts, "seconds");
		struct tm tm;
		size_t n;

		if (localtime_r(&s, &tm)) {
			n = strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(when + n, sizeof(when) - n, ".%06d", (int)jint(ts, "microseconds"));
		}
	}
	json_object_object_get_ex(ev, "data", &data);
	fprintf(c->out, "%s  %s  %s\n", when, jstr(ev, "event") ? jstr(ev, "event") : "?",
		data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
						      JSON_C_TO_STRING_NOSLASHESCAPE) : "{}");
	fflush(c->out);
}

int cmd_events(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
	static const struct cli_opt opts[] = {
		{ "count", 'n', true, OPT_COUNT },
		{ NULL, 0, false, 0 },
	};
	struct events_opts o = { .c = c, .cmd = cmd, .count = -1 };
	json_object *ev;
	char **pos;
	long seen = 0;
	int n, r;

	r = cli_parse(c, cmd, argc, argv, opts, events_opt, &o, &pos, &n);
	if (!r)
		r = cli_want_args(c, cmd, n, 0, 0, NULL);
	if (r)
		return r;
	r = conn_open(c);
	if (r)
		return r;
	while (o.count < 0 || seen < o.count) {
		r = conn_event(c, -1, &ev);
		if (r)
			return r;
		print_event(c, ev);
		json_object_put(ev);
		seen++;
	}
	return 0;
}
