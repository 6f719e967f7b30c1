// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: the /etc/bsynctab parser.  See bsynctab.h and
 * Documentation/bsynctab.rst.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bsynctab.h"

#define MAX_FIELDS 3

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* The first error of a line wins; -ENOMEM if it cannot be kept. */
__attribute__((format(printf, 3, 4)))
static int set_error(const struct bsynctab *t, struct bsynctab_entry *e, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (e->error)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = asprintf(&e->error, "%s:%u: %s", t->path, e->line, msg);
	if (n < 0) {
		e->error = NULL;
		return -ENOMEM;
	}
	return 0;
}

static const char *name_problem(const char *name)
{
	const char *p;

	if (strlen(name) > BSYNCTAB_NAME_MAX)
		return "is longer than 127 characters";
	if (name[0] == '.')
		return "starts with '.'";
	if (strchr(name, '/'))
		return "has a '/'";
	for (p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "has a control character";
	return NULL;
}

static const char *const stable_hint =
	"use a stable name such as /dev/disk/by-id/... or /dev/VG/LV";

/* The options field: "metadata=PATH,zeroed". */
static int parse_options(const struct bsynctab *t, struct bsynctab_entry *e, const char *field)
{
	const char *p = field;

	for (;;) {
		size_t len = strcspn(p, ","), klen = strcspn(p, "=,");
		bool has_val = klen < len;
		const char *val = p + klen + 1;
		size_t vlen = has_val ? len - klen - 1 : 0;

		if (!len)
			return set_error(t, e, "empty option in '%s' (options are separated by "
					 "single commas, without spaces)", field);
		if (klen == 6 && !strncmp(p, "zeroed", 6)) {
			if (has_val)
				return set_error(t, e, "option 'zeroed' takes no value ('%.*s')",
						 (int)len, p);
			if (e->zeroed)
				return set_error(t, e, "option 'zeroed' given twice");
			e->zeroed = true;
		} else if (klen == 8 && !strncmp(p, "metadata", 8)) {
			if (!vlen)
				return set_error(t, e, "option 'metadata' needs a path: "
						 "metadata=PATH (the metadata device)");
			if (e->metadata)
				return set_error(t, e, "option 'metadata' given twice");
			e->metadata = strndup(val, vlen);
			if (!e->metadata)
				return -ENOMEM;
			if (e->metadata[0] != '/')
				return set_error(t, e, "metadata path '%s' is not absolute (%s)",
						 e->metadata, stable_hint);
		} else {
			return set_error(t, e, "unknown option '%.*s' (known: %s)", (int)len, p,
					 BSYNCTAB_KNOWN_OPTIONS);
		}
		if (!p[len])
			return 0;
		p += len + 1;
	}
}

static struct bsynctab_entry *new_entry(struct bsynctab *t, unsigned int line)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct bsynctab_entry *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->v = v;
		t->cap = cap;
	}
	memset(&t->v[t->n], 0, sizeof(t->v[0]));
	t->v[t->n].line = line;
	return &t->v[t->n++];
}

static int parse_line(struct bsynctab *t, unsigned int line, char *s)
{
	char *field[MAX_FIELDS];
	struct bsynctab_entry *e;
	const char *why;
	int nf = 0, extra = 0;

	for (;;) {
		while (is_blank(*s))
			s++;
		if (!*s || *s == '#')
			break;		/* a field that starts with '#' starts a comment */
		if (nf < MAX_FIELDS)
			field[nf++] = s;
		else
			extra++;
		while (*s && !is_blank(*s))
			s++;
		if (*s)
			*s++ = 0;
	}
	if (!nf)
		return 0;
	e = new_entry(t, line);
	if (!e)
		return -ENOMEM;
	e->name = strdup(field[0]);
	if (!e->name)
		return -ENOMEM;
	if (nf > 1) {
		e->origin = strdup(field[1]);
		if (!e->origin)
			return -ENOMEM;
	}
	why = name_problem(e->name);
	if (why)
		return set_error(t, e, "invalid name '%s': it %s (a device-mapper name: at most "
				 "127 characters, no '/', no leading '.')", e->name, why);
	if (nf < 2)
		return set_error(t, e, "'%s' has no ORIGIN (a line is NAME ORIGIN [OPTIONS])",
				 e->name);
	if (extra)
		return set_error(t, e, "too many fields (a line is NAME ORIGIN [OPTIONS], "
				 "OPTIONS one comma-separated list without spaces)");
	if (e->origin[0] != '/')
		return set_error(t, e, "origin '%s' is not an absolute path (%s)", e->origin,
				 stable_hint);
	if (nf > 2) {
		int r = parse_options(t, e, field[2]);

		if (r || e->error)
			return r;
	}
	if (e->metadata && !strcmp(e->metadata, e->origin))
		return set_error(t, e, "metadata=%s is the origin itself: the bitmaps need a "
				 "block device of their own", e->metadata);
	return 0;
}

