// SPDX-License-Identifier: GPL-2.0
/*
 * dm-bsync: dirty bitmaps for incremental, point-in-time block backups.
 *
 * The module: it registers the bsync target (dm-bsync-target.c) and the
 * bsync-snap view (dm-bsync-snap.c) and starts the workqueues of
 * copy-before-write (dm-bsync-cbw.c) and of the write gate
 * (dm-bsync-gate.c). It is the top of the call graph, so that
 * neither target calls the other: dm-bsync.h says which way calls go.
 */
#include <linux/module.h>

#include "dm-bsync.h"

static int __init dm_bsync_init(void)
{
	int r;

	r = bsync_cbw_init();
	if (r)
		return r;
	r = bsync_gate_module_init();
	if (r)
		goto bad_cbw;
	r = bsync_target_register();
	if (r) {
		DMERR("register failed %d", r);
		goto bad_gate;
	}
	r = bsync_snap_register();
	if (r) {
		DMERR("register of bsync-snap failed %d", r);
		goto bad_target;
	}
	return 0;

bad_target:
	bsync_target_unregister();
bad_gate:
	bsync_gate_module_exit();
bad_cbw:
	bsync_cbw_exit();
	return r;
}

static void __exit dm_bsync_exit(void)
{
	bsync_snap_unregister();
	bsync_target_unregister();
	bsync_gate_module_exit();
	bsync_cbw_exit();
}

module_init(dm_bsync_init);
module_exit(dm_bsync_exit);

MODULE_DESCRIPTION(DM_NAME " dirty bitmaps for incremental block backups");
MODULE_AUTHOR("dm-bsync developers");
MODULE_LICENSE("GPL");
