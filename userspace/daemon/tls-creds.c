// SPDX-License-Identifier: GPL-2.0
/*
 * TLS credentials objects: see tls-creds.h.  Arguments and texts are
 * QEMU's (qapi/qom.json TlsCredsX509Properties / TlsCredsPskProperties,
 * qom/object_interfaces.c, crypto/tlscreds*.c) where the concept is the
 * same; the loading itself is tls.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "tls-creds.h"
#include "tls.h"

struct creds_obj {
	char *id;
	struct tls_creds *creds;
	int users;			/* running NBD servers that use it */
	struct creds_obj *next;
};

static struct creds_obj *objs;

static const char *str_of(json_object *args, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(args, k, &v) && v ? json_object_get_string(v) : NULL;
}

static struct creds_obj *obj_find(const char *id)
{
	struct creds_obj *o;

	for (o = objs; o; o = o->next)
		if (!strcmp(o->id, id))
			return o;
	return NULL;
}

int tls_creds_cmd_object_add(json_object *args, json_object **ret, struct qerr *e)
{
	const char *type = str_of(args, "qom-type"), *id = str_of(args, "id");
	const char *endpoint = str_of(args, "endpoint"), *username = str_of(args, "username");
	struct tls_creds_opts o = { .verify_peer = true };
	struct creds_obj *obj;
	json_object *v;
	char err[1024];

	if (!job_id_valid(id))	/* QEMU's id_wellformed() */
		return qerr_set(e, "Parameter 'id' expects an identifier");
	if (obj_find(id))
		return qerr_set(e, "attempt to add duplicate property '%s' to object (type 'container')",
				id);
	o.kind = !strcmp(type, "tls-creds-psk") ? TLS_PSK : TLS_X509;
	if (o.kind == TLS_X509 && username)
		return qerr_set(e, "Parameter 'username' is unexpected");
	/* QEMU's default endpoint is the client: it must be asked for */
	if (!endpoint || strcmp(endpoint, "server"))
		return qerr_set(e, "Expected TLS credentials for a server endpoint: bsyncd only "
				"serves TLS (pass 'endpoint': 'server')");
	if (o.kind == TLS_PSK && username)
		return qerr_set(e, "username should not be set when endpoint=server");
	if (json_object_object_get_ex(args, "verify-peer", &v) && v)
		o.verify_peer = json_object_get_boolean(v);
	o.dir = str_of(args, "dir");
	o.priority = str_of(args, "priority");
	obj = calloc(1, sizeof(*obj));
	if (!obj || !(obj->id = strdup(id))) {
		free(obj);
		return qerr_set(e, "out of memory");
	}
	obj->creds = tls_creds_load(&o, err, sizeof(err));
	if (!obj->creds) {
		free(obj->id);
		free(obj);
		return qerr_set(e, "%s", err);
	}
	obj->next = objs;
	objs = obj;
	fprintf(stderr, "bsyncd: TLS credentials %s: %s from %s%s\n", id, type, o.dir,
		o.kind == TLS_X509 && !o.verify_peer ? ", clients not verified" : "");
	return 0;
}

int tls_creds_cmd_object_del(json_object *args, json_object **ret, struct qerr *e)
{
	const char *id = str_of(args, "id");
	struct creds_obj **pp, *o;

	for (pp = &objs; *pp && strcmp((*pp)->id, id); pp = &(*pp)->next)
		;
	o = *pp;
	if (!o)
		return qerr_set(e, "object '%s' not found", id);
	if (o->users)
		return qerr_set(e, "object '%s' is in use, can not be deleted", id);
	*pp = o->next;
	tls_creds_free(o->creds);
	free(o->id);
	free(o);
	return 0;
}

const struct tls_creds *tls_creds_get(const char *id, struct qerr *e)
{
	struct creds_obj *o = obj_find(id);

	if (!o) {
		qerr_set(e, "No TLS credentials with id '%s'", id);
		return NULL;
	}
	o->users++;
	return o->creds;
}

void tls_creds_put(const struct tls_creds *c)
{
	struct creds_obj *o;

	for (o = objs; o; o = o->next)
		if (o->creds == c && o->users > 0)
			o->users--;
}

void tls_creds_shutdown(void)
{
	while (objs) {
		struct creds_obj *o = objs;

		objs = o->next;
		tls_creds_free(o->creds);
		free(o->id);
		free(o);
	}
}
