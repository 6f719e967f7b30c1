/* SPDX-License-Identifier: GPL-2.0 */
/*
 * NBD exports and their life (QEMU's qapi/block-export.json): the QMP
 * commands nbd-server-start/-stop, block-export-add/-del,
 * query-block-exports and the BLOCK_EXPORT_DELETED event.  An export of a
 * bsync device is its point-in-time view: block-export-add starts a
 * fleecing job (backup.h, backup_fleece()) that holds the instant, and the
 * export's bitmap context is the bitmap frozen then; deleting the export
 * ends the job, whose end applies the bitmap rule.  The protocol is
 * nbd-server.h's.
 *
 * The commands are called with the daemon lock held, like every QMP
 * command; 0 or -1 with e set.
 */
#ifndef BSYNCD_NBD_EXPORT_H
#define BSYNCD_NBD_EXPORT_H

#include <json-c/json.h>

#include "qmp-server.h"

int nbd_export_cmd_server_start(json_object *args, json_object **ret, struct qerr *e);
int nbd_export_cmd_server_stop(json_object *args, json_object **ret, struct qerr *e);
int nbd_export_cmd_add(json_object *args, json_object **ret, struct qerr *e);
int nbd_export_cmd_del(json_object *args, json_object **ret, struct qerr *e);
int nbd_export_cmd_query(json_object *args, json_object **ret, struct qerr *e);

/* At exit (lock not held): delete every export, stop the server. */
void nbd_export_shutdown(void);

#endif
