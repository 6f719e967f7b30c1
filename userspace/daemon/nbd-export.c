// SPDX-License-Identifier: GPL-2.0
/*
 * NBD exports: see nbd-export.h.  Texts are QEMU's (blockdev-nbd.c,
 * block/export/export.c, nbd/server.c nbd_export_create()) where the
 * concept is the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copyset.h"
#include "fleece.h"
#include "job.h"
#include "nbd-export.h"
#include "nbd-server.h"
#include "node.h"
#include "tls-creds.h"

struct export {
	char *id;
	char *node;
	char *bitmap;			/* the bitmap's name on the node */
	struct nbd_exp nx;		/* what the server sees */
	struct nbd_run *runs;
	struct backup_job *job;		/* the fleecing job holding the instant */
	struct export *next;
};

static struct export *exports;
static const struct tls_creds *server_tls;	/* the running server's, in use */

static bool has(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && v;
}

static struct export *export_find(const char *id)
{
	struct export *x;

	for (x = exports; x; x = x->next)
		if (!strcmp(x->id, id))
			return x;
	return NULL;
}

static void export_free(struct export *x)
{
	free(x->id);
	free(x->node);
	free(x->bitmap);
	free(x->runs);
	free(x->nx.readmap);
	free(x);
}

/*
 * Lock held.  Hide the export, drop (hard) or wait for its connections,
 * end its fleecing job: a success if clients read every dirty cluster of
 * the exported bitmap (the bitmap rule then clears them), else a failure
 * (the bitmap keeps them).
 */
static void export_delete(struct export *x, bool hard)
{
	struct export **pp;
	json_object *d;
	bool ok;

	for (pp = &exports; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	nbd_server_remove(&x->nx, hard);
	close(x->nx.fd);
	ok = nbd_exp_all_read(&x->nx);
	if (x->job) {
		char why[BITMAP_NAME_MAX + 160];

		snprintf(why, sizeof(why), "export '%s' was deleted before clients read every dirty "
			 "cluster of bitmap '%s': the bitmap keeps its bits", x->id,
			 x->bitmap ? x->bitmap : "");
		backup_fleece_end(x->job, ok, ok ? NULL : why);
	}
	fprintf(stderr, "bsyncd: export %s of %s deleted%s\n", x->id, x->node,
		x->bitmap ? (ok ? ": every dirty cluster was read" :
			     ": not every dirty cluster was read") : "");
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(x->id));
	qmp_event("BLOCK_EXPORT_DELETED", d);
	export_free(x);
}

/* The fleecing job was cancelled (job-cancel, daemon exit): lock held. */
static void export_job_cancelled(void *arg)
{
	export_delete(arg, true);
}

/*
 * nbd-server-start: addr is SocketAddress ({type, path}) or, as QEMU's
 * nbd-server-start takes it, SocketAddressLegacy ({type, data: {path}}).
 */
