/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bsyncctl: the command line over bsyncd's QMP socket.
 *
 *   main.c        global options, dispatch
 *   commands.c    the subcommand table, --help texts
 *   args.c        option parsing per subcommand, sizes and rates
 *   output.c      errors, human tables, human sizes, JSON
 *   progress.c    the progress bar of "backup --wait" and "job wait"
 *   conn.c        finding and talking to the daemon
 *   cmd-device.c  device add|remove|list
 *   cmd-bitmap.c  bitmap add|remove|clear|enable|disable|merge|list
 *   cmd-backup.c  backup
 *   cmd-job.c     job list|finalize|cancel|dismiss|pause|resume|wait, events
 *   cmd-activate.c  activate: bring up the devices of /etc/bsynctab
 *   cmd-export.c  export start|stop|add|remove|list: pull-mode backups over NBD
 *   cmd-image.c   image info: a backup image's partial-backup record
 *   cmd-chain.c   chain verify: backup chains without the daemon (cmd-chain.h)
 *   cmd-chain-merge.c  chain merge: the oldest incremental into its full backup
 *   cmd-restore.c  restore: a chain's point in time onto a file or a device
 *   bsynctab.c    the /etc/bsynctab parser (bsynctab.h)
 */
#ifndef BSYNCCTL_H
#define BSYNCCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

/* Exit status (documented in Documentation/bsyncctl.rst). */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,	/* the daemon refused the command, or the job failed */
	EXIT_USAGE = 2,		/* bad subcommand, option or argument */
	EXIT_NO_DAEMON = 3,	/* cannot connect to bsyncd */
	EXIT_CANCELLED = 4,	/* the job waited for was cancelled */
	EXIT_PROTOCOL = 5,	/* lost the connection, or a reply not understood */
	/* chain verify, restore: what is wrong with the chain (the first problem from the tip) */
	EXIT_CHAIN_DAMAGED = 6,	/* an image is damaged or was left unfinished */
	EXIT_CHAIN_BROKEN = 7,	/* a link is missing (or the chain loops) */
	EXIT_CHAIN_PARTIAL = 8,	/* a partial (failed) image where it cannot be */
	EXIT_CHAIN_SIZE = 9,	/* the images' virtual sizes disagree */
	EXIT_FELL_BACK = 10,	/* backup --fallback full: a full backup was taken instead */
	EXIT_RESTORE_MISMATCH = 11,	/* restore: the destination read back other data */
};

#define BSYNCCTL_VERSION "0.1.0"
#define BSYNCD_SOCKET_UNIT "/run/bsyncd/bsyncd.sock"	/* scripts/bsyncd.service */
#define BSYNCD_SOCKET_BUILTIN "/run/bsyncd.sock"	/* bsyncd without --socket */
#define CLI_TIMEOUT_MS 120000

struct qmp_client;

/* One invocation. */
struct cli {
	const char *socket;	/* --socket, or NULL: see conn_socket_path() */
	bool json;		/* --json */
	bool bytes;		/* --bytes: sizes in tables as plain byte counts */
	bool quiet;		/* -q: only names / ids, one a line */
	const char *what;	/* "bitmap add vm1 nightly": for error messages */
	char what_buf[512];
	struct qmp_client *qmp;
	FILE *out, *err;
};

