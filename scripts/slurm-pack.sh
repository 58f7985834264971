#!/bin/bash
# Pack a source into shards with a SLURM job array: N tasks each pack one part, then one job merges them.
#
#   scripts/slurm-pack.sh 64 /shared/imagenet/train /shared/imagenet-shards [--max-side 512 --seed 0 ...]
#
# Submits `sbatch --array=0-63` running `minwa pack SRC OUT --part $SLURM_ARRAY_TASK_ID/64 ...` and a merge
# job that starts once every task has succeeded (afterok). SRC must be the same on every node (a shared
# filesystem, at the same path), and OUT a folder every node can write (see docs/data.md, "Packing on many
# machines", for separate disks). A task that failed or was killed: run `sbatch --array=K` of the same
# part script again (it keeps the shards it finished), then `minwa pack --merge OUT`.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 N SRC OUT [minwa pack options...]" >&2
    exit 2
fi
N=$1 SRC=$2 OUT=$3
shift 3
PYTHON=${PYTHON:-python}
CPUS=${CPUS_PER_TASK:-4}

mkdir -p "$OUT"
JOB=$(sbatch --parsable --job-name=minwa-pack --array=0-$((N - 1)) --cpus-per-task="$CPUS" --time=04:00:00 \
    --output="%x-%A_%a.out" \
    --wrap="$PYTHON -m minwa pack '$SRC' '$OUT' --part \$SLURM_ARRAY_TASK_ID/$N --workers $CPUS --quiet $*")
sbatch --job-name=minwa-merge --dependency=afterok:"$JOB" --cpus-per-task="$CPUS" --time=01:00:00 \
    --output="%x-%j.out" --wrap="$PYTHON -m minwa pack --merge '$OUT'"
echo "submitted array job $JOB ($N parts) and its merge"