int nbd_export_cmd_server_start(json_object *args, json_object **ret, struct qerr *e)
{
	json_object *addr = json_object_object_get(args, "addr"), *data, *v;
	struct nbd_server_opts o = { 0 };
	const char *type;
	char err[512];
	int64_t maxc = 0;

	if (json_object_object_get_ex(args, "max-connections", &v)) {
		maxc = json_object_get_int64(v);
		if (maxc < 0 || maxc > UINT32_MAX)
			return qerr_set(e, "Parameter 'max-connections' expects uint32");
	}
	type = json_str_member(addr, "type");
	if (!type)
		return qerr_set(e, "Parameter 'addr.type' is missing");
	data = addr;
	if (json_object_object_get_ex(addr, "data", &v) && json_object_is_type(v, json_type_object))
		data = v;
	if (has(args, "tls-authz"))
		return qerr_set(e, "'tls-authz' is not supported by bsyncd's NBD server: with "
				"tls-creds-x509 and 'verify-peer' (the default) it lets in the clients "
				"whose certificate the CA in 'dir' signed; with tls-creds-psk those "
				"with a key in keys.psk");
	if (nbd_server_running())
		return qerr_set(e, "NBD server already running");
	if (!strcmp(type, "unix")) {
		o.unix_path = json_str_member(data, "path");
		if (!o.unix_path)
			return qerr_set(e, "Parameter 'addr.path' is missing");
	} else if (!strcmp(type, "inet")) {
		json_object *allow = json_object_object_get(args, "x-allow-tcp-loopback");

		o.host = json_str_member(data, "host");
		o.port = json_str_member(data, "port");
		if (!o.host)
			return qerr_set(e, "Parameter 'addr.host' is missing");
		if (!o.port)
			return qerr_set(e, "Parameter 'addr.port' is missing");
		if (!json_str_member(args, "tls-creds") && (!allow || !json_object_get_boolean(allow)))
			return qerr_set(e, "NBD over TCP needs TLS: pass 'tls-creds' (the id of a "
					"tls-creds-x509 or tls-creds-psk object-add'ed with endpoint "
					"'server'), serve a Unix socket, or pass 'x-allow-tcp-loopback': "
					"true to serve a loopback address without TLS");
	} else if (!strcmp(type, "vsock") || !strcmp(type, "fd")) {
		return qerr_set(e, "bsyncd's NBD server listens on 'unix' or 'inet' addresses, not '%s'",
				type);
	} else {
		return qerr_set(e, "Parameter 'addr.type' does not accept value '%s'", type);
	}
	o.max_connections = (unsigned)maxc;
	if (json_str_member(args, "tls-creds") && !(o.tls = tls_creds_get(json_str_member(args, "tls-creds"), e)))
		return -1;
	if (nbd_server_start(&o, err, sizeof(err))) {
		if (o.tls)
			tls_creds_put(o.tls);
		return qerr_set(e, "%s", err);
	}
	server_tls = o.tls;
	fprintf(stderr, "bsyncd: NBD server listening on %s%s%s%s%s\n",
		o.unix_path ? o.unix_path : o.host, o.unix_path ? "" : ":", o.unix_path ? "" : o.port,
		o.tls ? ", TLS required with " : "", o.tls ? json_str_member(args, "tls-creds") : "");
	return 0;
}

int nbd_export_cmd_server_stop(json_object *args, json_object **ret, struct qerr *e)
{
	if (!nbd_server_running())
		return qerr_set(e, "NBD server not running");
	while (exports)
		export_delete(exports, true);
	nbd_server_stop();
	if (server_tls)
		tls_creds_put(server_tls);
	server_tls = NULL;
	fprintf(stderr, "bsyncd: NBD server stopped\n");
	return 0;
}

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
	return job_id_valid(id);
}

/* The one bitmap of bitmaps[] (a name, or {node, name} on the exported node). */
static int export_bitmap(json_object *args, const char *node, const char **bitmap, struct qerr *e)
{
	json_object *a = json_object_object_get(args, "bitmaps"), *b;
	size_t n;

	*bitmap = NULL;
	if (!a)
		return 0;
	n = json_object_array_length(a);
	if (n > 1)
		return qerr_set(e, "bsyncd exports one bitmap per export (the one frozen at the "
				"export's instant), not %zu", n);
	if (!n)
		return 0;
	b = json_object_array_get_idx(a, 0);
	if (json_object_is_type(b, json_type_string)) {
		*bitmap = json_object_get_string(b);
	} else if (json_object_is_type(b, json_type_object) && json_str_member(b, "node") && json_str_member(b, "name")) {
		if (strcmp(json_str_member(b, "node"), node))
			return qerr_set(e, "Bitmap '%s' is not found: bsyncd exports bitmaps of the "
					"exported node '%s' only", json_str_member(b, "name"), node);
		*bitmap = json_str_member(b, "name");
	} else {
		return qerr_set(e, "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr");
	}
	return 0;
}

static int export_name_taken(const char *name)
{
	struct export *x;

	for (x = exports; x; x = x->next)
		if (!strcmp(x->nx.name, name))
			return 1;
	return 0;
}

/* The export's view of the job's instant: its fd, size, dirty runs, read map. */
static int export_open(struct export *x, struct qerr *e)
{
	const struct run *r;
	char path[256];
	size_t n, i;

	backup_fleece_view(x->job, path, sizeof(path), &x->nx.size, &x->nx.granularity);
	x->nx.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (x->nx.fd < 0)
		return qerr_set(e, "cannot open the point-in-time view %s: %s", path, strerror(errno));
	r = backup_fleece_dirty(x->job, &n);
	if (x->bitmap) {
		uint64_t ngran = (x->nx.size + x->nx.granularity - 1) / x->nx.granularity;

		x->runs = calloc(n ? n : 1, sizeof(*x->runs));
		x->nx.readmap = calloc((ngran + 63) / 64 ? (ngran + 63) / 64 : 1, sizeof(uint64_t));
		if (!x->runs || !x->nx.readmap)
			return qerr_set(e, "out of memory for the export's bitmap");
		for (i = 0; i < n; i++)
			x->runs[i] = (struct nbd_run){ r[i].off, r[i].len };
		x->nx.dirty = x->runs;
		x->nx.ndirty = n;
		x->nx.bitmap = x->bitmap;
	}
	return 0;
}

