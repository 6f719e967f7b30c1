/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Fan-out: one call per item, all at once, for calls that block for
 * different times (a gate_close per device waits for that device's
 * writes): the wait is the longest call's, not the sum of them.
 */
#ifndef BSYNCD_FANOUT_H
#define BSYNCD_FANOUT_H

#include <stddef.h>

/*
 * fn on each of the n items of size bytes at items, each in a thread of its
 * own but the first, which runs in the caller; returns when all returned.
 * An item whose thread cannot be made runs in the caller too, after the
 * others started: every item gets its call.
 */
void fanout(void *items, size_t n, size_t size, void (*fn)(void *item));

#endif
