/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QMP transaction (QEMU's qapi/transaction.json, blockdev.c
 * qmp_transaction()): bitmap actions and drive-backups that all take
 * effect at one instant across the bsync devices they name, or none does.
 */
#ifndef BSYNCD_TRANSACTION_H
#define BSYNCD_TRANSACTION_H

#include <json-c/json.h>

#include "qmp-server.h"

/*
 * The name prefix of the bitmaps a transaction keeps to undo a clear or a
 * merge; a daemon that died mid-transaction leaves them, and recovery
 * removes them.
 */
#define TXN_TMP_PREFIX "bsyncd.txn."

#define TXN_GATE_TIMEOUT_MS_DEFAULT 5000u
#define TXN_GATE_TIMEOUT_MS_MAX 60000u

/*
 * How long the write gates may stay closed (bsyncd --gate-timeout): the
 * kernel opens a gate by itself after that, which fails the transaction.
 */
void transaction_set_gate_timeout(unsigned int ms);

/* The QMP command (lock held). */
int transaction_cmd(json_object *args, json_object **ret, struct qerr *e);

#endif