int nbd_export_cmd_add(json_object *args, json_object **ret, struct qerr *e)
{
	const char *id = json_str_member(args, "id"), *node = json_str_member(args, "node-name");
	const char *name = json_str_member(args, "name"), *bitmap;
	json_object *v;
	struct export *x;
	int r;

	if (!id_wellformed(id))
		return qerr_set(e, "Invalid block export id");
	if (export_find(id))
		return qerr_set(e, "Block export id '%s' is already in use", id);
	r = node_exists(node);
	if (r < 0)
		return qerr_set(e, "cannot look up node '%s': %s", node, strerror(-r));
	if (!r)
		return qerr_set(e, "Cannot find device='' nor node-name='%s'", node);
	if (json_object_object_get_ex(args, "writable", &v) && json_object_get_boolean(v))
		return qerr_set(e, "bsyncd exports a point-in-time view, which is read-only: "
				"'writable' must be false");
	if (json_object_object_get_ex(args, "allocation-depth", &v) && json_object_get_boolean(v))
		return qerr_set(e, "'allocation-depth' is not supported by bsyncd: a bsync device has "
				"no backing chain (every block is at depth 1)");
	if (!nbd_server_running())
		return qerr_set(e, "NBD server not running");
	if (!name)
		name = node;
	if (strlen(name) > NBD_MAX_NAME)
		return qerr_set(e, "export name '%s' too long", name);
	if (export_name_taken(name))
		return qerr_set(e, "NBD server already has export named '%s'", name);
	if (export_bitmap(args, node, &bitmap, e))
		return -1;
	x = calloc(1, sizeof(*x));
	if (!x)
		return qerr_set(e, "out of memory");
	x->nx.fd = -1;
	x->id = strdup(id);
	x->node = strdup(node);
	x->bitmap = bitmap ? strdup(bitmap) : NULL;
	snprintf(x->nx.name, sizeof(x->nx.name), "%s", name);
	if (!x->id || !x->node || (bitmap && !x->bitmap)) {
		export_free(x);
		return qerr_set(e, "out of memory");
	}
	/* the instant: a fleecing job named after the export */
	x->job = backup_fleece(id, node, bitmap, export_job_cancelled, x, e);
	if (!x->job) {
		export_free(x);
		return -1;
	}
	if (export_open(x, e)) {
		if (x->nx.fd >= 0)
			close(x->nx.fd);
		backup_fleece_end(x->job, false, e->desc);
		export_free(x);
		return -1;
	}
	x->next = exports;
	exports = x;
	nbd_server_add(&x->nx);
	fprintf(stderr, "bsyncd: export %s: %s as '%s'%s%s, %" PRIu64 " bytes%s\n", id, node,
		x->nx.name, bitmap ? " with qemu:dirty-bitmap:" : "", bitmap ? bitmap : "",
		x->nx.size, bitmap ? "" : ", no bitmap");
	return 0;
}

int nbd_export_cmd_del(json_object *args, json_object **ret, struct qerr *e)
{
	const char *id = json_str_member(args, "id"), *mode = json_str_member(args, "mode");
	struct export *x = export_find(id);
	bool hard = mode && !strcmp(mode, "hard");

	if (!x)
		return qerr_set(e, "Export '%s' is not found", id);
	if (!hard && nbd_server_clients(&x->nx))
		return qerr_set(e, "export '%s' still in use", id);
	export_delete(x, hard);
	return 0;
}

int nbd_export_cmd_query(json_object *args, json_object **ret, struct qerr *e)
{
	json_object *a = json_object_new_array();
	struct export *x;

	for (x = exports; x; x = x->next) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "type", json_object_new_string("nbd"));
		json_object_object_add(o, "id", json_object_new_string(x->id));
		json_object_object_add(o, "node-name", json_object_new_string(x->node));
		json_object_object_add(o, "shutting-down", json_object_new_boolean(false));
		json_object_array_add(a, o);
	}
	*ret = a;
	return 0;
}

void nbd_export_shutdown(void)
{
	daemon_lock();
	while (exports)
		export_delete(exports, true);
	daemon_unlock();
	nbd_server_stop();
	daemon_lock();
	if (server_tls)
		tls_creds_put(server_tls);
	server_tls = NULL;
	tls_creds_shutdown();
	daemon_unlock();
}
