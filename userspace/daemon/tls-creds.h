/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TLS credentials as QMP objects (QEMU's qapi/qom.json): object-add of
 * qom-type tls-creds-x509 or tls-creds-psk loads a directory's files
 * (tls.h) under an id, object-del drops them unless a running NBD server
 * uses them, and nbd-server-start's tls-creds names them.  Only the
 * server endpoint exists here: bsyncd is never a TLS client.
 *
 * Everything is called with the daemon lock held, like every QMP command.
 */
#ifndef BSYNCD_TLS_CREDS_H
#define BSYNCD_TLS_CREDS_H

#include <json-c/json.h>

#include "qmp-server.h"

struct tls_creds;

int tls_creds_cmd_object_add(json_object *args, json_object **ret, struct qerr *e);
int tls_creds_cmd_object_del(json_object *args, json_object **ret, struct qerr *e);

/*
 * The credentials called id, marked in use (object-del refuses them until
 * tls_creds_put()); NULL with e set (QEMU's texts).
 */
const struct tls_creds *tls_creds_get(const char *id, struct qerr *e);
void tls_creds_put(const struct tls_creds *c);

/* At exit: free every object. */
void tls_creds_shutdown(void);

#endif