/* A subcommand: "bitmap add", "backup", "events". */
struct cli_cmd {
	const char *noun;
	const char *verb;	/* NULL: the noun is the command */
	const char *synopsis;	/* arguments and options after the words */
	const char *summary;	/* one line */
	const char *help;	/* the rest of --help: arguments, options, notes */
	int (*run)(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
};

/* commands.c */
extern const struct cli_cmd cli_cmds[];
extern const size_t cli_ncmds;
const struct cli_cmd *cli_find_cmd(const char *noun, const char *verb);
bool cli_is_noun(const char *noun);
void cli_print_usage(FILE *f, const struct cli_cmd *cmd);
void cli_print_help(FILE *f, const struct cli_cmd *cmd);
void cli_print_main_help(FILE *f);
void cli_print_noun_help(FILE *f, const char *noun);

/* args.c */

/* Options a subcommand takes besides --json, --socket, --help, --bytes, -q. */
struct cli_opt {
	const char *name;	/* long name without "--" */
	char short_name;	/* 0: none */
	bool has_arg;
	int id;			/* returned by cli_parse() */
};

/*
 * Parse a subcommand's argv (argv[0] is the subcommand).  For each of its
 * options, fn(arg, id, optarg) is called; it returns 0 or an exit status.
 * Positional arguments end up in *pos and *npos (pointers into argv).  Common
 * options set c->json, c->socket, c->bytes, c->quiet; --help prints the
 * help and returns -1 (exit 0).  Returns 0, -1 or EXIT_USAGE.
 */
int cli_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	      const struct cli_opt *opts, int (*fn)(void *arg, int id, const char *val),
	      void *arg, char ***pos, int *npos);
/* Positional count check: EXIT_USAGE with a message naming the first missing/extra. */
int cli_want_args(struct cli *c, const struct cli_cmd *cmd, int npos, int min, int max,
		  const char *const *names);
/* cli_parse() for a subcommand without options, then cli_want_args(). */
int cli_parse_plain(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, int min,
		    int max, const char *const *names, char ***pos, int *npos);

/*
 * "64K", "1M", "2G", "512", "4KiB", "1.5G" (K M G T P E: powers of 1024; a
 * trailing B or iB is accepted).  0 or -EINVAL / -ERANGE.
 */
int parse_size(const char *s, uint64_t *out);
/* A size, optionally per second ("50M", "50M/s", "50MiB/s"). */
int parse_rate(const char *s, uint64_t *out);
/* One of values[] (NULL-terminated): its index, or -1. */
int parse_enum(const char *s, const char *const *values);
/* "a, b or c" into buf. */
const char *enum_list(const char *const *values, char *buf, size_t len);

/* output.c */
/* Set c->what, the "<what failed>" of error messages. */
__attribute__((format(printf, 2, 3)))
void cli_set_what(struct cli *c, const char *fmt, ...);
__attribute__((format(printf, 2, 3)))
void cli_error(struct cli *c, const char *fmt, ...);
/* Usage error: message, the usage line and a hint; returns EXIT_USAGE. */
__attribute__((format(printf, 3, 4)))
int cli_usage_error(struct cli *c, const struct cli_cmd *cmd, const char *fmt, ...);

/* Human size: "0 B", "512 B", "64 KiB", "1.5 MiB", "2 GiB". */
const char *fmt_size(uint64_t bytes, char *buf, size_t len);
/* fmt_size(), or the plain number if c->bytes. */
const char *fmt_size_c(const struct cli *c, uint64_t bytes, char *buf, size_t len);
/* Seconds as "0:04", "12:30", "1:02:03"; "--:--" if unknown (< 0). */
const char *fmt_duration(double seconds, char *buf, size_t len);

/* An aligned text table. */
enum align { ALIGN_LEFT, ALIGN_RIGHT };
#define TABLE_MAX_COLS 12
struct table {
	size_t ncols, nrows, cap;
	const char *head[TABLE_MAX_COLS];
	enum align align[TABLE_MAX_COLS];
	char **cells;		/* nrows * ncols, owned */
};
void table_init(struct table *t, size_t ncols, const char *const *head, const enum align *align);
/* Append a row of ncols strings (copied); 0 or -ENOMEM. */
int table_add(struct table *t, const char *const *row);
/* Print with two spaces between columns, no trailing blanks. */
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);
/* A list's row: table_add(), or "NOUN VERB: <error>" printed and EXIT_FAILED. */
int list_row(struct cli *c, const struct cli_cmd *cmd, struct table *t, const char *const *row);
/* A list's end: the table printed unless -q or r, then it and the reply freed; r. */
int list_end(struct cli *c, struct table *t, json_object *ret, int r);

