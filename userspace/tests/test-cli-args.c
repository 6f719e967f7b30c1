// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: sizes, rates, option parsing, usage errors and the subcommand
 * table.  The CLI's sources are compiled in (all but main.c).
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
	static const struct { const char *s; uint64_t v; } good[] = {
		{ "0", 0 }, { "512", 512 }, { "64K", 65536 }, { "64k", 65536 },
		{ "1M", 1048576 }, { "2G", 2147483648ull }, { "1T", 1ull << 40 },
		{ "4KiB", 4096 }, { "4kib", 4096 }, { "4KB", 4096 }, { "512B", 512 },
		{ "1.5G", 3ull << 29 }, { "0.5K", 512 }, { "1.25M", 1310720 },
		{ "15E", 15ull << 60 }, { "18446744073709551615", UINT64_MAX },
	};
	static const struct { const char *s; int err; } bad[] = {
		{ "", -EINVAL }, { "K", -EINVAL }, { "-1", -EINVAL }, { "+1", -EINVAL },
		{ " 1", -EINVAL }, { "1 K", -EINVAL }, { "64Q", -EINVAL }, { "1.5", -EINVAL },
		{ "0.1K", -EINVAL }, { "1.", -EINVAL }, { "1KK", -EINVAL }, { "1Ki", -EINVAL },
		{ "16E", -ERANGE }, { "18446744073709551616", -ERANGE }, { "0x10", -EINVAL },
		{ "1e3", -EINVAL },
	};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = 1;
		int r = parse_size(good[i].s, &v);

		tap_ok(r == 0 && v == good[i].v, "size '%s' = %llu (got %d, %llu)", good[i].s,
		       (unsigned long long)good[i].v, r, (unsigned long long)v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;
		int r = parse_size(bad[i].s, &v);

		tap_ok(r == bad[i].err && v == 7, "size '%s' is refused with %d (got %d)", bad[i].s,
		       bad[i].err, r);
	}
}

static void test_rates_and_enums(void)
{
	static const char *const modes[] = { "on-success", "never", "always", NULL };
	uint64_t v = 0;
	char buf[64];

	tap_ok(parse_rate("50M/s", &v) == 0 && v == 50ull << 20, "rate 50M/s");
	tap_ok(parse_rate("50MiB/s", &v) == 0 && v == 50ull << 20, "rate 50MiB/s");
	tap_ok(parse_rate("1000", &v) == 0 && v == 1000, "rate 1000");
	tap_ok(parse_rate("/s", &v) == -EINVAL, "rate '/s' refused");
	tap_ok(parse_rate("5M/h", &v) == -EINVAL, "rate 5M/h refused");
	tap_ok(parse_enum("never", modes) == 1, "enum finds never");
	tap_ok(parse_enum("Never", modes) == -1, "enum is case sensitive");
	tap_ok(!strcmp(enum_list(modes, buf, sizeof(buf)), "on-success, never or always"),
	       "enum list reads 'on-success, never or always' (%s)", buf);
}

/* A struct cli whose stdout and stderr are memory buffers. */
struct cap {
	struct cli c;
	char *out, *err;
	size_t outlen, errlen;
};

static void cap_open(struct cap *k)
{
	memset(k, 0, sizeof(*k));
	k->c.out = open_memstream(&k->out, &k->outlen);
	k->c.err = open_memstream(&k->err, &k->errlen);
}

static void cap_close(struct cap *k)
{
	fclose(k->c.out);
	fclose(k->c.err);
}

static void cap_free(struct cap *k)
{
	free(k->out);
	free(k->err);
}

struct seen {
	int ids[8];
	const char *vals[8];
	int n;
};

static int record(void *arg, int id, const char *val)
{
	struct seen *s = arg;

	if (s->n < 8) {
		s->ids[s->n] = id;
		s->vals[s->n++] = val;
	}
	return 0;
}

