"""Worker processes that decode whole batches into a ring of shared-memory slots.

Why not torch's ``DataLoader``: it allocates a fresh shared-memory segment for every batch, so each
batch costs the workers a page fault per 4 KiB (39 faults and ~150-230 us of kernel time per 224x224
image here) and the main process ~85 us per image to receive, map and unmap it. Here the slots are
allocated once per epoch and reused: a worker writes a batch straight into a free slot and the main
process hands that memory to the consumer without copying it (see ``BatchWorkers``). Measured on the
2-core machine, CPU time per 500x375 JPEG at 224x224, workers + main process: ~1,240 us with
DataLoader, ~950 us with DataLoader and batches allocated in shared memory, ~800 us here.

Page faults were still most of the hand-over: a worker's first write to a shared 4 KiB page costs a
fault, and a never-written page also costs the kernel zeroing it (~2.7 us per page, 37 pages per
224x224 image, 100 us per image on a fresh slot). So slots outlive a loader (``_POOL``: the next epoch's
or the next loader's workers write into pages that already exist) and each worker owns a fixed subset of
the slots (slot ``s`` belongs to worker ``s % K``), so it maps half as many pages per epoch with two
workers. Measured on the benchmark corpus: ~19 -> ~10 faults and ~750 -> ~715 worker CPU us per image.

Batch ``b`` goes to worker ``(b - start) % K`` (``minwa.data.order.worker_batches``); batches are yielded
in order, so the output never depends on the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import signal

import numpy as np
import torch

from minwa.data import order as ordering
from minwa.errors import MinwaError

_POLL_S = 1.0


def _context():
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def ring_size(workers: int, prefetch: int) -> int:
    """Batch slots of a ``BatchWorkers`` ring (at most): ``prefetch`` per worker plus the one handed over."""
    return workers * prefetch + 1


def _worker_main(reader, order, batch_size, rank, world_size, images, labels, indices, tasks, results):
    """Decode the batches asked for into their slots; report (batch, slot, rows, error sentence or None,
    records of damaged samples skipped). Every failure crosses as one sentence, never a traceback.
    Ctrl-C reaches the whole process group: the trainer decides what it means (save, then stop), and it
    ends its workers itself, so a worker ignores SIGINT rather than dying mid-batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    while True:
        task = tasks.get()
        if task is None:
            return
        b, slot = task
        try:
            batch = ordering.global_batch(order, b, batch_size)
            bounds = ordering.rank_bounds(len(batch), rank, world_size)
            n = bounds[1] - bounds[0]
            used, bad = reader.fill(batch, b, bounds, images[slot][:n])
            labels[slot, :n] = torch.from_numpy(reader.ds.labels[used])
            indices[slot, :n] = torch.from_numpy(used)
            results.put((b, slot, n, None, bad))
        except MinwaError as e:
            results.put((b, slot, 0, str(e), []))
        except BaseException as e:  # a bug: the sentence says how to see its traceback
            results.put((b, slot, 0, f"a data loader worker failed on batch {b} ({type(e).__name__}: {e}); "
                                     "run with data.workers=0 to see where", []))


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory, allocated there directly (``share_memory_()`` would
    allocate, then copy: 180 ms of the main process per epoch for five 224x224x128 slots)."""
    nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None or nbytes == 0:
        return torch.empty(shape, dtype=dtype).share_memory_()
    return torch.empty(0, dtype=dtype).set_(new_shared(nbytes)).view(shape)


def image_format(channels: int) -> torch.memory_format:
    """The memory of a batch of uint8 images: channels-last for colour (what the decoder writes and the
    augmentation kernel reads fastest: 12,555 vs 6,911 img/s on ``deepimage``), planar for gray (the
    same bytes either way; planar strides keep 1-channel batches exactly as before)."""
    return torch.channels_last if channels > 1 else torch.contiguous_format


def empty_images(shape: tuple[int, int, int, int], pin: bool = False) -> torch.Tensor:
    """An uninitialised uint8 N x C x H x W batch in ``image_format`` memory (page-locked with ``pin``)."""
    return torch.empty(shape, dtype=torch.uint8, memory_format=image_format(shape[1]), pin_memory=pin)


def hwc(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W seen as N x H x W x C: a dense (contiguous) tensor for ``image_format`` memory."""
    return images.permute(0, 2, 3, 1)


def _shared_images(shape: tuple[int, int, int, int]) -> torch.Tensor:
    """``empty_images`` in shared memory: N x H x W x C storage seen as N x C x H x W for colour."""
    n, c, h, w = shape
    if image_format(c) == torch.contiguous_format:
        return _shared_empty(shape, torch.uint8)
    return _shared_empty((n, h, w, c), torch.uint8).permute(0, 3, 1, 2)


# Idle batch slots of finished epochs, reused by the next BatchWorkers of the same slot shape.
_POOL: list[torch.Tensor] = []
_POOL_MAX_BYTES = 512 * 2**20


def _take_slots(shape: tuple[int, ...], n: int) -> list[torch.Tensor]:
    """``n`` shared uint8 slots of ``shape`` (N x C x H x W, ``image_format`` memory): pooled ones first
    (their pages exist already), then new."""
    got = [t for t in _POOL if tuple(t.shape) == shape][:n]
    taken = {id(t) for t in got}
    _POOL[:] = [t for t in _POOL if id(t) not in taken]  # by identity: list.remove would compare tensors
    return got + [_shared_images(shape) for _ in range(n - len(got))]


