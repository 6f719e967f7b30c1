/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the control files of the bsync target share: the shape of a
 * message verb, each file's table of them, and the argument parsing and
 * lookups the verbs have in common.
 *
 *   dm-bsync-ctl.c          finds a verb in the tables and runs it locked
 *   dm-bsync-ctl-bitmap.c   bitmap verbs: add, remove, freeze, unfreeze...
 *   dm-bsync-ctl-session.c  backup session verbs: session_start, _done, _end
 *   dm-bsync-ctl-query.c    queries (list, extents) and the status lines
 *   dm-bsync-ctl-gate.c     the write gate's hold: gate_close, _open, _status
 *   dm-bsync-ctl-args.c     argument parsing and lookups
 *
 * Calls go one way: dm-bsync-target.c -> dm-bsync-ctl.c -> the verb files
 * (the session verbs use the bitmap verbs' freeze) -> dm-bsync-ctl-args.c,
 * and from them down to the write gate, bitmaps, persist and sessions.
 * Nothing below calls back up into the control files.
 */
#ifndef DM_BSYNC_CTL_H
#define DM_BSYNC_CTL_H

#include "dm-bsync.h"

#define msg_err(bt, fmt, ...) \
	DMERR_LIMIT("%s: " fmt, bsync_dev_name(bt), ##__VA_ARGS__)

/*
 * A verb's handler: @verb as the message spelled it, @argc and @argv the
 * arguments after it. Called with the device's control mutex held.
 */
struct bsync_msg {
	const char *verb;
	unsigned int min_args, max_args;	/* after the verb */
	int (*fn)(struct bsync_target *bt, const char *verb, unsigned int argc, char **argv,
		  char *result, unsigned int maxlen);
};

struct bsync_msg_table {
	const struct bsync_msg *msgs;
	unsigned int nr;
};

extern const struct bsync_msg_table bsync_bitmap_msgs;
extern const struct bsync_msg_table bsync_session_msgs;
extern const struct bsync_msg_table bsync_query_msgs;
extern const struct bsync_msg_table bsync_gate_msgs;

/* dm-bsync-ctl-args.c */
int bsync_parse_size(const char *arg, u64 *val);
struct bsync_bitmap *bsync_find_bitmap(struct bsync_state *st, const char *name);
int bsync_msg_get_bitmap(struct bsync_target *bt, const char *verb, const char *name,
			 bool idle, struct bsync_bitmap **out);
int bsync_msg_check_consistent(struct bsync_target *bt, const char *verb,
			       const struct bsync_bitmap *bm);
int bsync_msg_commit(struct bsync_target *bt, const struct bsync_bitmap *bm);
int bsync_msg_parse_range(struct bsync_target *bt, const char *verb, const char *off_arg,
			  const char *len_arg, sector_t *sector, sector_t *nr);
int bsync_msg_get_session(struct bsync_target *bt, const char *verb);

/*
 * dm-bsync-ctl-bitmap.c: freezing a bitmap in two steps, so that a
 * session's start can freeze one at the same instant (see msg_freeze()).
 */
struct bsync_freeze {
	struct bsync_bitmap *bm, *succ, *rem;
	enum bsync_set set;
};

int bsync_freeze_prepare(struct bsync_state *st, struct bsync_bitmap *bm,
			 enum bsync_set set, struct bsync_freeze *f);
void bsync_freeze_commit(struct bsync_state *st, struct bsync_freeze *f);
void bsync_freeze_abort(struct bsync_freeze *f);

#endif
