// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: human sizes and durations, table layout, JSON output, error
 * lines and the progress bar.  The CLI's sources are compiled in (all but
 * main.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "../cli/args.c"
#include "../cli/bsynctab.c"
#include "../cli/cmd-activate.c"
#include "../cli/cmd-backup.c"
#include "../cli/cmd-bitmap.c"
#include "../cli/cmd-chain-merge.c"
#include "../cli/cmd-chain-sums.c"
#include "../cli/cmd-chain.c"
#include "../cli/cmd-device.c"
#include "../cli/cmd-export.c"
#include "../cli/cmd-image.c"
#include "../cli/cmd-job.c"
#include "../cli/cmd-restore.c"
#include "../cli/commands.c"
#include "../cli/conn.c"
#include "../cli/output.c"
#include "../cli/progress.c"

static void test_sizes(void)
{
	static const struct { uint64_t v; const char *s; } cases[] = {
		{ 0, "0 B" }, { 512, "512 B" }, { 1023, "1023 B" }, { 1024, "1 KiB" },
		{ 1536, "1.50 KiB" }, { 65536, "64 KiB" }, { 2097152, "2 MiB" },
		{ 15ull << 19, "7.50 MiB" }, { (155ull << 20) + 1, "155 MiB" },
		{ 1ull << 40, "1 TiB" }, { (1ull << 20) - 1, "1.00 MiB" },
		{ 268435456, "256 MiB" }, { UINT64_MAX, "16.0 EiB" },
	};
	static const struct { double s; const char *f; } durs[] = {
		{ 0, "0:00" }, { 4.4, "0:04" }, { 59.6, "1:00" }, { 750, "12:30" },
		{ 3723, "1:02:03" }, { -1, "--:--" },
	};
	struct cli c = { .bytes = true };
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_ok(!strcmp(fmt_size(cases[i].v, buf, sizeof(buf)), cases[i].s),
		       "%llu bytes read '%s' (got '%s')", (unsigned long long)cases[i].v,
		       cases[i].s, buf);
	tap_ok(!strcmp(fmt_size_c(&c, 65536, buf, sizeof(buf)), "65536"), "--bytes gives 65536");
	c.bytes = false;
	tap_ok(!strcmp(fmt_size_c(&c, 65536, buf, sizeof(buf)), "64 KiB"), "else 64 KiB");
	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++)
		tap_ok(!strcmp(fmt_duration(durs[i].s, buf, sizeof(buf)), durs[i].f),
		       "%.1f s reads '%s' (got '%s')", durs[i].s, durs[i].f, buf);
}

static void test_table(void)
{
	static const char *const head[] = { "NAME", "SIZE", "PATH" };
	static const enum align align[] = { ALIGN_LEFT, ALIGN_RIGHT, ALIGN_LEFT };
	static const char *const r1[] = { "vm1", "256 MiB", "/dev/mapper/vm1" };
	static const char *const r2[] = { "database-01", "2 TiB", "/dev/mapper/database-01" };
	static const char want[] =
		"NAME            SIZE  PATH\n"
		"vm1          256 MiB  /dev/mapper/vm1\n"
		"database-01    2 TiB  /dev/mapper/database-01\n";
	struct table t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	table_init(&t, 3, head, align);
	tap_ok(table_add(&t, r1) == 0 && table_add(&t, r2) == 0, "rows added");
	table_print(&t, f);
	fclose(f);
	tap_ok(!strcmp(buf, want), "columns aligned, numbers right, no trailing blanks");
	if (strcmp(buf, want))
		tap_diag("got:\n%s", buf);
	table_free(&t);
	free(buf);

	/* An empty table is just its header. */
	buf = NULL;
	f = open_memstream(&buf, &len);
	table_init(&t, 3, head, align);
	table_print(&t, f);
	fclose(f);
	tap_ok(!strcmp(buf, "NAME  SIZE  PATH\n"), "an empty table prints its header");
	table_free(&t);
	free(buf);
}

static void test_json(void)
{
	static const char src[] =
		"[{\"node-name\": \"vm1\", \"size\": 268435456, \"file\": \"/dev/mapper/vm1\","
		" \"dirty-bitmaps\": [{\"name\": \"a/b\", \"count\": 65536, \"busy\": false}]}]";
	json_object *in = json_tokener_parse(src), *back;
	struct cli c = { 0 };
	char *buf = NULL;
	size_t len = 0;

	c.out = open_memstream(&buf, &len);
	print_json(&c, in);
	fclose(c.out);
	back = json_tokener_parse(buf);
	tap_ok(back && json_object_equal(in, back), "--json output parses back to the same data");
	tap_ok(len && buf[len - 1] == '\n' && !has_control_chars(buf, len),
	       "--json output ends with a newline and has no control characters");
	tap_ok(strstr(buf, "\"a/b\"") != NULL, "slashes are not escaped");
	json_object_put(in);
	json_object_put(back);
	free(buf);
}

