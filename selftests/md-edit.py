#!/usr/bin/env python3
"""Test fixture for bsync metadata devices (format: dm-bsync/dm-bsync-format.h).

  md-edit.py DEV current                  slot, generation and area of the current superblock
  md-edit.py DEV area-block BITMAP        block of a bitmap's bits in the current area
  md-edit.py DEV set FIELD VALUE [SLOT]   set a superblock field and fix its checksum
  md-edit.py DEV flip BLOCK OFFSET        invert one byte

Only what the tests need to damage metadata in controlled ways; the
product's reader is bsync-metadata.
"""
import os
import struct
import sys

BLOCK = 4096
MAGIC = 0x31444D434E595342
# name: (offset, struct format) in the superblock
FIELDS = {
    "version": (4, "<I"), "generation": (16, "<Q"), "dev_sectors": (24, "<Q"),
    "nr_blocks": (32, "<Q"), "log_blocks": (48, "<Q"), "area_blocks": (72, "<Q"),
    "flags": (80, "<I"), "nr_bitmaps": (84, "<I"), "area": (88, "<I"),
}


def _crc_table():
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (0x82F63B78 if n & 1 else 0)
        table.append(n)
    return table


CRC_TABLE = _crc_table()


def crc32c(data):
    # A byte at a time from a table: a bit at a time took seconds in a TCG guest.
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ CRC_TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def read_block(fd, n):
    return bytearray(os.pread(fd, BLOCK, n * BLOCK))


def write_block(fd, n, data):
    os.pwrite(fd, bytes(data), n * BLOCK)
    os.fsync(fd)


def valid(sb):
    return (struct.unpack_from("<Q", sb, 8)[0] == MAGIC and
            struct.unpack_from("<I", sb, 0)[0] == crc32c(sb[4:]))


def current(fd):
    best = None
    for slot in (0, 1):
        sb = read_block(fd, slot)
        if valid(sb):
            gen = struct.unpack_from("<Q", sb, 16)[0]
            if best is None or gen > best[1]:
                best = (slot, gen, sb)
    if best is None:
        sys.exit("md-edit: no valid superblock")
    return best


def main():
    dev, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    fd = os.open(dev, os.O_RDWR)
    # The kernel writes metadata with bios, past this device's page cache:
    # drop what an earlier reader may have left there.
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if cmd == "current":
        slot, gen, sb = current(fd)
        print(slot, gen, struct.unpack_from("<I", sb, 88)[0])
    elif cmd == "area-block":
        slot, gen, sb = current(fd)
        area = struct.unpack_from("<I", sb, 88)[0]
        start = struct.unpack_from("<Q", sb, 56 + 8 * area)[0]
        for i in range(struct.unpack_from("<I", sb, 84)[0]):
            base = 136 + 160 * i
            name = bytes(sb[base:base + 128]).split(b"\0")[0].decode()
            if name == args[0]:
                print(start + struct.unpack_from("<Q", sb, base + 136)[0])
                return
        sys.exit("md-edit: no bitmap " + args[0])
    elif cmd == "set":
        slot = int(args[2]) if len(args) > 2 else current(fd)[0]
        sb = read_block(fd, slot)
        off, fmt = FIELDS[args[0]]
        struct.pack_into(fmt, sb, off, int(args[1], 0))
        struct.pack_into("<I", sb, 0, crc32c(sb[4:]))
        write_block(fd, slot, sb)
    elif cmd == "flip":
        block, off = int(args[0]), int(args[1])
        data = read_block(fd, block)
        data[off] ^= 0xFF
        write_block(fd, block, data)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
