/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels dm-bsync supports (Linux 6.1 and 6.12),
 * kept in one place.
 */
#ifndef DM_BSYNC_COMPAT_H
#define DM_BSYNC_COMPAT_H

#include <linux/version.h>

#endif
