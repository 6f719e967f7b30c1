// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: the command line.
 *
 * Only arguments, usage and which command runs: opening and loading the
 * device is the same for every command (bsync-metadata-core.c,
 * bsync-metadata-check.c), and each command's output and exit status are
 * its own file's.  It lives apart from main() (bsync-metadata.c) so that
 * the unit tests run the real command line in-process.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bsync-metadata-internal.h"

static const char usage_text[] =
	"usage: bsync-metadata check DEVICE\n"
	"       bsync-metadata dump DEVICE [--json]\n"
	"       bsync-metadata repair DEVICE\n";

static const char help_text[] =
	"\n"
	"Check, show or repair the metadata device of a bsync target (its\n"
	"persistent dirty bitmaps) while no bsync device uses it. DEVICE is a\n"
	"block device (opened exclusively) or an image file.\n"
	"\n"
	"  check    validate both superblocks, the bitmaps' checksums and the log;\n"
	"           print one line per problem\n"
	"  dump     print the superblock, each bitmap after log replay (its\n"
	"           dirty extents as OFFSET:LENGTH in bytes) and the problems;\n"
	"           --json for a JSON object\n"
	"  repair   write a fresh, clean commit of what can be trusted: the log\n"
	"           replayed into the bits, bitmaps that may miss writes marked\n"
	"           inconsistent, the next generation in the other superblock\n"
	"\n"
	"Exit status: 0 consistent (check) or done; 1 problems found (check),\n"
	"no valid superblock (dump, repair); 2 usage or I/O error.\n";

__attribute__((format(printf, 2, 3)))
static int usage_error(FILE *err, const char *fmt, ...)
{
	va_list ap;

	fprintf(err, "bsync-metadata: ");
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fprintf(err, "\n%sTry 'bsync-metadata --help' for more information.\n", usage_text);
	return BMD_EXIT_USAGE;
}

int bsync_metadata_main(int argc, char **argv, FILE *out, FILE *err)
{
	const char *cmd = NULL, *dev = NULL;
	bool json = false, rw;
	struct md m;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fprintf(out, "%s%s", usage_text, help_text);
			return BMD_EXIT_OK;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (a[0] == '-' && a[1]) {
			return usage_error(err, "unknown option '%s'", a);
		} else if (!cmd) {
			cmd = a;
		} else if (!dev) {
			dev = a;
		} else {
			return usage_error(err, "unexpected argument '%s'", a);
		}
	}
	if (!cmd)
		return usage_error(err, "%s", "no command given");
	if (strcmp(cmd, "check") && strcmp(cmd, "dump") && strcmp(cmd, "repair"))
		return usage_error(err, "unknown command '%s' (check, dump or repair)", cmd);
	if (!dev)
		return usage_error(err, "%s: no device given", cmd);
	if (json && strcmp(cmd, "dump"))
		return usage_error(err, "%s: --json is only for dump", cmd);

	rw = !strcmp(cmd, "repair");
	if (bmd_open(&m, dev, rw, err))
		return BMD_EXIT_USAGE;
	if (bmd_load(&m, err)) {
		bmd_close(&m);
		return BMD_EXIT_USAGE;
	}
	if (!strcmp(cmd, "dump"))
		rc = bmd_dump(&m, json, out);
	else if (!strcmp(cmd, "check"))
		rc = bmd_check(&m, out, err);
	else
		rc = bmd_repair(&m, out, err);
	bmd_close(&m);
	return rc;
}