static void test_parse(void)
{
	static const struct cli_opt opts[] = {
		{ "granularity", 'g', true, 1 },
		{ "disabled", 0, false, 2 },
		{ NULL, 0, false, 0 },
	};
	const struct cli_cmd *cmd = cli_find_cmd("bitmap", "add");
	char a0[] = "add", a1[] = "vm1", a2[] = "-g4K", a3[] = "--json", a4[] = "nb",
	     a5[] = "--disabled", a6[] = "--granularity=1M", a7[] = "--", a8[] = "--x";
	char *argv[] = { a0, a1, a2, a3, a4, a5, a6, a7, a8, NULL };
	struct seen s = { .n = 0 };
	struct cap k;
	char **pos;
	int n = -1, r;

	cap_open(&k);
	r = cli_parse(&k.c, cmd, 9, argv, opts, record, &s, &pos, &n);
	cap_close(&k);
	tap_ok(r == 0, "options anywhere parse (r=%d, err '%s')", r, k.err);
	tap_ok(n == 3 && !strcmp(pos[0], "vm1") && !strcmp(pos[1], "nb") && !strcmp(pos[2], "--x"),
	       "positional arguments in order, '--' ends options (n=%d)", n);
	tap_ok(s.n == 3 && s.ids[0] == 1 && !strcmp(s.vals[0], "4K") && s.ids[1] == 2 &&
	       s.ids[2] == 1 && !strcmp(s.vals[2], "1M"), "-g4K, --disabled, --granularity=1M seen");
	tap_ok(k.c.json, "--json after the subcommand sets json");
	tap_ok(k.outlen == 0 && k.errlen == 0, "nothing printed on success");
	cap_free(&k);
}

/* Run a parse that must fail: its status, and stderr's first line. */
static int parse_fails(const char *noun, const char *verb, const struct cli_opt *opts,
		       char **argv, int argc, char *first, size_t len)
{
	const struct cli_cmd *cmd = cli_find_cmd(noun, verb);
	struct seen s = { .n = 0 };
	struct cap k;
	char **pos;
	int n, r;

	cap_open(&k);
	r = cli_parse(&k.c, cmd, argc, argv, opts, record, &s, &pos, &n);
	cap_close(&k);
	snprintf(first, len, "%.*s", (int)strcspn(k.err, "\n"), k.err);
	tap_ok(strstr(k.err, "\nusage: bsyncctl ") && strstr(k.err, "--help' for more information.\n"),
	       "usage error also prints the usage line and the --help hint");
	cap_free(&k);
	return r;
}

static void test_parse_errors(void)
{
	static const struct cli_opt opts[] = {
		{ "granularity", 'g', true, 1 },
		{ "disabled", 0, false, 2 },
		{ NULL, 0, false, 0 },
	};
	char a0[] = "add", b1[] = "--frob", c1[] = "--granularity", d1[] = "--disabled=yes",
	     e1[] = "-x", f1[] = "-s";
	char *av_b[] = { a0, b1, NULL }, *av_c[] = { a0, c1, NULL }, *av_d[] = { a0, d1, NULL },
	     *av_e[] = { a0, e1, NULL }, *av_f[] = { a0, f1, NULL };
	char first[256];
	int r;

	r = parse_fails("bitmap", "add", opts, av_b, 2, first, sizeof(first));
	tap_ok(r == EXIT_USAGE && !strcmp(first, "bsyncctl: bitmap add: unknown option '--frob'"),
	       "unknown long option: exit 2, '%s'", first);
	r = parse_fails("bitmap", "add", opts, av_c, 2, first, sizeof(first));
	tap_ok(r == EXIT_USAGE &&
	       !strcmp(first, "bsyncctl: bitmap add: option '--granularity' needs a value"),
	       "missing value: exit 2, '%s'", first);
	r = parse_fails("bitmap", "add", opts, av_d, 2, first, sizeof(first));
	tap_ok(r == EXIT_USAGE &&
	       !strcmp(first, "bsyncctl: bitmap add: option '--disabled' takes no value"),
	       "value to a flag: exit 2, '%s'", first);
	r = parse_fails("bitmap", "add", opts, av_e, 2, first, sizeof(first));
	tap_ok(r == EXIT_USAGE && !strcmp(first, "bsyncctl: bitmap add: unknown option '-x'"),
	       "unknown short option: exit 2, '%s'", first);
	r = parse_fails("bitmap", "add", opts, av_f, 2, first, sizeof(first));
	tap_ok(r == EXIT_USAGE &&
	       !strcmp(first, "bsyncctl: bitmap add: option '--socket' needs a value"),
	       "--socket without a path: exit 2, '%s'", first);
}