static void test_errors(void)
{
	struct cli c = { 0 };
	char *buf = NULL;
	size_t len = 0;

	c.err = open_memstream(&buf, &len);
	cli_set_what(&c, "bitmap add %s %s", "vm1", "nightly");
	cli_error(&c, "%s: %s", c.what, "Bitmap already exists: nightly");
	fclose(c.err);
	tap_ok(!strcmp(buf, "bsyncctl: bitmap add vm1 nightly: Bitmap already exists: nightly\n"),
	       "error line is 'bsyncctl: <what failed>: <why>' (%.*s)", (int)strcspn(buf, "\n"), buf);
	free(buf);
}

static void test_progress(void)
{
	struct progress p;
	char line[512];
	int w, bad = 0;

	tap_ok(!has_control_chars("ok\n", 3) && has_control_chars("\r", 1) &&
	       has_control_chars("\033[K", 3), "control characters are spotted");

	progress_init(&p, 100.0);
	tap_ok(p.rate < 0 && progress_eta(&p, 0, 100) < 0, "no rate, no ETA before a sample");
	progress_update(&p, 101.0, 10 << 20);
	tap_ok(p.rate > 10.4e6 && p.rate < 10.5e6, "first sample: 10 MiB/s (%.0f)", p.rate);
	tap_ok(progress_eta(&p, 10 << 20, 20 << 20) > 0.99 && progress_eta(&p, 10 << 20, 20 << 20) < 1.01,
	       "10 MiB left at 10 MiB/s: ETA 1 s");
	progress_update(&p, 101.01, 11 << 20);
	tap_ok(p.rate > 10.4e6 && p.rate < 10.5e6, "samples closer than 50 ms are ignored");
	progress_update(&p, 102.0, 9 << 20);
	tap_ok(p.rate > 10.4e6 && p.rate < 10.5e6, "progress going back is ignored");
	progress_update(&p, 102.0, 10 << 20);
	tap_ok(p.rate > 6.9e6 && p.rate < 7.0e6,
	       "a 1 s stall takes a third off the rate, not all of it (%.0f)", p.rate);
	tap_ok(progress_eta(&p, 5, 5) == 0, "ETA 0 when done");

	progress_format(line, sizeof(line), 80, 108 << 20, 256 << 20, 35.2 * 1048576, 4.2);
	tap_ok(strchr(line, '[') == line && strstr(line, "] ") && strstr(line, " 42%") &&
	       strstr(line, "108 MiB / 256 MiB") && strstr(line, "35.2 MiB/s") &&
	       strstr(line, "ETA  0:04"), "bar, percent, amounts, rate and ETA: %s", line);
	tap_ok(strlen(line) <= 80, "fits 80 columns (%zu)", strlen(line));
	{
		/* The bar keeps its length while the numbers change. */
		size_t bar0 = strcspn(line, "]"), bars = 0;
		static const uint64_t dones[] = { 0, 1536, 9 << 20, 100 << 20, 256 << 20 };
		static const double rates[] = { -1, 512, 1.5 * 1048576, 99.9 * 1048576, 1e9 };

		for (size_t i = 0; i < 5; i++) {
			progress_format(line, sizeof(line), 80, dones[i], 256 << 20, rates[i], i * 7.0);
			bars += strcspn(line, "]") == bar0;
		}
		tap_ok(bars == 5, "the bar's length does not change with the numbers");
	}
	for (w = 1; w <= 200; w++) {
		progress_format(line, sizeof(line), w, (uint64_t)w << 20, 200ull << 20, -1, -1);
		if ((int)strlen(line) > w || has_control_chars(line, strlen(line)))
			bad++;
	}
	tap_ok(bad == 0, "at every width from 1 to 200 the line fits and has no control characters");
	progress_format(line, sizeof(line), 80, 0, 0, -1, -1);
	tap_ok(strstr(line, "  0%") && strstr(line, "--/s") && strstr(line, "ETA --:--"),
	       "unknown total, rate and ETA: %s", line);
	progress_format(line, 16, 80, 1, 2, -1, -1);
	tap_ok(strlen(line) <= 15, "a short buffer is never overrun");
}

/*
 * "--parse": for the guest tests, read stdin and parse it with json-c as
 * bsyncctl's --json output must be parsed: one value per line (events) or
 * one value in all; print each back on a line.  Exit 1 if any fails.
 */
static int parse_stdin(void)
{
	json_tokener *tok = json_tokener_new();
	char buf[65536];
	size_t len = 0, n, pos = 0;
	int values = 0;

	while ((n = fread(buf + len, 1, sizeof(buf) - 1 - len, stdin)) > 0)
		len += n;
	buf[len] = 0;
	while (pos < len) {
		json_object *o;

		while (pos < len && strchr(" \t\r\n", buf[pos]))
			pos++;
		if (pos == len)
			break;
		o = json_tokener_parse_ex(tok, buf + pos, (int)(len - pos));
		if (!o) {
			fprintf(stderr, "json-c: %s at byte %zu\n",
				json_tokener_error_desc(json_tokener_get_error(tok)), pos);
			json_tokener_free(tok);
			return 1;
		}
		pos += json_tokener_get_parse_end(tok);
		json_tokener_reset(tok);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		values++;
	}
	json_tokener_free(tok);
	return values ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--parse"))
		return parse_stdin();
	test_sizes();
	test_table();
	test_json();
	test_errors();
	test_progress();
	return tap_done();
}
