/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wall-clock measurement for the daemon's log lines: a meter is started
 * at the beginning of a phase and read (seconds since) at its end.  Only
 * measurement lives here, so that the code it measures reads as control
 * flow; the rate limit uses it as a clock too.
 */
#ifndef BSYNCD_METER_H
#define BSYNCD_METER_H

#include <time.h>

struct meter {
	struct timespec t0;
};

static inline void meter_start(struct meter *m)
{
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
}

/* Seconds since meter_start(). */
static inline double meter_read(const struct meter *m)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - m->t0.tv_sec) + (double)(t.tv_nsec - m->t0.tv_nsec) / 1e9;
}

#endif
