"""One training step of one strategy on n GPUs: a two-stream timeline (compute, and one communication
stream, as NCCL serialises a process group's collectives) built from what minwa's strategies issue
(``minwa/parallel/``):

- ``fsdp``: one FSDP2 unit per weight-owning layer, ``reshard_after_forward=False``: each unit's weights
  are all-gathered before its forward (the lazy update), the next unit's issued when the current one
  starts (``parallel.prefetch``); its gradients are reduce-scattered as soon as its backward ends; the
  optimizer steps on the 1/n shards once the last reduce-scatter is done. No all-gather in backward.
- ``butterfly``: DDP buckets (first 1 MB, then ``bucket_mb``, filled in reverse registration order), each
  reduce-scattered then all-gathered as soon as its last gradient is ready; the step waits for all.
- ``hybrid``: the trunk as fsdp over all n; the FC layers split over S = fc_split ranks with the
  tensor-parallel styles of ``minwa.parallel.hybrid.fc_plan`` (read here, not restated): their
  activation collectives block the compute stream; the FC shards are fsdp over the n/S replicas.
- ``none``: compute and the optimizer.

Each layer's time is a roofline: max(FLOPs / (fraction × peak), bytes / (memory efficiency × bandwidth)).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import ColwiseParallel

from minwa.parallel.hybrid import fc_plan
from minwa.plan.costs import MEMORY_EFFICIENCY, Fabric
from minwa.plan.hardware import GPU
from minwa.plan.profile import ModelProfile

FIRST_BUCKET_MB = 1.0  # DDP's first bucket (torch.distributed._DEFAULT_FIRST_BUCKET_BYTES)
# Communication hidden behind compute is not free: NCCL's kernels hold SMs and memory bandwidth while the
# layers run. Each second of overlapped collective slows compute by this much (one constant, stated in
# docs/distributed.md; NCCL uses a few to ~10% of the SMs for its channels).
CONTENTION = 0.1
OPTIMIZER_BYTES = 20  # SGD momentum per fp32 weight: read weight, gradient, momentum; write weight, momentum


@dataclass
class Machine:
    gpu: GPU
    fabric: Fabric
    precision: str
    mixed_precision: bool
    compute_fraction: float
    overhead_s: float

    @property
    def act_bytes(self) -> int:
        return 2 if self.precision in ("bf16", "fp16") else 4

    @property
    def gather_bytes(self) -> int:  # fsdp/hybrid all-gather weights in bf16 only for bf16 + mixed_precision
        return 2 if self.precision == "bf16" and self.mixed_precision else 4

    def roofline(self, flops: float, nbytes: float) -> float:
        return max(flops / (self.compute_fraction * self.gpu.flop_s(self.precision)),
                   nbytes / (MEMORY_EFFICIENCY * self.gpu.mem_bw_gbs * 1e9))


@dataclass
class Step:
    strategy: str
    gpus: int
    batch_per_gpu: float
    compute_s: float  # forward + backward + optimizer on one GPU
    comm_s: float  # exposed communication: time the GPU waits for a collective
    overhead_s: float
    total_s: float  # before the input side
    memory_bytes: float


def layer_times(m: Machine, prof: ModelProfile, b: float, fc_div: int = 1):
    """Forward and backward seconds per leaf layer for ``b`` images (FC weights divided by ``fc_div``)."""
    e, fwd, bwd = m.act_bytes, [], []
    for l in prof.layers:
        w = l.params * (m.act_bytes if l.params else 0) / (fc_div if l.name in prof.fc_names else 1)
        fwd.append(m.roofline(l.fwd_flops * b, l.act_elems * b * e + w))
        bwd.append(m.roofline(l.bwd_flops * b, 2 * l.act_elems * b * e + 3 * w))
    return fwd, bwd


class _Comm:
    """The communication stream: collectives run one after another, each from when it is issued."""

    def __init__(self):
        self.free = 0.0
        self.busy = 0.0

    def issue(self, at: float, seconds: float) -> float:
        self.free = max(at, self.free) + seconds
        self.busy += seconds
        return self.free


def _unit_of(prof: ModelProfile, units: list[str]) -> list[str]:
    return [next((u for u in units if l.name == u or l.name.startswith(u + ".")), "<root>") for l in prof.layers]


def _fsdp_timeline(m, prof, fwd, bwd, comm: _Comm, n: int, prefetch: bool, fc: dict, fc_comm) -> float:
    """fsdp's (and hybrid's) step; ``fc``: FC unit -> (group, stride) for hybrid's replicas; ``fc_comm``:
    layer name -> (forward seconds before, forward seconds after, backward seconds after) on the compute stream."""
    params = dict(prof.units)
    order = [u for u, _ in prof.units if u != "<root>"]
    unit_of = _unit_of(prof, order)
    group = {u: fc.get(u, (n, 1)) for u in params}
    held = {u: params[u] / group[u][1] for u in params}  # a split FC layer: each rank's 1/S of it
    ag = {u: m.fabric.all_gather(held[u] * m.gather_bytes, *group[u]) for u in params}
    rs = {u: m.fabric.reduce_scatter(held[u] * 4, *group[u]) for u in params}
    done = {"<root>": comm.issue(0.0, ag["<root>"])}
    t = done["<root>"]
    seq = [u for i, u in enumerate(unit_of) if u != "<root>" and u not in unit_of[:i]]
    for i, (layer, u) in enumerate(zip(prof.layers, unit_of)):
        if u in seq and u not in done:
            done[u] = comm.issue(t, ag[u])
        if u != "<root>":
            t = max(t, done[u])
            k = seq.index(u)
            if prefetch and k + 1 < len(seq) and seq[k + 1] not in done:
                done[seq[k + 1]] = comm.issue(t, ag[seq[k + 1]])
        before, after, _ = fc_comm.get(layer.name, (0.0, 0.0, 0.0))
        t += before + fwd[i] + after
    first = {u: min(i for i, v in enumerate(unit_of) if v == u) for u in seq}
    for i in reversed(range(len(prof.layers))):
        t += bwd[i] + fc_comm.get(prof.layers[i].name, (0.0, 0.0, 0.0))[2]
        u = unit_of[i]
        if u != "<root>" and first[u] == i:
            comm.issue(t, rs[u])
    comm.issue(t, rs["<root>"])
    return max(t, comm.free)


def _hybrid_fc_comm(m: Machine, prof: ModelProfile, b: float, s: int) -> dict:
    """Seconds of each FC layer's activation collectives (forward before, forward after, backward) over the
    S ranks, from the styles ``fc_plan`` gives them."""
    by_name = {l.name: l for l in prof.layers}
    f = m.fabric
    out = {}
    for name, style in fc_plan(prof.fc_names).items():
        layer = by_name[name]
        x, y = s * b * layer.in_features * m.act_bytes, s * b * layer.out_features * m.act_bytes
        src, dst = style.input_layouts[0], style.output_layouts[0]
        before = after = back = 0.0
        if isinstance(style, ColwiseParallel):
            if isinstance(src, Shard) and src.dim == 0:
                before, back = f.all_gather(x, s), f.reduce_scatter(x, s)
            elif isinstance(src, Replicate):
                back = f.all_reduce(x, s)
        else:
            if isinstance(src, Replicate):
                back += f.all_gather(x, s)
            elif isinstance(src, Shard) and src.dim == 0:
                before, back = f.all_to_all(x, s), f.all_to_all(x, s)
            if isinstance(dst, Replicate):
                after = f.all_reduce(y, s)
            elif isinstance(dst, Shard) and dst.dim == 0:
                after, back = f.reduce_scatter(y, s), back + f.all_gather(y, s)
        out[name] = (before, after, back)
    return out


def _buckets(prof: ModelProfile, cap_mb: float) -> list[tuple[int, float]]:
    """DDP's buckets: (index of the forward-earliest layer in it, bytes), in the order they become ready."""
    out, cur, first, cap = [], 0.0, None, FIRST_BUCKET_MB
    for i in reversed(range(len(prof.layers))):
        p = prof.layers[i].params
        if not p:
            continue
        cur, first = cur + p * 4, i
        if cur >= cap * 2**20:
            out.append((first, cur))
            cur, cap = 0.0, cap_mb
    if cur:
        out.append((first, cur))
    return out


