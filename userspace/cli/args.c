// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: option parsing per subcommand, sizes, rates and enumerations.
 *
 * Options may come anywhere after the subcommand words, GNU style:
 * "--name value", "--name=value", "-x value", "-xvalue"; "--" ends them.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"

enum { OPT_JSON = -100, OPT_SOCKET, OPT_HELP, OPT_BYTES, OPT_QUIET };

static const struct cli_opt common_opts[] = {
	{ "json", 0, false, OPT_JSON },
	{ "socket", 's', true, OPT_SOCKET },
	{ "help", 'h', false, OPT_HELP },
	{ "bytes", 'b', false, OPT_BYTES },
	{ "quiet", 'q', false, OPT_QUIET },
	{ NULL, 0, false, 0 },
};

static const struct cli_opt *find_long(const struct cli_opt *opts, const char *name, size_t n)
{
	for (; opts && opts->name; opts++)
		if (strlen(opts->name) == n && !strncmp(opts->name, name, n))
			return opts;
	return NULL;
}

static const struct cli_opt *find_short(const struct cli_opt *opts, char ch)
{
	for (; opts && opts->name; opts++)
		if (opts->short_name && opts->short_name == ch)
			return opts;
	return NULL;
}

int cli_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv,
	      const struct cli_opt *opts, int (*fn)(void *arg, int id, const char *val),
	      void *arg, char ***pos, int *npos)
{
	bool only_args = false;
	int i, n = 0, r;

	*pos = argv + 1;	/* positional arguments are packed in place */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL, *name;
		const struct cli_opt *o;
		size_t len;

		if (only_args || a[0] != '-' || !a[1]) {
			argv[1 + n++] = argv[i];
			continue;
		}
		if (!strcmp(a, "--")) {
			only_args = true;
			continue;
		}
		if (a[1] == '-') {
			name = a + 2;
			len = strcspn(name, "=");
			o = find_long(opts, name, len);
			if (!o)
				o = find_long(common_opts, name, len);
			if (!o)
				return cli_usage_error(c, cmd, "unknown option '--%.*s'", (int)len, name);
			if (name[len] == '=') {
				if (!o->has_arg)
					return cli_usage_error(c, cmd, "option '--%s' takes no value",
							       o->name);
				val = name + len + 1;
			}
		} else {
			o = find_short(opts, a[1]);
			if (!o)
				o = find_short(common_opts, a[1]);
			if (!o)
				return cli_usage_error(c, cmd, "unknown option '%s'", a);
			if (a[2]) {
				if (!o->has_arg)
					return cli_usage_error(c, cmd, "unknown option '%s'", a);
				val = a + 2;
			}
		}
		if (o->has_arg && !val) {
			if (i + 1 >= argc)
				return cli_usage_error(c, cmd, "option '--%s' needs a value", o->name);
			val = argv[++i];
		}
		switch (o->id) {
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_SOCKET:
			if (!*val)
				return cli_usage_error(c, cmd, "option '--socket' needs a path");
			c->socket = val;
			break;
		case OPT_HELP:
			cli_print_help(c->out, cmd);
			return -1;
		case OPT_BYTES:
			c->bytes = true;
			break;
		case OPT_QUIET:
			c->quiet = true;
			break;
		default:
			r = fn ? fn(arg, o->id, val) : 0;
			if (r)
				return r;
		}
	}
	*npos = n;
	return 0;
}

int cli_want_args(struct cli *c, const struct cli_cmd *cmd, int npos, int min, int max,
		  const char *const *names)
{
	if (npos < min)
		return cli_usage_error(c, cmd, "missing argument %s", names ? names[npos] : "");
	if (max >= 0 && npos > max)
		return cli_usage_error(c, cmd, "too many arguments (%d, at most %d)", npos, max);
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	uint64_t ip = 0, frac = 0, scale = 1, v;
	unsigned int shift = 0;
	const char *p = s, *u;
	int fdigits = 0;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		uint64_t d = (uint64_t)(*p - '0');

		if (ip > (UINT64_MAX - d) / 10)
			return -ERANGE;
		ip = ip * 10 + d;
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (fdigits == 18)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			scale *= 10;
			fdigits++;
		}
	}
	if (*p && (u = strchr(units, toupper((unsigned char)*p)))) {
		shift = 10 * (unsigned int)(u - units + 1);
		p++;
		if (*p == 'i' || *p == 'I') {
			p++;
			if (*p != 'B' && *p != 'b')
				return -EINVAL;
		}
	}
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return -EINVAL;
	if (fdigits && !shift)
		return -EINVAL;		/* "1.5" bytes */
	if (shift && ip > (UINT64_MAX >> shift))
		return -ERANGE;
	v = ip << shift;
	if (fdigits) {
		/* frac / scale of 2^shift, which must come out whole */
		uint64_t unit = 1ull << shift, whole = unit / scale, rem = unit % scale;
		uint64_t add = frac * whole, part;

		/* frac * rem / scale without overflow: frac < scale <= 10^18, rem < scale */
		unsigned __int128 t = (unsigned __int128)frac * rem;

		if (t % scale)
			return -EINVAL;
		part = (uint64_t)(t / scale);
		if (add > UINT64_MAX - part || v > UINT64_MAX - (add + part))
			return -ERANGE;
		v += add + part;
	}
	*out = v;
	return 0;
}

int parse_rate(const char *s, uint64_t *out)
{
	size_t n = strlen(s);
	char buf[64];

	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n + 1);
	if (n > 2 && !strcmp(buf + n - 2, "/s"))
		buf[n - 2] = 0;
	return parse_size(buf, out);
}

int parse_enum(const char *s, const char *const *values)
{
	int i;

	for (i = 0; values[i]; i++)
		if (!strcmp(s, values[i]))
			return i;
	return -1;
}

const char *enum_list(const char *const *values, char *buf, size_t len)
{
	size_t n = 0;
	int i;

	buf[0] = 0;
	for (i = 0; values[i] && n < len; i++) {
		const char *sep = i == 0 ? "" : values[i + 1] ? ", " : " or ";

		n += (size_t)snprintf(buf + n, len - n, "%s%s", sep, values[i]);
	}
	return buf;
}

int cli_parse_plain(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, int min,
		    int max, const char *const *names, char ***pos, int *npos)
{
	int r = cli_parse(c, cmd, argc, argv, NULL, NULL, NULL, pos, npos);

	return r ? r : cli_want_args(c, cmd, *npos, min, max, names);
}