def _return_slots(slots: list[torch.Tensor]) -> None:
    """Keep ``slots`` for the next epoch (the newest first), within ``_POOL_MAX_BYTES`` of shared memory."""
    _POOL[:0] = slots
    total = 0
    for i, t in enumerate(_POOL):
        total += t.numel()
        if total > _POOL_MAX_BYTES:
            del _POOL[i:]
            break


def _use_count(t: torch.Tensor) -> int | None:
    """How many tensors share ``t``'s memory (None where this torch cannot say)."""
    fn = getattr(torch._C, "_storage_Use_Count", None)
    return fn(t.untyped_storage()._cdata) if fn else None


class BatchWorkers:
    """Decode batches ``start..stop-1`` of one epoch in ``workers`` processes; iterate to get them.

    Slots are N x H x W x C storage seen as N x C x H x W (``image_format``): each image is resized
    straight into its row in the decoder's own layout, and the batch leaves channels-last, no copy made.
    A batch is handed over as a view of its slot ("lent"), not a copy, when the target is the CPU; the
    slot is reused only once nothing refers to that memory any more (torch's storage use count), so a
    consumer that keeps batches (``list(loader)``) is safe: when too few slots are left, batches are
    copied out instead. For CUDA the batch is copied into pinned memory for the asynchronous transfer.
    Iterating yields (images, labels, indices, records of the damaged samples skipped in that batch).
    """

    def __init__(self, reader, order: np.ndarray, batch_size: int, rank: int, world_size: int,
                 start: int, stop: int, workers: int, prefetch: int, pin: bool):
        self.start, self.stop, self.pin = start, stop, pin
        self.folder = reader.ds.path
        per_rank = max(ordering.rank_bounds(batch_size, r, world_size)[1] - ordering.rank_bounds(batch_size, r, world_size)[0]
                       for r in range(world_size))
        n_slots = max(1, min(ring_size(workers, prefetch), stop - start))
        self.slots = _take_slots((per_rank, *reader.out_shape), n_slots)
        self.labels = _shared_empty((n_slots, per_rank), torch.int64)
        self.indices = _shared_empty((n_slots, per_rank), torch.int64)
        self.idle_count = [_use_count(t) for t in self.slots]
        ctx = _context()
        self.results = ctx.SimpleQueue()
        self.tasks = [ctx.SimpleQueue() for _ in range(workers)]
        self.procs = [
            ctx.Process(target=_worker_main, daemon=True,
                        args=(reader, order, batch_size, rank, world_size, self.slots, self.labels, self.indices,
                              self.tasks[w], self.results))
            for w in range(workers)
        ]  # fmt: skip
        for p in self.procs:
            p.start()
        self.owner = [s % workers for s in range(n_slots)]  # a worker only ever writes its own slots
        self.owned = [self.owner.count(w) for w in range(workers)]
        self.free = list(range(n_slots))
        self.lent: list[int] = []
        self.next_task = start

    def _reclaim(self):
        still = []
        for s in self.lent:
            (self.free if _use_count(self.slots[s]) == self.idle_count[s] else still).append(s)
        self.lent = still

    def _issue(self):
        self._reclaim()
        while self.next_task < self.stop:
            b = self.next_task
            w = (b - self.start) % len(self.tasks)
            slot = next((s for s in self.free if self.owner[s] == w), None)
            if slot is None:  # batches are issued in order: the next one waits for its worker's slot
                return
            self.free.remove(slot)
            self.tasks[w].put((b, slot))
            self.next_task += 1

    def _result(self):
        while True:
            # SimpleQueue has no timeout: poll its reader so that a dead worker cannot hang us
            if self.results._reader.poll(_POLL_S):
                return self.results.get()
            self._issue()  # slots the consumer let go of meanwhile
            dead = [p for p in self.procs if not p.is_alive()]
            if dead and dead[0].exitcode == -signal.SIGBUS:
                raise MinwaError(f"a data loader worker was killed (SIGBUS) reading {self.folder}: a shard file shrank "
                                 f"while it was mapped (re-packed or truncated in place?); run `minwa verify {self.folder}`")
            if dead:
                raise MinwaError(f"a data loader worker died (exit code {dead[0].exitcode}); out of memory?")

    def _hand_over(self, slot: int, n: int) -> torch.Tensor:
        view = self.slots[slot][:n]
        w = self.owner[slot]
        # the consumer let go of the batch before last only when it asked for this one: take that slot
        # back first, or a worker with two slots would see both lent and this batch would be copied
        self._reclaim()
        lent_of_w = sum(self.owner[s] == w for s in self.lent)
        # lend only while the owning worker keeps a slot to write into
        lendable = not self.pin and self.idle_count[slot] is not None and lent_of_w + 1 < self.owned[w]
        if lendable:
            self.lent.append(slot)
            return view
        out = empty_images(tuple(view.shape), self.pin)
        hwc(out).numpy()[...] = hwc(view).numpy()  # one plain memcpy (torch's copy_ may spread it over busy cores)
        self.free.append(slot)
        return out

    def __iter__(self):
        done: dict[int, tuple[int, int]] = {}
        try:
            self._issue()
            for b in range(self.start, self.stop):
                while b not in done:
                    rb, slot, n, err, bad = self._result()
                    if err:
                        raise MinwaError(err)
                    done[rb] = (slot, n, bad)
                slot, n, bad = done.pop(b)
                out = (self._hand_over(slot, n), self.labels[slot, :n].clone(), self.indices[slot, :n].clone(), bad)
                self._issue()
                yield out
                del out
        finally:
            self.close()

    def close(self):
        for q in self.tasks:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if self.procs:
            self._reclaim()
            _return_slots([self.slots[s] for s in self.free])  # slots still lent stay with the consumer
        self.procs = []
