// SPDX-License-Identifier: GPL-2.0
/*
 * bsyncctl: the subcommand table and the --help texts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bsyncctl.h"

#define SIZE_NOTE "SIZE takes a K, M, G or T suffix (powers of 1024): 64K, 1M, 2G.\n"

const struct cli_cmd cli_cmds[] = {
	{ "device", "add", "NAME ORIGIN [--zeroed] [--metadata DEV] [--force]",
	  "create a bsync device NAME over the block device ORIGIN",
	  "Creates /dev/mapper/NAME, a bsync device stacked on ORIGIN, that\n"
	  "records written clusters in its dirty bitmaps. Put the guest or the\n"
	  "file system on /dev/mapper/NAME from now on: writes made to ORIGIN\n"
	  "directly are not seen.\n"
	  "\n"
	  "Options:\n"
	  "  --zeroed         ORIGIN reads as zeroes everywhere (a new thin LV, a\n"
	  "                   discarded disk): backups skip what was never written\n"
	  "  --metadata DEV   keep persistent bitmaps on the block device DEV (a\n"
	  "                   small partition or LV of its own, 64 KiB at least;\n"
	  "                   a blank one is formatted): they survive device\n"
	  "                   removal, reboots and crashes\n"
	  "  --force          add it even though another program holds ORIGIN (or\n"
	  "                   a partition of it) open: that program's writes are\n"
	  "                   not tracked. Without it, such an ORIGIN is refused\n"
	  "                   and the programs are named\n",
	  cmd_device_add },
	{ "device", "remove", "NAME",
	  "remove a bsync device (its bitmaps are lost, except persistent ones)",
	  "Removes /dev/mapper/NAME; ORIGIN keeps the data. The device's dirty\n"
	  "bitmaps are gone with it (the next backup must be a full one), except\n"
	  "the persistent ones: they stay on the metadata device and come back\n"
	  "when a device is made again over the same ORIGIN and metadata device.\n",
	  cmd_device_remove },
	{ "device", "list", "[-q]",
	  "list the bsync devices",
	  "Columns: NAME, SIZE, BITMAPS (how many), PATH.\n"
	  "  -q, --quiet   names only, one a line\n",
	  cmd_device_list },
	{ "activate", NULL, "[--config FILE] [--wait SECONDS]",
	  "bring up the bsync devices declared in /etc/bsynctab",
	  "For each line of the file (NAME ORIGIN [metadata=PATH,zeroed], see\n"
	  "bsynctab(5)), in order: a device NAME that already is bsync over ORIGIN\n"
	  "(and the same metadata device) is left alone; a device NAME with another\n"
	  "table is an error; otherwise ORIGIN and the metadata device are waited\n"
	  "for and the device is added (never forced), its persistent bitmaps back\n"
	  "as they were. A device that fails does not stop the others; the report\n"
	  "at the end names each one not brought up and why. Running it again\n"
	  "changes nothing. bsync-activate.service runs it at boot, before\n"
	  "libvirtd and the VMs.\n"
	  "\n"
	  "Options:\n"
	  "  -c, --config FILE    the devices to bring up (default /etc/bsynctab)\n"
	  "  -w, --wait SECONDS   wait up to SECONDS in all (0 to 3600, default 0)\n"
	  "                       for the paths to appear: udev may still be making\n"
	  "                       /dev/disk/by-id links at boot\n"
	  "\n"
	  "With --json: an array of {name, origin, state: active, activated or\n"
	  "failed, error}.\n",
	  cmd_activate },
	{ "bitmap", "add", "DEVICE NAME [--granularity SIZE] [--disabled]\n"
	  "         [--persistent]",
	  "add a dirty bitmap to a device",
	  "The bitmap records every cluster written from now on.\n"
	  "\n"
	  "Options:\n"
	  "  -g, --granularity SIZE   cluster size, a power of two from 512 to 1G\n"
	  "                           (default 64K)\n"
	  "  --disabled               do not record until 'bitmap enable'\n"
	  "  --persistent             keep it on the device's metadata device (see\n"
	  "                           'device add --metadata'; 16 at most)\n"
	  "\n"
	  "NAME: up to 127 characters from A-Z a-z 0-9 _ - . : + @\n"
	  SIZE_NOTE,
	  cmd_bitmap_add },
	{ "bitmap", "remove", "DEVICE NAME", "remove a dirty bitmap",
	  "Fails while a backup uses the bitmap.\n", cmd_bitmap_simple },
	{ "bitmap", "clear", "DEVICE NAME", "clear every bit of a dirty bitmap",
	  "Fails while a backup uses the bitmap. An inconsistent bitmap becomes\n"
	  "consistent again (take a full backup next).\n", cmd_bitmap_simple },
	{ "bitmap", "enable", "DEVICE NAME", "start recording writes in a bitmap",
	  "Fails while a backup uses the bitmap, or if it is inconsistent.\n", cmd_bitmap_simple },
	{ "bitmap", "disable", "DEVICE NAME", "stop recording writes in a bitmap",
	  "The bitmap keeps its bits. Fails while a backup uses the bitmap.\n",
	  cmd_bitmap_simple },
	{ "bitmap", "merge", "DEVICE TARGET SOURCE...",
	  "set in TARGET every cluster set in any SOURCE",
	  "The sources are unchanged. Bitmaps of different granularities can be\n"
	  "merged. Fails while a backup uses any of them.\n",
	  cmd_bitmap_merge },
	{ "bitmap", "list", "[DEVICE] [-b] [-q]",
	  "list dirty bitmaps",
	  "Columns: DEVICE, NAME, GRANULARITY, DIRTY (bytes of dirty clusters),\n"
	  "RECORDING, BUSY (a backup uses it), PERSISTENT (kept on the metadata\n"
	  "device), INCONSISTENT (it may miss writes after a metadata failure:\n"
	  "only 'bitmap clear' or 'bitmap remove' apply). While a backup runs,\n"
	  "the bitmap's successor, which records the writes made since the\n"
	  "backup started, is listed after it with NAME '-'.\n"
	  "\n"
	  "  -b, --bytes   sizes as byte counts\n"
	  "  -q, --quiet   names only, one a line\n",
	  cmd_bitmap_list },
	{ "backup", NULL,
	  "DEVICE TARGET [DEVICE TARGET]... --sync MODE\n"
	  "         [--bitmap NAME] [--bitmap-mode MODE] [--backing FILE]...\n"
	  "         [--existing] [--speed RATE]\n"
	  "         [--job-id ID] [--no-auto-finalize] [--no-auto-dismiss] [--wait]\n"
	  "         [--fallback full]",
	  "back DEVICE up into the qcow2 image TARGET",
	  "Starts a backup job of the device as it is at this instant, into a\n"
	  "qcow2 image. Without --wait it returns once the job has started.\n"
	  "\n"
	  "Several DEVICE TARGET pairs (at most 16; the disks of one VM) are\n"
	  "backed up at one instant for all, in one transaction, and their jobs\n"
	  "(each named after its device) form a group: if one fails or is\n"
	  "cancelled, all are cancelled and every bitmap keeps its bits, so the\n"
	  "next try is again one incremental of every disk. --bitmap names the\n"
	  "bitmap of each device; --backing is given once per DEVICE, in order.\n"
	  "--job-id and --fallback take one device.\n"
	  "\n"
	  "Options:\n"
	  "  --sync MODE          full: every cluster; top: the clusters that may\n"
	  "                       hold data; bitmap: the clusters set in --bitmap;\n"
	  "                       incremental: bitmap with --bitmap-mode on-success;\n"
	  "                       none: nothing but what the guest overwrites while\n"
	  "                       the job runs\n"
	  "  --bitmap NAME        the dirty bitmap the backup uses or updates\n"
	  "  --bitmap-mode MODE   what happens to the bitmap when the job ends:\n"
	  "                       on-success: cleared of what was copied if the\n"
	  "                       job succeeds; never: unchanged; always: cleared\n"
	  "                       of whatever was copied, even if the job failed\n"
	  "  --backing FILE       the new image's backing file (the previous\n"
	  "                       image of the chain); only with a new image\n"
	  "  --existing           TARGET exists already (qcow2 of the same size)\n"
	  "  --speed RATE         at most RATE bytes per second (50M, 50M/s)\n"
	  "  --job-id ID          the job's id (default: DEVICE)\n"
	  "  --no-auto-finalize   stay pending until 'job finalize ID'\n"
	  "  --no-auto-dismiss    stay concluded until 'job dismiss ID'\n"
	  "  -w, --wait           wait for the job to end, with a progress bar on a\n"
	  "                       terminal; exit with its outcome\n"
	  "  --fallback full      with --sync incremental: when the incremental is\n"
	  "                       impossible, take a full backup into TARGET instead\n"
	  "                       (a new chain, no backing file) and say why on\n"
	  "                       stderr and, with --json, in a first object\n"
	  "                       {\"fallback\": {\"reason\", \"detail\", ...}}; exit 10\n"
	  "                       when it succeeds. Reasons: bitmap-missing (it is\n"
	  "                       added), bitmap-inconsistent (it is cleared),\n"
	  "                       base-missing, base-partial, base-damaged,\n"
	  "                       base-unreadable (--backing's chain, as 'chain\n"
	  "                       verify' sees it), device-resized\n",
	  cmd_backup },
	{ "job", "list", "[-b] [-q]", "list the jobs",
	  "Columns: ID, TYPE, STATUS, DONE, TOTAL, PROGRESS, ERROR.\n"
	  "  -b, --bytes   sizes as byte counts\n"
	  "  -q, --quiet   ids only, one a line\n",
	  cmd_job_list },
	{ "job", "finalize", "ID", "finalize a pending job (--no-auto-finalize)",
	  "Applies the bitmap mode and concludes the job.\n", cmd_job_verb },
	{ "job", "cancel", "ID", "cancel a job",
	  "A cancelled backup leaves its bitmap as if the backup had not been\n"
	  "made (except with --bitmap-mode always).\n", cmd_job_verb },
	{ "job", "dismiss", "ID", "forget a concluded job (--no-auto-dismiss)", "",
	  cmd_job_verb },
	{ "job", "pause", "ID", "pause a running job", "", cmd_job_verb },
	{ "job", "resume", "ID", "resume a paused job", "", cmd_job_verb },
	{ "job", "wait", "ID", "wait for a job to end",
	  "Waits until the job concludes (or is pending, with --no-auto-finalize),\n"
	  "with a progress bar on a terminal, and exits with its outcome.\n",
	  cmd_job_wait },
	{ "export", "start", "SOCKET | --tcp HOST:PORT --insecure-loopback\n"
	  "         [--max-connections N]",
	  "start bsyncd's NBD server, for pull-mode backups",
	  "Listens for NBD clients (nbdinfo, nbdcopy, qemu-img, libnbd, backup\n"
	  "software that pulls from QEMU) on the Unix socket SOCKET, made mode 0600.\n"
	  "Without TLS, --tcp serves a loopback address only (127.0.0.1, ::1), and\n"
	  "only with --insecure-loopback, as any local user can then read the\n"
	  "exports; for TLS use bsyncd's QMP (object-add, nbd-server-start tls-creds).\n"
	  "\n"
	  "Options:\n"
	  "  --tcp HOST:PORT       listen on TCP instead ([::1]:PORT for IPv6)\n"
	  "  --insecure-loopback   allow TCP without TLS on a loopback address\n"
	  "  --max-connections N   at most N clients at once (default and most 1000)\n",
	  cmd_export_start },
	{ "export", "stop", "",
	  "stop the NBD server, deleting every export",
	  "Drops every client. Each export's fleecing job ends as if the export\n"
	  "was removed with --hard.\n",
	  cmd_export_stop },
	{ "export", "add", "DEVICE [--bitmap NAME] [--name EXPORT] [--id ID]",
	  "export DEVICE's point in time over NBD",
	  "Takes the point in time now and serves it read-only: clients read the\n"
	  "device as it was at this instant while it goes on being written (a\n"
	  "fleecing job, shown by 'job list', holds it). With --bitmap the export\n"
	  "also has the metadata context qemu:dirty-bitmap:NAME, the bitmap frozen\n"
	  "at the instant: the clusters written since the bitmap was last cleared.\n"
	  "When the export is removed after clients read every one of them, the\n"
	  "bitmap keeps only what was written after the instant (the next\n"
	  "incremental); otherwise it keeps everything.\n"
	  "\n"
	  "Options:\n"
	  "  -b, --bitmap NAME    export DEVICE's bitmap NAME\n"
	  "  -n, --name EXPORT    the NBD export name (default DEVICE)\n"
	  "  --id ID              the export's and its job's id (default DEVICE)\n",
	  cmd_export_add },
	{ "export", "remove", "ID [--hard]",
	  "remove an export, ending its point in time",
	  "Refused while clients are connected, unless --hard, which drops them.\n",
	  cmd_export_remove },
	{ "export", "list", "[-q]",
	  "list the NBD exports",
	  "Columns: ID, DEVICE, TYPE.\n"
	  "  -q, --quiet   ids only, one a line\n",
	  cmd_export_list },
	{ "events", NULL, "[--count N]", "print the daemon's QMP events as they come",
	  "One line per event: its time, name and data. With --json, each\n"
	  "event's JSON object on one line.\n"
	  "  -n, --count N   stop after N events\n",
	  cmd_events },
	{ "image", "info", "IMAGE", "show what bsyncd recorded in a backup image",
	  "Reads IMAGE (a qcow2 file bsyncd wrote) without asking the daemon. A\n"
	  "failed or cancelled backup leaves a well-formed image holding what was\n"
	  "copied, with a partial-backup record: the job, its error, how much was\n"
	  "copied and the bitmap mode. With bitmap-mode always the next\n"
	  "incremental builds on it; otherwise delete it.\n",
	  cmd_image_info },
	{ "chain", "verify", "CHAIN-TIP [--json] [-q]",
	  "check a backup chain: links, structure, sizes, partial images",
	  "Walks the backing chain from CHAIN-TIP (the newest image) down to its\n"
	  "full backup, reading the files without asking the daemon, and checks\n"
	  "that every link exists, that every image is a sound, finished qcow2\n"
	  "image (its L1 and L2 tables and refcounts, as qemu-img check does), that\n"
	  "all have the tip's virtual size, and that no partial image (a failed or\n"
	  "cancelled backup, see 'image info') is the tip or a link, unless its job\n"
	  "ran with bitmap-mode always. An image with a checksum record beside it\n"
	  "(IMAGE.sums, which bsyncd writes) has every data cluster read and checked\n"
	  "against it: a cluster changed since the backup makes the image damaged.\n"
	  "Columns: LEVEL (0 the tip), IMAGE, SIZE, DATA (bytes stored in the\n"
	  "image), CHECKSUMS (clusters checked, or 'no checksums'), STATUS. Each\n"
	  "problem is printed on stderr with what to do.\n"
	  "\n"
	  "  -q, --quiet   no table: only the problems and the exit status\n"
	  "\n"
	  "Exit status: 0 the chain is valid; 6 an image is damaged (a data cluster\n"
	  "that differs from its checksum included) or was left unfinished; 7 a\n"
	  "link is missing; 8 a partial image where it cannot be; 9 the images'\n"
	  "sizes disagree (the first problem from the tip decides);\n"
	  "1 the chain could not be checked (I/O error, unsupported qcow2 feature).\n",
	  cmd_chain_verify },
	{ "chain", "merge", "CHAIN-TIP [--keep]",
	  "fold the oldest incremental of a chain into its full backup",
	  "For retention: the chain full <- inc1 <- inc2 <- ... becomes\n"
	  "inc1 <- inc2 <- ..., where inc1 is now a full backup of the same point in\n"
	  "time, and full is deleted. The chain is verified first (nothing is done\n"
	  "to one that is not valid); inc1 merged with full is written as a new\n"
	  "file, INC1.merging, checked, then renamed over inc1, the one step that\n"
	  "changes the chain: killed at any moment, the chain stays valid (a\n"
	  "leftover INC1.merging or old full file can be deleted). Needs free space\n"
	  "for one full image. Do not run it while QEMU or a restore reads the chain.\n"
	  "\n"
	  "  --keep   keep the old full backup file (another chain shares it)\n"
	  "\n"
	  "Exit status: as 'chain verify' when the chain is not valid; 1 when the\n"
	  "merge failed (the chain is as it was).\n",
	  cmd_chain_merge },
	{ "restore", NULL, "CHAIN-TIP DEST [--no-verify]",
	  "write the image a backup chain describes onto a file or block device",
	  "Verifies the chain as 'chain verify' does and, when it is valid, writes\n"
	  "the image it describes onto DEST: a new file (made sparse: what reads as\n"
	  "zeroes is not written), or a block device of at least the image's size,\n"
	  "opened exclusively (refused while mounted or otherwise in use). Every\n"
	  "table entry is checked again as it is read; a failure stops the restore\n"
	  "(a new file is then removed). When DEST is a bsync device, every cluster\n"
	  "is written through it, so its recording bitmaps mark the whole device\n"
	  "dirty and their next incremental copies all of it; a bitmap that was\n"
	  "not recording (or is inconsistent) is named: clear it and take a full\n"
	  "backup before using it again. Each chunk written is read back from DEST\n"
	  "(O_DIRECT, or after a flush that drops it from the page cache) and\n"
	  "compared: a destination that keeps other data than it was given stops\n"
	  "the restore, naming the offset.\n"
	  "\n"
	  "  --no-verify   do not read back (half the I/O; a trusted destination)\n"
	  "\n"
	  "Exit status: as 'chain verify' when the chain is not valid (nothing is\n"
	  "written); 11 when DEST read back other data than was written; 1 when\n"
	  "DEST cannot be written.\n",
	  cmd_restore },
};

const size_t cli_ncmds = sizeof(cli_cmds) / sizeof(cli_cmds[0]);

static const char common_help[] =
	"Common options (anywhere after the command):\n"
	"  -s, --socket PATH   bsyncd's QMP socket (default: $BSYNCD_SOCKET, else\n"
	"                      " BSYNCD_SOCKET_UNIT " if it exists,\n"
	"                      else " BSYNCD_SOCKET_BUILTIN ")\n"
	"  --json              print the daemon's data as JSON, unchanged\n"
	"  -h, --help          this help\n";

static const char exit_help[] =
	"Exit status: 0 success, 1 the operation failed, 2 usage error,\n"
	"3 cannot reach bsyncd, 4 the job was cancelled, 5 lost connection or\n"
	"bad reply.\n";

const struct cli_cmd *cli_find_cmd(const char *noun, const char *verb)
{
	size_t i;

	for (i = 0; i < cli_ncmds; i++) {
		const struct cli_cmd *c = &cli_cmds[i];

		if (strcmp(c->noun, noun))
			continue;
		if (!c->verb || (verb && !strcmp(c->verb, verb)))
			return c;
	}
	return NULL;
}

bool cli_is_noun(const char *noun)
{
	size_t i;

	for (i = 0; i < cli_ncmds; i++)
		if (!strcmp(cli_cmds[i].noun, noun))
			return true;
	return false;
}

void cli_print_usage(FILE *f, const struct cli_cmd *cmd)
{
	fprintf(f, "usage: bsyncctl %s%s%s %s\n", cmd->noun, cmd->verb ? " " : "",
		cmd->verb ? cmd->verb : "", cmd->synopsis);
}

void cli_print_help(FILE *f, const struct cli_cmd *cmd)
{
	cli_print_usage(f, cmd);
	fprintf(f, "\n%c%s.\n", cmd->summary[0] - 'a' + 'A', cmd->summary + 1);
	if (cmd->help[0])
		fprintf(f, "\n%s", cmd->help);
	fprintf(f, "\n%s\n%s", common_help, exit_help);
}

void cli_print_noun_help(FILE *f, const char *noun)
{
	size_t i;

	fprintf(f, "usage: bsyncctl %s COMMAND [ARGS...]\n\nCommands:\n", noun);
	for (i = 0; i < cli_ncmds; i++)
		if (!strcmp(cli_cmds[i].noun, noun))
			fprintf(f, "  %-9s %s\n", cli_cmds[i].verb ? cli_cmds[i].verb : "",
				cli_cmds[i].summary);
	fprintf(f, "\nRun 'bsyncctl %s COMMAND --help' for a command's options.\n", noun);
}

void cli_print_main_help(FILE *f)
{
	size_t i;

	fputs("usage: bsyncctl [--socket PATH] [--json] COMMAND [ARGS...]\n"
	      "\n"
	      "Incremental block backups of bsync devices, through bsyncd.\n"
	      "\n"
	      "Commands:\n", f);
	for (i = 0; i < cli_ncmds; i++) {
		const struct cli_cmd *c = &cli_cmds[i];
		char words[32];

		snprintf(words, sizeof(words), "%s%s%s", c->noun, c->verb ? " " : "",
			 c->verb ? c->verb : "");
		fprintf(f, "  %-16s %s\n", words, c->summary);
	}
	fprintf(f, "\nRun 'bsyncctl COMMAND --help' for a command's arguments and options.\n\n"
		"%s  --version           print the version\n\n%s", common_help, exit_help);
}

