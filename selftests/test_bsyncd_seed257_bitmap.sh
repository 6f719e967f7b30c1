#!/bin/bash
# QEMU iotest 257 on bsyncd, part 1: the nine sync=bitmap runs (never,
# on-success, always x simulated, intermediate, no failure).  The runs are
# in bsyncd-seed257.sh; split in three so that make check's guests can share
# them out.
export SEED_RUNS=${SEED_RUNS:-"$(for b in never on-success always; do
	for f in simulated intermediate none; do echo "bitmap:$b:$f"; done; done | xargs)"}
exec "$(dirname "$0")/bsyncd-seed257.sh"