/* Which of entry a's paths is p, or NULL. */
static const char *path_role(const struct bsynctab_entry *a, const char *p)
{
	if (a->origin && !strcmp(a->origin, p))
		return "origin";
	if (a->metadata && !strcmp(a->metadata, p))
		return "metadata device";
	return NULL;
}

static int check_across(struct bsynctab *t)
{
	size_t i, j;
	int r;

	/* Duplicate names: which disk would the VM get?  Neither line is used. */
	for (i = 0; i < t->n; i++)
		for (j = 0; j < t->n; j++) {
			struct bsynctab_entry *a = &t->v[i];

			if (i == j || strcmp(a->name, t->v[j].name))
				continue;
			r = set_error(t, a, "duplicate name '%s' (also on line %u): neither line is "
				      "activated; give each device its own name", a->name,
				      t->v[j].line);
			if (r)
				return r;
		}
	/* A path under two devices: the later line is refused. */
	for (j = 0; j < t->n; j++) {
		struct bsynctab_entry *b = &t->v[j];

		for (i = 0; i < j && !b->error; i++) {
			const struct bsynctab_entry *a = &t->v[i];
			const char *paths[2] = { b->origin, b->metadata }, *role;
			int k;

			if (a->error)
				continue;
			for (k = 0; k < 2; k++) {
				if (!paths[k] || !(role = path_role(a, paths[k])))
					continue;
				r = set_error(t, b, "%s %s is already the %s of '%s' (line %u): a "
					      "block device can serve one bsync device only",
					      k ? "metadata device" : "origin", paths[k], role,
					      a->name, a->line);
				if (r)
					return r;
				break;
			}
		}
	}
	return 0;
}

int bsynctab_parse(FILE *f, const char *path, struct bsynctab *t)
{
	unsigned int line = 0;
	size_t cap = 0, i;
	char *buf = NULL;
	int r = 0;

	memset(t, 0, sizeof(*t));
	t->path = strdup(path);
	if (!t->path)
		return -ENOMEM;
	for (;;) {
		errno = 0;
		if (getline(&buf, &cap, f) < 0) {
			if (ferror(f))
				r = errno ? -errno : -EIO;	/* EISDIR for a directory */
			break;
		}
		r = parse_line(t, ++line, buf);
		if (r)
			break;
	}
	free(buf);
	if (!r)
		r = check_across(t);
	for (i = 0; i < t->n; i++)
		t->nerrors += !!t->v[i].error;
	return r;
}

int bsynctab_load(const char *path, struct bsynctab *t)
{
	FILE *f = fopen(path, "re");
	int r;

	if (!f) {
		r = -errno;
		memset(t, 0, sizeof(*t));
		return r;
	}
	r = bsynctab_parse(f, path, t);
	fclose(f);
	return r;
}

void bsynctab_free(struct bsynctab *t)
{
	size_t i;

	for (i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].origin);
		free(t->v[i].metadata);
		free(t->v[i].error);
	}
	free(t->v);
	free(t->path);
	memset(t, 0, sizeof(*t));
}