/* The daemon's data unchanged, pretty-printed, then a newline. */
void print_json(struct cli *c, json_object *o);
/* Does s hold a byte below 0x20 (other than '\n') or 0x7f? */
bool has_control_chars(const char *s, size_t len);

/* progress.c */
struct progress {
	double t0, last_t;	/* seconds */
	uint64_t last_done;
	double rate;		/* bytes/s, smoothed; < 0 until known */
};
void progress_init(struct progress *p, double now);
void progress_update(struct progress *p, double now, uint64_t done);
/* Seconds left, or < 0 if unknown. */
double progress_eta(const struct progress *p, uint64_t done, uint64_t total);
/*
 * One line of at most width columns, no control characters:
 * "[#######.......]  42%  108 MiB / 256 MiB  35.2 MiB/s  ETA 0:04"
 */
void progress_format(char *buf, size_t len, int width, uint64_t done, uint64_t total,
		     double rate, double eta);
double progress_now(void);
/* Terminal width of fd, or 80. */
int terminal_width(int fd);

/* conn.c */
/* --socket, $BSYNCD_SOCKET, then the unit's path or bsyncd's default. */
const char *conn_socket_path(const struct cli *c);
/* Connect (once); 0 or an exit status, with the message printed. */
int conn_open(struct cli *c);
/* The same, the message into msg instead. */
int conn_open_msg(struct cli *c, char *msg, size_t len);
void conn_close(struct cli *c);
/*
 * Run a QMP command; args is consumed (may be NULL).  *ret gets the return
 * value (may be NULL).  0 or an exit status, with the error printed as
 * "bsyncctl: <c->what>: <desc>".
 */
int conn_exec(struct cli *c, const char *cmd, json_object *args, json_object **ret);
/* conn_exec() for a command whose only output is the reply, printed with --json. */
int conn_run(struct cli *c, const char *cmd, json_object *args);
/*
 * What every argument-less "list" shares: parse, run one query, and with
 * --json print the daemon's reply unchanged. Returns 0 with *ret to draw a
 * table from, CLI_LISTED when done, or an exit code.
 */
#define CLI_LISTED (-1)
int conn_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	      const char *query, json_object **ret);
/* Next event within timeout_ms; 0, -ETIMEDOUT, or an exit status (printed). */
int conn_event(struct cli *c, int timeout_ms, json_object **ev);

/* json helpers (output.c) */
const char *jstr(json_object *o, const char *key);
int64_t jint(json_object *o, const char *key);
bool jbool(json_object *o, const char *key);

/* Commands */
int cmd_device_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_device_remove(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_device_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_bitmap_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_bitmap_simple(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_bitmap_merge(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_bitmap_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_backup(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_job_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_job_verb(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_job_wait(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_events(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_image_info(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_chain_verify(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_chain_merge(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_restore(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_activate(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_export_start(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_export_stop(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_export_add(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_export_remove(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);
int cmd_export_list(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv);

/* cmd-image.c: a partial-backup record's "key=value" lines (cut up) as a JSON object. */
json_object *image_record_json(char *text);

/*
 * cmd-chain.c: can the image at path be the backing file of the next
 * incremental?  Its chain is checked as by chain verify, except that a tip
 * made partial with bitmap-mode always is valid.  0 if so, else chain
 * verify's exit status and the first problem ("PATH: why") in detail.
 * *vsize: the image's virtual size (0 if it could not be read).
 */
int chain_check_base(const char *path, uint64_t *vsize, char *detail, size_t len);

/* cmd-job.c: wait for job id to end; the exit status of its outcome. */
int job_wait(struct cli *c, const char *id, bool started_here);
/* Wait for several jobs started here (a group): the worst outcome's exit status. */
int jobs_wait(struct cli *c, const char *const *ids, int n);

#endif
