/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QMP commands: the table, argument checks (types, required, unexpected,
 * enums, with QEMU's texts), and dispatch to nodes, bitmaps and jobs.
 */
#ifndef BSYNCD_COMMANDS_H
#define BSYNCD_COMMANDS_H

#include <stdbool.h>

#include "backup.h"
#include "node.h"
#include "qmp-server.h"

/* qmp_dispatch_fn for qmp_server_start(). */
int commands_dispatch(const char *cmd, json_object *args, json_object **ret, struct qerr *e);

/*
 * For transaction actions (transaction.c), which are these commands:
 * check args against cmd's schema; run cmd (args checked); the
 * drive-backup arguments, checked, into *a (pointing into args); a bitmap
 * that exists, is not busy and, if consistent, may not miss writes.
 * 0 or -1 with e set.
 */
int commands_check(const char *cmd, json_object *args, struct qerr *e);
int commands_call(const char *cmd, json_object *args, struct qerr *e);
int commands_backup_args(json_object *args, struct backup_args *a, struct qerr *e);
int commands_bitmap_usable(const char *node, const char *name, bool consistent,
			   struct node_bitmap *b, struct qerr *e);

#endif
