// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: the progress bar of "backup --wait" and "job wait".
 *
 * The rate is smoothed over the samples taken (one every 250 ms or so) so
 * that the ETA does not jump; progress_format() builds the line, free of
 * control characters, and the caller draws it with "\r" and erase-line.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "bsyncctl.h"

#define RATE_WINDOW 3.0		/* seconds: time constant of the smoothing */

double progress_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_init(struct progress *p, double now)
{
	p->t0 = p->last_t = now;
	p->last_done = 0;
	p->rate = -1;
}

void progress_update(struct progress *p, double now, uint64_t done)
{
	double dt = now - p->last_t, inst, w;

	if (dt <= 0.05 || done < p->last_done)
		return;
	inst = (double)(done - p->last_done) / dt;
	if (p->rate < 0) {
		p->rate = inst;
	} else {
		w = dt / RATE_WINDOW;
		if (w > 1)
			w = 1;
		p->rate = p->rate * (1 - w) + inst * w;
	}
	p->last_t = now;
	p->last_done = done;
}

double progress_eta(const struct progress *p, uint64_t done, uint64_t total)
{
	if (done >= total)
		return 0;
	if (p->rate <= 0)
		return -1;
	return (double)(total - done) / p->rate;
}

void progress_format(char *buf, size_t len, int width, uint64_t done, uint64_t total,
		     double rate, double eta)
{
	char d[32], t[32], r[40], e[32], tail[160];
	int pct, bar, fill, i;
	size_t n;

	if (!len)
		return;
	if (done > total)
		done = total;
	pct = total ? (int)(done * 100 / total) : 0;
	fmt_size(done, d, sizeof(d));
	fmt_size(total, t, sizeof(t));
	if (rate >= 0) {
		fmt_size((uint64_t)rate, r, sizeof(r));
		strcat(r, "/s");
	} else {
		snprintf(r, sizeof(r), "--/s");
	}
	fmt_duration(eta, e, sizeof(e));
	/* fixed-width fields, so that the bar keeps its length as numbers change */
	snprintf(tail, sizeof(tail), " %3d%%  %9s / %-9s %10s  ETA %5s", pct, d, t, r, e);
	if (width > (int)len - 1)
		width = (int)len - 1;
	bar = width - (int)strlen(tail) - 2;
	if (bar < 10) {
		/* too narrow for a bar: the numbers alone, cut to width */
		snprintf(buf, len, "%.*s", width > 0 ? width : 0, tail + 1);
		return;
	}
	if (bar > 50)
		bar = 50;
	fill = total ? (int)(done * (uint64_t)bar / total) : 0;
	n = 0;
	buf[n++] = '[';
	for (i = 0; i < bar; i++)
		buf[n++] = i < fill ? '#' : '.';
	buf[n++] = ']';
	snprintf(buf + n, len - n, "%s", tail);
}

int terminal_width(int fd)
{
	struct winsize ws;

	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}
