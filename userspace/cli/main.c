// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: global options and dispatch to the subcommand.
 * See Documentation/bsyncctl.rst.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"

static int verbs_of(const char *noun, char *buf, size_t len)
{
	size_t i, n = 0;
	int k = 0;

	buf[0] = 0;
	for (i = 0; i < cli_ncmds && n < len; i++)
		if (!strcmp(cli_cmds[i].noun, noun) && cli_cmds[i].verb)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", k++ ? ", " : "",
					      cli_cmds[i].verb);
	return k;
}

int main(int argc, char **argv)
{
	struct cli c = { .out = stdout, .err = stderr };
	const struct cli_cmd *cmd;
	int i, r, sub;
	char verbs[256];

	signal(SIGPIPE, SIG_IGN);
	/* Global options before the command. */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--json")) {
			c.json = true;
		} else if (!strcmp(a, "-b") || !strcmp(a, "--bytes")) {
			c.bytes = true;
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			c.quiet = true;
		} else if (!strcmp(a, "-s") || !strcmp(a, "--socket")) {
			if (i + 1 >= argc || !argv[i + 1][0])
				return cli_usage_error(&c, NULL, "option '--socket' needs a path");
			c.socket = argv[++i];
		} else if (!strncmp(a, "--socket=", 9) && a[9]) {
			c.socket = a + 9;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			cli_print_main_help(stdout);
			return EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("bsyncctl %s\n", BSYNCCTL_VERSION);
			return EXIT_OK;
		} else {
			return cli_usage_error(&c, NULL, "unknown option '%s'", a);
		}
	}
	if (i >= argc)
		return cli_usage_error(&c, NULL, "missing command");
	if (!strcmp(argv[i], "help")) {
		if (i + 1 >= argc) {
			cli_print_main_help(stdout);
			return EXIT_OK;
		}
		cmd = cli_find_cmd(argv[i + 1], i + 2 < argc ? argv[i + 2] : NULL);
		if (cmd && (!cmd->verb || i + 2 < argc)) {
			cli_print_help(stdout, cmd);
			return EXIT_OK;
		}
		if (cli_is_noun(argv[i + 1]) && i + 2 >= argc) {
			cli_print_noun_help(stdout, argv[i + 1]);
			return EXIT_OK;
		}
		return cli_usage_error(&c, NULL, "no help for '%s%s%s'", argv[i + 1],
				       i + 2 < argc ? " " : "", i + 2 < argc ? argv[i + 2] : "");
	}
	if (!cli_is_noun(argv[i]))
		return cli_usage_error(&c, NULL, "unknown command '%s'", argv[i]);
	sub = i;
	cmd = cli_find_cmd(argv[i], NULL);
	if (cmd) {
		/* backup, events: the noun is the command */
	} else if (i + 1 >= argc) {
		verbs_of(argv[i], verbs, sizeof(verbs));
		return cli_usage_error(&c, NULL, "%s: missing subcommand (%s)", argv[i], verbs);
	} else if (!strcmp(argv[i + 1], "-h") || !strcmp(argv[i + 1], "--help")) {
		cli_print_noun_help(stdout, argv[i]);
		return EXIT_OK;
	} else {
		cmd = cli_find_cmd(argv[i], argv[i + 1]);
		if (!cmd) {
			verbs_of(argv[i], verbs, sizeof(verbs));
			return cli_usage_error(&c, NULL, "%s: unknown subcommand '%s' (%s)", argv[i],
					       argv[i + 1], verbs);
		}
		sub = i + 1;
	}
	cli_set_what(&c, "%s%s%s", cmd->noun, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
	r = cmd->run(&c, cmd, argc - sub, argv + sub);
	conn_close(&c);
	return r < 0 ? EXIT_OK : r;
}
