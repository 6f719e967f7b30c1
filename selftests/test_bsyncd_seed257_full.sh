#!/bin/bash
# QEMU iotest 257 on bsyncd, part 2: the six sync=full runs (on-success,
# always x simulated, intermediate, no failure) and the backup API matrix.
# The runs are in bsyncd-seed257.sh; split in three so that make check's
# guests can share them out.
export SEED_RUNS=${SEED_RUNS:-"$(for b in on-success always; do
	for f in simulated intermediate none; do echo "full:$b:$f"; done; done | xargs) api"}
exec "$(dirname "$0")/bsyncd-seed257.sh"
