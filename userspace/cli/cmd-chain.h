/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cmd-chain.c's walk of a backup chain, for the commands that act on a
 * chain only once it is valid: restore (cmd-restore.c) and chain merge
 * (cmd-chain-merge.c).  What "valid" means is said at the top of
 * cmd-chain.c.
 */
#ifndef CMD_CHAIN_H
#define CMD_CHAIN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bsyncctl.h"
#include "qcow2-read.h"

/* One link's findings. */
struct link {
	const char *path;
	const struct qcow2_info *info;	/* NULL: not opened (or raw) */
	bool raw;
	uint64_t size;
	struct qcow2_check chk;
	int status;			/* EXIT_OK, EXIT_FAILED or EXIT_CHAIN_* */
	char problem[640];
	char hint[512];
	char note[256];			/* not a problem: leaks, a partial valid link */
};

struct verify {
	struct qcow2_chain chain;
	struct link *links;
	size_t n;
	int status;			/* the first problem's, from the tip */
	bool as_base;			/* the tip is to be the next backup's base */
	char failed[PATH_MAX];
};

/* What restore and merge read of a chain at a time. */
#define CHAIN_CHUNK (1u << 20)

/* Free what verify_or_refuse() filled in. */
void verify_free(struct verify *v);

/*
 * Open and check the chain of tip into v (as chain verify does, see
 * verify_chain() in cmd-chain.c); when it is not valid, each problem printed and
 * "<what>: the chain of TIP is not valid<refusal>" (refusal says what was
 * not done): the commands that act only on a valid chain start with it.
 * 0 with v to be freed, else the exit status (v freed).
 */
int verify_or_refuse(struct cli *c, const char *tip, struct verify *v, bool as_base,
		     const char *refusal);

#endif
