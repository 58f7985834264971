#!/bin/bash
# Train minwa on several nodes under SLURM: one torchrun per node, torchrun starts one process per GPU.
#
#   sbatch --nodes=4 scripts/slurm-minwa.sh --recipe deepimage --set data.train=/shared/imagenet-shards \
#          --set parallel.strategy=hybrid --set out=/shared/runs/deepimage16
#
# Everything after the script name is passed to `minwa train`. The run folder (out=...) and the data
# must be on a filesystem every node sees: checkpoints are written by all ranks into one folder.
#SBATCH --job-name=minwa
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-4}}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${MINWA_PORT:-29500}
PYTHON=${PYTHON:-python}

# NCCL picks the fastest interconnect itself; uncomment to pin the network interface.
# export NCCL_SOCKET_IFNAME=ib0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_PER_TASK:-8} / GPUS_PER_NODE ))}

srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run \
    --nnodes="$SLURM_JOB_NUM_NODES" \
    --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv_id="$SLURM_JOB_ID" \
    --rdzv_backend=c10d \
    --rdzv_endpoint="$HEAD_NODE:$PORT" \
    -m minwa train "$@"
