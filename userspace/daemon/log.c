// SPDX-License-Identifier: GPL-2.0
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

bool bsyncd_verbose;

void bsyncd_debug(const char *fmt, ...)
{
	va_list ap;

	if (!bsyncd_verbose)
		return;
	va_start(ap, fmt);
	fputs("bsyncd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