static void test_want_args(void)
{
	static const char *const names[] = { "DEVICE", "NAME" };
	const struct cli_cmd *cmd = cli_find_cmd("bitmap", "remove");
	struct cap k;
	int r;

	cap_open(&k);
	r = cli_want_args(&k.c, cmd, 1, 2, 2, names);
	cap_close(&k);
	tap_ok(r == EXIT_USAGE && !strncmp(k.err, "bsyncctl: bitmap remove: missing argument NAME\n", 47),
	       "missing argument is named: %.*s", (int)strcspn(k.err, "\n"), k.err);
	cap_free(&k);
	cap_open(&k);
	r = cli_want_args(&k.c, cmd, 3, 2, 2, names);
	cap_close(&k);
	tap_ok(r == EXIT_USAGE && strstr(k.err, "too many arguments (3, at most 2)"),
	       "extra arguments are refused");
	cap_free(&k);
	cap_open(&k);
	r = cli_want_args(&k.c, cmd, 2, 2, 2, names);
	cap_close(&k);
	tap_ok(r == 0 && k.errlen == 0, "the right count passes silently");
	cap_free(&k);
}

static void test_table_of_commands(void)
{
	static const char *const want[][2] = {
		{ "device", "add" }, { "device", "remove" }, { "device", "list" },
		{ "bitmap", "add" }, { "bitmap", "remove" }, { "bitmap", "clear" },
		{ "bitmap", "enable" }, { "bitmap", "disable" }, { "bitmap", "merge" },
		{ "bitmap", "list" }, { "backup", NULL }, { "job", "list" }, { "job", "finalize" },
		{ "job", "cancel" }, { "job", "dismiss" }, { "job", "pause" }, { "job", "resume" },
		{ "job", "wait" }, { "events", NULL }, { "image", "info" }, { "activate", NULL },
		{ "export", "start" }, { "export", "stop" }, { "export", "add" },
		{ "export", "remove" }, { "export", "list" }, { "chain", "verify" }, { "chain", "merge" },
		{ "restore", NULL },
	};
	size_t i, bad = 0;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct cli_cmd *c = cli_find_cmd(want[i][0], want[i][1]);

		tap_ok(c && c->run && (!want[i][1] || !strcmp(c->verb, want[i][1])),
		       "subcommand '%s%s%s' exists", want[i][0], want[i][1] ? " " : "",
		       want[i][1] ? want[i][1] : "");
	}
	tap_ok(cli_ncmds == sizeof(want) / sizeof(want[0]), "no other subcommands (%zu)", cli_ncmds);
	tap_ok(!cli_find_cmd("bitmap", "frob") && !cli_find_cmd("frob", NULL) && !cli_is_noun("frob"),
	       "unknown words are not found");
	/* Every --help fits 80 columns and has no tabs. */
	for (i = 0; i < cli_ncmds; i++) {
		char *buf = NULL, *line, *save = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		cli_print_help(f, &cli_cmds[i]);
		fclose(f);
		for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (strlen(line) > 80 || strchr(line, '\t')) {
				tap_diag("too wide or tabbed: %s", line);
				bad++;
			}
		free(buf);
	}
	tap_ok(bad == 0, "every --help text fits 80 columns, without tabs");
}

int main(void)
{
	test_sizes();
	test_rates_and_enums();
	test_parse();
	test_parse_errors();
	test_want_args();
	test_table_of_commands();
	return tap_done();
}
