// SPDX-License-Identifier: GPL-2.0
/*
 * The /etc/bsynctab parser (cli/bsynctab.c): fields, options, comments,
 * and every error with its FILE:LINE and exact text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

#include "../cli/bsynctab.c"

/* Parse text as file "tab"; the parser's return value. */
static int parse(const char *text, struct bsynctab *t)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int r;

	if (!f) {
		memset(t, 0, sizeof(*t));
		return -errno;
	}
	r = bsynctab_parse(f, "tab", t);
	fclose(f);
	return r;
}

static bool streq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* The error of the one-line text (NULL if none), checked against want. */
static void expect_error(const char *text, const char *want)
{
	struct bsynctab t;
	int r = parse(text, &t);
	const char *have = r || t.n != 1 ? "(parse failed)" : t.v[0].error;

	if (!tap_ok(streq(have, want), "'%.*s' -> %s", (int)strcspn(text, "\n"), text,
		    want ? want : "no error"))
		tap_diag("have: %s", have ? have : "no error");
	bsynctab_free(&t);
}

static void test_good(void)
{
	struct bsynctab t;
	int r;

	r = parse("", &t);
	tap_ok(!r && t.n == 0 && t.nerrors == 0, "an empty file declares nothing");
	bsynctab_free(&t);

	r = parse("# NAME ORIGIN OPTIONS\n\n   \t\n  # indented comment\n", &t);
	tap_ok(!r && t.n == 0, "comments and blank lines are ignored");
	bsynctab_free(&t);

	r = parse("# devices\n"
		  "vm1 /dev/disk/by-id/wwn-0x1 metadata=/dev/vg0/vm1-md,zeroed\n"
		  "\n"
		  "vm2\t\t/dev/vg0/vm2   # the second VM\n"
		  "vm3 /dev/vg0/vm3 zeroed\r\n"
		  "  vm4   /dev/vg0/vm4   metadata=/dev/vg0/vm4-md  \n"
		  "vm5 /dev/vg0/vm5 zeroed", &t);
	tap_ok(!r && t.n == 5 && t.nerrors == 0, "five entries, no error (%zu, %zu)", t.n,
	       t.nerrors);
	if (t.n == 5) {
		tap_ok(t.v[0].line == 2 && streq(t.v[0].name, "vm1") &&
		       streq(t.v[0].origin, "/dev/disk/by-id/wwn-0x1") &&
		       streq(t.v[0].metadata, "/dev/vg0/vm1-md") && t.v[0].zeroed,
		       "metadata=PATH,zeroed");
		tap_ok(t.v[1].line == 4 && streq(t.v[1].name, "vm2") &&
		       streq(t.v[1].origin, "/dev/vg0/vm2") && !t.v[1].metadata && !t.v[1].zeroed,
		       "tabs as separators, no options, a comment after the fields");
		tap_ok(t.v[2].line == 5 && streq(t.v[2].origin, "/dev/vg0/vm3") && t.v[2].zeroed,
		       "a CRLF line");
		tap_ok(t.v[3].line == 6 && streq(t.v[3].name, "vm4") &&
		       streq(t.v[3].metadata, "/dev/vg0/vm4-md") && !t.v[3].zeroed,
		       "leading and trailing blanks");
		tap_ok(t.v[4].line == 7 && t.v[4].zeroed, "a last line without a newline");
	}
	bsynctab_free(&t);

	{
		char name[200], text[400];

		memset(name, 'n', 127);
		name[127] = 0;
		snprintf(text, sizeof(text), "%s /dev/x\n", name);
		expect_error(text, NULL);
		snprintf(text, sizeof(text), "%sn /dev/x\n", name);
		expect_error(text, "tab:1: invalid name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
			     "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
			     "nnn': it is longer than 127 characters (a device-mapper name: at most 127 "
			     "characters, no '/', no leading '.')");
	}
	{
		/* A line longer than any fixed buffer. */
		size_t n = 10000;
		char *text = malloc(n + 32);

		if (text) {
			memcpy(text, "long /dev/", 10);
			memset(text + 10, 'x', n);
			strcpy(text + 10 + n, " zeroed\n");
			r = parse(text, &t);
			tap_ok(!r && t.n == 1 && !t.v[0].error && strlen(t.v[0].origin) == n + 5 &&
			       t.v[0].zeroed, "a 10 kB line");
			bsynctab_free(&t);
			free(text);
		}
	}
}