def _butterfly_timeline(m, prof, fwd, bwd, comm: _Comm, n: int, bucket_mb: float) -> float:
    t = sum(fwd)
    ready = {}
    for first, nbytes in _buckets(prof, bucket_mb):
        ready.setdefault(first, []).append(nbytes)
    for i in reversed(range(len(prof.layers))):
        t += bwd[i]
        for nbytes in ready.get(i, []):
            comm.issue(t, m.fabric.reduce_scatter(nbytes, n) + m.fabric.all_gather(nbytes, n))
    return max(t, comm.free)


def step(m: Machine, prof: ModelProfile, strategy: str, n: int, b: float, *, fc_split: int = 0,
         bucket_mb: float = 25.0, prefetch: bool = True) -> Step | None:
    """The step of ``strategy`` on ``n`` GPUs at ``b`` images per GPU (None: hybrid's split does not divide n,
    or the model has no FC layers)."""
    e, comm, p = m.act_bytes, _Comm(), prof.params
    saved = b * sum(l.out_elems for l in prof.layers) * e
    fc_params = sum(l.params for l in prof.layers if l.name in prof.fc_names)
    if strategy == "hybrid":
        s = fc_split or n
        if not prof.fc_names or n % s:
            return None
        fwd, bwd = layer_times(m, prof, b, fc_div=s)
        fc_comm = _hybrid_fc_comm(m, prof, b, s) if s > 1 else {}
        fc = {u: (n // s, s) for u in prof.fc_names}
        end = _fsdp_timeline(m, prof, fwd, bwd, comm, n, prefetch, fc, fc_comm)
        fc_wait = sum(sum(v) for v in fc_comm.values())
        held = p / n
        fc_acts = sum(s * b * by.out_features * e for by in prof.layers if by.name in prof.fc_names)
        memory = held * 12 + (p - fc_params) * m.gather_bytes + fc_params / s * m.gather_bytes + saved + fc_acts
    else:
        fwd, bwd = layer_times(m, prof, b)
        fc_wait = 0.0
        if strategy == "fsdp" and n > 1:
            end = _fsdp_timeline(m, prof, fwd, bwd, comm, n, prefetch, {}, {})
            held = p / n
            memory = held * 12 + p * m.gather_bytes + saved
        elif strategy == "butterfly" and n > 1:
            end = _butterfly_timeline(m, prof, fwd, bwd, comm, n, bucket_mb)
            held = p
            memory = p * 16 + saved
        else:
            end, held = sum(fwd) + sum(bwd), p
            memory = p * 12 + saved
    opt = held * OPTIMIZER_BYTES / (MEMORY_EFFICIENCY * m.gpu.mem_bw_gbs * 1e9)
    layers = sum(fwd) + sum(bwd)
    waited = max(0.0, end - layers - fc_wait)  # the compute stream idle, waiting for the communication stream
    end += CONTENTION * max(0.0, comm.busy - waited)
    compute = layers + opt
    total = end + opt + m.overhead_s
    return Step(strategy if n > 1 else "none", n, b, compute, total - compute - m.overhead_s, m.overhead_s, total,
                memory)
