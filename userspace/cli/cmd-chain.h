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
	/* the checksum record beside the image (cmd-chain-sums.c) */
	enum { SUMS_UNCHECKED, SUMS_NONE, SUMS_CHECKED, SUMS_UNREADABLE } sums;
	uint64_t sums_clusters;		/* data clusters read and compared */
	uint64_t sums_bad;		/* differing, or without a checksum */
	uint64_t sums_extra;		/* recorded, not in the image */
#define CHAIN_BAD_OFFSETS 16
	uint64_t bad_off[CHAIN_BAD_OFFSETS];	/* guest offsets of the first bad ones */
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

/* Set l's problem, unless it has one already (the first is the one told). */
__attribute__((format(printf, 3, 4)))
void chain_problem(struct link *l, int status, const char *fmt, ...);

/*
 * Check the data clusters of the sound image l (opened as r) against its
 * checksum record, if it has one: the result in l (a problem if they
 * disagree).
 */
void chain_check_sums(struct link *l, struct qcow2_reader *r);
/* l's checksums for --json (NULL: no record) and for the table. */
json_object *chain_sums_json(const struct link *l);
const char *chain_sums_text(const struct link *l, char *buf, size_t len);

/* Free what verify_or_refuse() filled in. */
void verify_free(struct verify *v);

/*
 * Open and check the chain of tip into v (as chain verify does, see
 * verify_chain() in cmd-chain.c, data against checksum records included);
 * when it is not valid, each problem printed and
 * "<what>: the chain of TIP is not valid<refusal>" (refusal says what was
 * not done): the commands that act only on a valid chain start with it.
 * 0 with v to be freed, else the exit status (v freed).
 */
int verify_or_refuse(struct cli *c, const char *tip, struct verify *v, bool as_base,
		     const char *refusal);

#endif