static void test_line_errors(void)
{
	expect_error("vm1 /dev/x foo\n",
		     "tab:1: unknown option 'foo' (known: metadata=PATH, zeroed)");
	expect_error("vm1 /dev/x zeroed,metdata=/dev/y\n",
		     "tab:1: unknown option 'metdata=/dev/y' (known: metadata=PATH, zeroed)");
	expect_error("vm1\n", "tab:1: 'vm1' has no ORIGIN (a line is NAME ORIGIN [OPTIONS])");
	expect_error("vm1 /dev/x zeroed, metadata=/dev/y\n",
		     "tab:1: too many fields (a line is NAME ORIGIN [OPTIONS], OPTIONS one "
		     "comma-separated list without spaces)");
	expect_error("vm1 sdb\n", "tab:1: origin 'sdb' is not an absolute path (use a stable "
		     "name such as /dev/disk/by-id/... or /dev/VG/LV)");
	expect_error("vm1 /dev/x zeroed=yes\n", "tab:1: option 'zeroed' takes no value ('zeroed=yes')");
	expect_error("vm1 /dev/x zeroed,zeroed\n", "tab:1: option 'zeroed' given twice");
	expect_error("vm1 /dev/x metadata\n",
		     "tab:1: option 'metadata' needs a path: metadata=PATH (the metadata device)");
	expect_error("vm1 /dev/x metadata=\n",
		     "tab:1: option 'metadata' needs a path: metadata=PATH (the metadata device)");
	expect_error("vm1 /dev/x metadata=vg/md\n", "tab:1: metadata path 'vg/md' is not absolute "
		     "(use a stable name such as /dev/disk/by-id/... or /dev/VG/LV)");
	expect_error("vm1 /dev/x metadata=/dev/a,metadata=/dev/b\n",
		     "tab:1: option 'metadata' given twice");
	expect_error("vm1 /dev/x zeroed,,metadata=/dev/y\n",
		     "tab:1: empty option in 'zeroed,,metadata=/dev/y' (options are separated by "
		     "single commas, without spaces)");
	expect_error("vm1 /dev/x zeroed,\n",
		     "tab:1: empty option in 'zeroed,' (options are separated by single commas, "
		     "without spaces)");
	expect_error("vm1 /dev/x metadata=/dev/x\n",
		     "tab:1: metadata=/dev/x is the origin itself: the bitmaps need a block device "
		     "of their own");
	expect_error("a/b /dev/x\n", "tab:1: invalid name 'a/b': it has a '/' (a device-mapper "
		     "name: at most 127 characters, no '/', no leading '.')");
	expect_error(".vm /dev/x\n", "tab:1: invalid name '.vm': it starts with '.' (a "
		     "device-mapper name: at most 127 characters, no '/', no leading '.')");
	expect_error("vm1 /dev/x # metadata=/dev/y\n", NULL);
}

static void test_file_errors(void)
{
	struct bsynctab t;
	int r;

	/* Errors do not stop the parse; line numbers count every line. */
	r = parse("good1 /dev/a\n"
		  "# comment\n"
		  "bad /dev/b foo\n"
		  "\n"
		  "good2 /dev/c metadata=/dev/d\n", &t);
	tap_ok(!r && t.n == 3 && t.nerrors == 1 && !t.v[0].error && !t.v[2].error &&
	       streq(t.v[1].error, "tab:3: unknown option 'foo' (known: metadata=PATH, zeroed)") &&
	       streq(t.v[1].name, "bad") && streq(t.v[1].origin, "/dev/b"),
	       "a bad line is reported with its number, the others are kept");
	bsynctab_free(&t);

	r = parse("vm1 /dev/a\n"
		  "vm2 /dev/b\n"
		  "vm1 /dev/c\n", &t);
	tap_ok(!r && t.n == 3 && t.nerrors == 2 && !t.v[1].error &&
	       streq(t.v[0].error, "tab:1: duplicate name 'vm1' (also on line 3): neither line is "
		     "activated; give each device its own name") &&
	       streq(t.v[2].error, "tab:3: duplicate name 'vm1' (also on line 1): neither line is "
		     "activated; give each device its own name"),
	       "a duplicate name is an error on both lines");
	bsynctab_free(&t);

	r = parse("vm1 /dev/a metadata=/dev/m\n"
		  "vm2 /dev/a\n"
		  "vm3 /dev/b metadata=/dev/m\n"
		  "vm4 /dev/m\n"
		  "vm5 /dev/c metadata=/dev/a\n"
		  "vm6 /dev/d metadata=/dev/e\n", &t);
	tap_ok(!r && t.n == 6 && t.nerrors == 4 && !t.v[0].error && !t.v[5].error,
	       "paths shared between entries: the later lines are errors");
	if (!r && t.n == 6) {
		tap_ok(streq(t.v[1].error, "tab:2: origin /dev/a is already the origin of 'vm1' "
			     "(line 1): a block device can serve one bsync device only"),
		       "an origin declared twice");
		tap_ok(streq(t.v[2].error, "tab:3: metadata device /dev/m is already the metadata "
			     "device of 'vm1' (line 1): a block device can serve one bsync device only"),
		       "a metadata device declared twice");
		tap_ok(streq(t.v[3].error, "tab:4: origin /dev/m is already the metadata device of "
			     "'vm1' (line 1): a block device can serve one bsync device only"),
		       "one's metadata device is another's origin");
		tap_ok(streq(t.v[4].error, "tab:5: metadata device /dev/a is already the origin of "
			     "'vm1' (line 1): a block device can serve one bsync device only"),
		       "one's origin is another's metadata device");
	}
	bsynctab_free(&t);
}

static void test_load(void)
{
	char dir[] = "/tmp/test-bsynctab.XXXXXX", path[64];
	struct bsynctab t;
	FILE *f;
	int r;

	r = bsynctab_load("/nonexistent/bsynctab", &t);
	tap_ok(r == -ENOENT && t.n == 0, "a missing file: -ENOENT (%d)", r);
	bsynctab_free(&t);
	if (!mkdtemp(dir)) {
		tap_ok(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	r = bsynctab_load(dir, &t);
	tap_ok(r == -EISDIR, "a directory: -EISDIR (%d)", r);
	bsynctab_free(&t);
	snprintf(path, sizeof(path), "%s/bsynctab", dir);
	f = fopen(path, "w");
	if (f) {
		fputs("vm1 /dev/a\nvm2 /dev/b bogus\n", f);
		fclose(f);
	}
	r = bsynctab_load(path, &t);
	tap_ok(!r && t.n == 2 && t.nerrors == 1 && t.v[1].error &&
	       !strncmp(t.v[1].error, path, strlen(path)) &&
	       !strcmp(t.v[1].error + strlen(path), ":2: unknown option 'bogus' (known: "
		       "metadata=PATH, zeroed)"),
	       "a file: its path in the messages");
	bsynctab_free(&t);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_good();
	test_line_errors();
	test_file_errors();
	test_load();
	return tap_done();
}
