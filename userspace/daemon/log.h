/* SPDX-License-Identifier: GPL-2.0 */
/* bsyncd's diagnostics: stderr, which systemd puts in the journal. */
#ifndef BSYNCD_LOG_H
#define BSYNCD_LOG_H

#include <stdbool.h>

/* Set by --verbose: log every QMP command, its failures and job state changes. */
extern bool bsyncd_verbose;

__attribute__((format(printf, 1, 2)))
void bsyncd_debug(const char *fmt, ...);

#endif
