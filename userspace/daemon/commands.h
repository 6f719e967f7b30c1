/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QMP commands: the table, argument checks (types, required, unexpected,
 * enums, with QEMU's texts), and dispatch to nodes, bitmaps and jobs.
 */
#ifndef BSYNCD_COMMANDS_H
#define BSYNCD_COMMANDS_H

#include "qmp-server.h"

/* qmp_dispatch_fn for qmp_server_start(). */
int commands_dispatch(const char *cmd, json_object *args, json_object **ret, struct qerr *e);

#endif
