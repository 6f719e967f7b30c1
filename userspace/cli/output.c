// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: errors, human sizes and durations, aligned tables, JSON.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"

void cli_set_what(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->what_buf, sizeof(c->what_buf), fmt, ap);
	va_end(ap);
	c->what = c->what_buf;
}

void cli_error(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fputs("bsyncctl: ", c->err);
	va_start(ap, fmt);
	vfprintf(c->err, fmt, ap);
	va_end(ap);
	fputc('\n', c->err);
	fflush(c->err);
}

int cli_usage_error(struct cli *c, const struct cli_cmd *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cmd) {
		fprintf(c->err, "bsyncctl: %s%s%s: %s\n", cmd->noun, cmd->verb ? " " : "",
			cmd->verb ? cmd->verb : "", msg);
		cli_print_usage(c->err, cmd);
		fprintf(c->err, "Try 'bsyncctl %s%s%s --help' for more information.\n", cmd->noun,
			cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
	} else {
		fprintf(c->err, "bsyncctl: %s\n", msg);
		fputs("Try 'bsyncctl --help' for more information.\n", c->err);
	}
	fflush(c->err);
	return EXIT_USAGE;
}

const char *fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned int u = 0;
	uint64_t whole = bytes;

	while (whole >= 1024 && u < 6) {
		whole >>= 10;
		u++;
	}
	if (u == 0 || bytes == whole << (10 * u)) {
		snprintf(buf, len, "%llu %s", (unsigned long long)whole, units[u]);
	} else {
		double v = (double)bytes / (double)(1ull << (10 * u));

		/* three significant digits: 1.50 MiB, 15.5 MiB, 155 MiB */
		if (v >= 1023.5) {
			v /= 1024;
			u++;
		}
		snprintf(buf, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
	}
	return buf;
}

const char *fmt_size_c(const struct cli *c, uint64_t bytes, char *buf, size_t len)
{
	if (c->bytes) {
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
		return buf;
	}
	return fmt_size(bytes, buf, len);
}

const char *fmt_duration(double seconds, char *buf, size_t len)
{
	unsigned long long s;

	if (seconds < 0 || seconds > 360000000.0) {
		snprintf(buf, len, "--:--");
		return buf;
	}
	s = (unsigned long long)(seconds + 0.5);
	if (s >= 3600)
		snprintf(buf, len, "%llu:%02llu:%02llu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%llu:%02llu", s / 60, s % 60);
	return buf;
}

void table_init(struct table *t, size_t ncols, const char *const *head, const enum align *align)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	t->ncols = ncols < TABLE_MAX_COLS ? ncols : TABLE_MAX_COLS;
	for (i = 0; i < t->ncols; i++) {
		t->head[i] = head[i];
		t->align[i] = align ? align[i] : ALIGN_LEFT;
	}
}

int table_add(struct table *t, const char *const *row)
{
	size_t i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **p = realloc(t->cells, cap * t->ncols * sizeof(*p));

		if (!p)
			return -ENOMEM;
		t->cells = p;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		char *s = strdup(row[i] ? row[i] : "");

		if (!s) {
			while (i--)
				free(t->cells[t->nrows * t->ncols + i]);
			return -ENOMEM;
		}
		t->cells[t->nrows * t->ncols + i] = s;
	}
	t->nrows++;
	return 0;
}

static void print_row(const struct table *t, const char *const *cells, const size_t *w, FILE *f)
{
	size_t i, last = t->ncols - 1;

	for (i = 0; i < t->ncols; i++) {
		const char *sep = i ? "  " : "";

		if (t->align[i] == ALIGN_RIGHT)
			fprintf(f, "%s%*s", sep, (int)w[i], cells[i]);
		else if (i == last)
			fprintf(f, "%s%s", sep, cells[i]);
		else
			fprintf(f, "%s%-*s", sep, (int)w[i], cells[i]);
	}
	fputc('\n', f);
}

void table_print(const struct table *t, FILE *f)
{
	size_t w[TABLE_MAX_COLS], r, i;

	for (i = 0; i < t->ncols; i++)
		w[i] = strlen(t->head[i]);
	for (r = 0; r < t->nrows; r++)
		for (i = 0; i < t->ncols; i++) {
			size_t n = strlen(t->cells[r * t->ncols + i]);

			if (n > w[i])
				w[i] = n;
		}
	print_row(t, t->head, w, f);
	for (r = 0; r < t->nrows; r++)
		print_row(t, (const char *const *)&t->cells[r * t->ncols], w, f);
	fflush(f);
}

void table_free(struct table *t)
{
	size_t i;

	for (i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

int list_row(struct cli *c, const struct cli_cmd *cmd, struct table *t, const char *const *row)
{
	if (!table_add(t, row))
		return 0;
	cli_error(c, "%s %s: %s", cmd->noun, cmd->verb, strerror(ENOMEM));
	return EXIT_FAILED;
}

int list_end(struct cli *c, struct table *t, json_object *ret, int r)
{
	if (!c->quiet && !r)
		table_print(t, c->out);
	table_free(t);
	json_object_put(ret);
	return r;
}

void print_json(struct cli *c, json_object *o)
{
	const char *s = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_SPACED |
							   JSON_C_TO_STRING_NOSLASHESCAPE)
			  : "{}";

	fprintf(c->out, "%s\n", s);
	fflush(c->out);
}

bool has_control_chars(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch < 0x20 && ch != '\n') || ch == 0x7f)
			return true;
	}
	return false;
}

const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

bool jbool(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return false;
	return json_object_get_boolean(v);
}
