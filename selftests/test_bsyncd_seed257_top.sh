#!/bin/bash
# QEMU iotest 257 on bsyncd, part 3: the six sync=top runs (on-success,
# always x simulated, intermediate, no failure). The runs are in
# bsyncd-seed257.sh.
export SEED_RUNS=${SEED_RUNS:-"$(for b in on-success always; do
	for f in simulated intermediate none; do echo "top:$b:$f"; done; done | xargs)"}
exec "$(dirname "$0")/bsyncd-seed257.sh"
