// SPDX-License-Identifier: GPL-2.0
/*
 * bsync-metadata: check, dump and repair a bsync metadata device offline.
 * See Documentation/bsync-metadata.rst; the work is in bsync-metadata-*.c
 * (bsync-metadata-internal.h lists them).
 */
#include <stdio.h>

#include "bsync-metadata.h"

int main(int argc, char **argv)
{
	return bsync_metadata_main(argc, argv, stdout, stderr);
}
