/* SPDX-License-Identifier: GPL-2.0 */
/*
 * /etc/bsynctab: the bsync devices a host brings up at boot (bsyncctl
 * activate), one a line, in the manner of /etc/crypttab:
 *
 *   # NAME  ORIGIN                        [OPTIONS]
 *   vm1     /dev/disk/by-id/wwn-0x5000c5  metadata=/dev/vg0/vm1-bsync,zeroed
 *
 * See Documentation/bsynctab.rst.
 */
#ifndef BSYNCTAB_H
#define BSYNCTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define BSYNCTAB_DEFAULT "/etc/bsynctab"
#define BSYNCTAB_NAME_MAX 127		/* device-mapper's DM_NAME_LEN - 1 */
#define BSYNCTAB_KNOWN_OPTIONS "metadata=PATH, zeroed"

/*
 * One device line.  A line that cannot be used has error set to
 * "FILE:LINE: what is wrong"; its name (the first field) is still given,
 * origin may be NULL.
 */
struct bsynctab_entry {
	unsigned int line;
	char *name;
	char *origin;
	char *metadata;		/* metadata=PATH, or NULL */
	bool zeroed;
	char *error;
};

struct bsynctab {
	char *path;
	struct bsynctab_entry *v;
	size_t n, cap;
	size_t nerrors;		/* entries with an error */
};

/*
 * Parse f (named path in messages) into t, which the caller frees with
 * bsynctab_free() whatever the result.  Errors in the text are kept in the
 * entries, not returned: 0, or -ENOMEM / -EIO.  Duplicate names are an
 * error on every line that has one; an origin or metadata path declared
 * twice is an error on the later line.
 */
int bsynctab_parse(FILE *f, const char *path, struct bsynctab *t);
/* Open path and parse it; -errno if it cannot be read. */
int bsynctab_load(const char *path, struct bsynctab *t);
void bsynctab_free(struct bsynctab *t);

#endif
