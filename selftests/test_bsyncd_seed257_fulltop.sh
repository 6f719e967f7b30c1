#!/bin/bash
# QEMU iotest 257 on bsyncd, part 2: the twelve sync=full/top runs
# (on-success, always x simulated, intermediate, no failure) and the backup
# API matrix.  The runs are in bsyncd-seed257.sh.
export SEED_RUNS=${SEED_RUNS:-"$(for s in full top; do for b in on-success always; do
	for f in simulated intermediate none; do echo "$s:$b:$f"; done; done; done | xargs) api"}
exec "$(dirname "$0")/bsyncd-seed257.sh"
