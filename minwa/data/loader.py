"""``build_loader``: rank-partitioned, seeded, resumable uint8 batches, from a cache or streamed.

What a batch holds: ``Batch(images, labels, indices)`` on the loader's device; ``images`` is uint8
N x C x H x W, ``labels`` int64, ``indices`` int64 global sample indices (the augmenter's per-sample key).
Colour images are in channels-last memory (an N x H x W x C buffer seen through ``permute(0, 3, 1, 2)``:
``images.is_contiguous(memory_format=torch.channels_last)``), the decoder's own layout and the one the
augmentation kernel reads 1.8x faster; 1-channel images are plainly contiguous (the same bytes). Either
way the pixel values are the same; call ``.contiguous()`` where planar memory is needed.

Sizes (``DataConfig.scale`` = S, ``crop`` = C): every image is handed over as **S x S** — the shorter
side resized to S, then an S x S square — on both paths, so the cache and the stream give bit-identical
batches; the random C x C crop (and the centre crop for evaluation) is the augmentation engine's job
(``Augmenter(out_size=C)``). Which square: in train mode with ``square = "random"`` (the default) its
position along the long side is drawn per sample and epoch (stream ``SQUARE_STREAM`` of
``minwa.utils.counter_rng``, keyed by (seed, epoch, index)), so over the epochs training sees the whole
photograph as the paper's crops from the whole rescaled image do; evaluation always takes the centre.
A square that moves needs the original image, so such a loader streams (as ``random_resized_crop`` does),
unless the images are all square already (Fashion-MNIST), when there is nothing to move. S = 0 keeps the native size when all images have one
(Fashion-MNIST's 28 x 28), else uses C. With ``random_resized_crop`` in train mode the loader itself cuts an
area/aspect box (area 8-100%, aspect 3/4-4/3, drawn by ``crop_uniforms`` from ``minwa.utils.counter_rng``,
keyed by (seed, epoch, index)) from the original image and hands over C x C; this needs the original
image, so it always streams.

Three paths, chosen by ``DataConfig.cache``:

- cache (``auto`` when it fits, ``memory``, ``device``): the whole data set decoded once into one uint8
  tensor (an IDX source is not decoded at all: its pixel array is used as is), on the target device for
  ``device`` (or ``auto`` on an accelerator); a batch is then one ``index_select``.
- JPEG cache (``jpeg``, CUDA only): the packed JPEG bytes held once in host memory and
  decoded per batch on the GPU by nvJPEG (``minwa.data.jpeg_cache``), for sets whose pixels do not fit
  the device but whose bytes fit the host; no CPU decoding. Batches equal the stream's to within a
  few grey levels (nvJPEG's IDCT is not libjpeg-turbo's).
- stream (``none``, or ``auto`` when the cache would not fit): ``workers`` processes each decode whole
  batches (simplejpeg with DCT-domain downscaling, Pillow fallback, torch's uint8 antialiased resize)
  into a ring of ``workers * prefetch + 1`` shared-memory slots (``minwa.data.workers``), handed over
  in order without a copy on the CPU (a slot is reused only once nothing refers to it) or through
  pinned memory when the device is CUDA. Batch ``start + k``
  goes to worker ``k % workers``: ``minwa.data.order.worker_batches``. ``workers=0`` decodes in the
  calling process.

Order and resume: ``minwa.data.order`` defines the epoch permutation and the rank slices. ``position``
counts the batches already handed to the consumer in the current epoch; ``state_dict()`` saved after
a step and ``load_state_dict()`` in a new process yield exactly the batches still to come. Iterating
again after an epoch ran to its end repeats that epoch unless ``set_epoch`` moved on.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
from typing import NamedTuple

import numpy as np
import torch

from minwa.data import decode as dec
from minwa.data.jpeg_cache import JpegCache
from minwa.data.sharded_cache import ShardedCache, owned
from minwa.data import order as ordering
from minwa.data.config import DataConfig
from minwa.data.config import check as check_data_config
from minwa.data.integrity import BadSample, all_damaged
from minwa.data.sources import ImageDataset
from minwa.data.workers import BatchWorkers, empty_images, hwc
from minwa.errors import MinwaError
from minwa.utils import counter_rng as rng

_RRC_AREA = (0.08, 1.0)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
RRC_STREAMS = (64, 65, 66, 67)  # area, aspect, x, y: the loader's streams of minwa.utils.counter_rng
SQUARE_STREAM = 68  # the random square's position along the long side


class Batch(NamedTuple):
    images: torch.Tensor  # uint8 N x C x H x W (channels-last memory when C > 1)
    labels: torch.Tensor  # int64 N
    indices: torch.Tensor  # int64 N: global sample indices

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))


# ------------------------------------------------------------------------------------- per-sample work
def crop_uniforms(streams: rng.Streams, seed: int, epoch: int, i: int) -> np.ndarray:
    """The four uniforms of sample ``i``'s random-resized-crop box (float32, ``RRC_STREAMS`` order)."""
    return rng.uniform(streams.bits([i], epoch, seed))[0]


def _rrc_box(h: int, w: int, u: np.ndarray) -> tuple[float, float, float, float]:
    """An Inception-style box (area 8-100%, aspect 3/4-4/3) from four uniforms, clipped to the image."""
    area = h * w * (_RRC_AREA[0] + (_RRC_AREA[1] - _RRC_AREA[0]) * u[0])
    ratio = math.exp(_RRC_LOG_RATIO[0] + (_RRC_LOG_RATIO[1] - _RRC_LOG_RATIO[0]) * u[1])
    bw, bh = min(w, math.sqrt(area * ratio)), min(h, math.sqrt(area / ratio))
    x0, y0 = u[2] * (w - bw), u[3] * (h - bh)
    return (x0, y0, x0 + bw, y0 + bh)


class _SampleReader:
    """Turns sample indices into equally sized C x H x W uint8 tensors; shared by both paths.

    ``skip``: a damaged sample (``BadSample``) is reported instead of raised, and in a batch its row gets
    the next good sample of the global batch (``minwa.data.order.replacements``)."""

    def __init__(self, dataset: ImageDataset, size: tuple[int, int], rrc: int, seed: int, skip: bool = False,
                 random_square: bool = False):
        self.ds, self.size, self.rrc, self.seed, self.skip = dataset, size, rrc, seed, skip
        self.random_square = random_square
        self.epoch = 0
        self.streams = rng.Streams(RRC_STREAMS)
        self.square_stream = rng.Streams((SQUARE_STREAM,))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        h, w = (self.rrc, self.rrc) if self.rrc else self.size
        return self.ds.channels, h, w

    def read(self, i: int, out: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | np.ndarray:
        """Sample ``i`` as C x H x W uint8, written into ``out`` when given (a row of a batch, or that row
        as an H x W x C numpy view: ``decode.resize_chw``)."""
        if self.rrc:
            return self._read_rrc(i, out)
        h, w = self.size
        img = self.ds.image(i, min_side=min(h, w))
        if img.shape[:2] == (h, w):
            return dec.resize_chw(img, (0, 0, w, h), h, w, out)
        if h != w:  # a native, non-square size that this image does not have
            raise MinwaError(f"{self.ds.source(i)} is {img.shape[1]}x{img.shape[0]}, the others {w}x{h}; set data.scale")
        return dec.resize_chw(img, dec.square_box(*img.shape[:2], self.square_at(i)), h, h, out)

    def square_at(self, i: int) -> float | None:
        """Where sample ``i``'s square sits along the long side this epoch (None: the centre)."""
        if not self.random_square:
            return None
        return float(rng.uniform(self.square_stream.bits([i], self.epoch, self.seed))[0, 0])

    def _read_rrc(self, i: int, out: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | np.ndarray:
        c = self.rrc
        u = crop_uniforms(self.streams, self.seed, self.epoch, i)
        size_of = getattr(self.ds, "size_of", None)
        if size_of is not None:
            h, w = size_of(i)
            x0, y0, x1, y1 = _rrc_box(h, w, u)
            need = c / max(1e-6, min(x1 - x0, y1 - y0))  # decoded pixels per original pixel
            img = self.ds.image(i, min_side=math.ceil(need * min(h, w)))
            sy, sx = img.shape[0] / h, img.shape[1] / w
            box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        else:
            img = self.ds.image(i)
            box = _rrc_box(img.shape[0], img.shape[1], u)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return dec.resize_chw(img, (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), c, c, out)

    def attempt(self, i: int, out: torch.Tensor | np.ndarray) -> dict | None:
        """Read sample ``i`` into ``out``; None when done, the damaged sample's record when skipping."""
        try:
            self.read(i, out)
            return None
        except BadSample as e:
            if not self.skip:
                raise
            return e.report(i)

    def fill(self, batch: np.ndarray, b: int, bounds: tuple[int, int], out: torch.Tensor) -> tuple[np.ndarray, list[dict]]:
        """Write the rows ``bounds`` = [lo, hi) of global batch ``b`` (sample indices ``batch``) into
        ``out`` (hi - lo x C x H x W), each resized straight into its row. Returns the sample indices
        written (a damaged one replaced when skipping) and the records of the damaged samples met."""
        lo, hi = bounds
        used, bad = batch[lo:hi].copy(), []
        rows = hwc(out).numpy()  # H x W x C numpy rows: no torch call per sample where no resize is needed
        for j, i in enumerate(batch[lo:hi].tolist()):
            record = self.attempt(i, rows[j])
            if record is None:
                continue
            bad.append(record)
            tried = (q for q in ordering.replacements(len(batch), lo + j) if self.attempt(int(batch[q]), rows[j]) is None)
            q = next(tried, None)
            if q is None:
                raise all_damaged(self.ds.path, b)
            used[j] = batch[q]
        return used, bad

    def batch(self, batch: np.ndarray, b: int, bounds: tuple[int, int]) -> tuple[Batch, list[dict]]:
        out = empty_images((bounds[1] - bounds[0], *self.out_shape))
        with _one_thread():
            used, bad = self.fill(batch, b, bounds, out)
        return Batch(out, torch.from_numpy(self.ds.labels[used]), torch.from_numpy(used)), bad


@contextlib.contextmanager
def _one_thread():
    """Per-image torch work in this process runs on one thread: spreading a 224x224 resize over
    threads costs far more than it gains (8 ms instead of 0.2 ms per image on a busy 2-core machine)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------- the cache
_FILL: dict = {}


def _fill_range(bounds: tuple[int, int]) -> list[dict]:
    reader, out, which = _FILL["reader"], _FILL["out"], _FILL["which"]
    records = (reader.attempt(j if which is None else int(which[j]), out[j]) for j in range(*bounds))
    return [r for r in records if r is not None]


def decode_all(dataset: ImageDataset, size: tuple[int, int], workers: int,
               which: np.ndarray | None = None, on_bad: list | None = None) -> torch.Tensor:
    """Every image of ``dataset`` (or the samples ``which``, in that order) at ``size`` in one
    N x C x H x W uint8 tensor (CPU), in the batches' memory layout (``workers.image_format``:
    channels-last for colour).

    An IDX source is copied as is (no decoding); otherwise ``workers`` forked processes decode ranges
    straight into one shared-memory tensor. A damaged sample raises its ``BadSample``; with a list
    ``on_bad`` its row is left as it is and its record appended there instead (in index order).
    """
    pixels = dataset.pixels()
    if pixels is not None and tuple(pixels.shape[1:3]) == tuple(size):
        pixels = pixels if which is None else pixels[which]
        if pixels.shape[3] > 1:  # N x H x W x C is channels-last memory already
            return torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).copy())
    reader = _SampleReader(dataset, size, 0, 0, skip=on_bad is not None)
    n = len(dataset) if which is None else len(which)
    out = empty_images((n, *reader.out_shape))
    found: list[dict] = []
    if workers <= 1 or n < 4096 or "fork" not in mp.get_all_start_methods():
        _FILL.update(reader=reader, out=out, which=which)
        try:
            with _one_thread():
                found = _fill_range((0, n))
        finally:
            _FILL.clear()
    else:
        out.share_memory_()
        _FILL.update(reader=reader, out=out, which=which)
        try:
            step = max(256, -(-n // (workers * 8)))
            chunks = [(a, min(n, a + step)) for a in range(0, n, step)]
            with mp.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for records in pool.imap_unordered(_fill_range, chunks):
                    found.extend(records)
        finally:
            _FILL.clear()
    if on_bad is not None:
        on_bad.extend(sorted(found, key=lambda r: r["index"]))
    return out


def _gather(cache: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Images ``idx`` of ``cache`` in its own memory layout: a channels-last cache is gathered as the
    dense N x H x W x C tensor it is (one block copy per image; ``index_select`` on the NCHW view would
    return planar memory)."""
    if cache.is_contiguous():
        return cache.index_select(0, idx) if out is None else torch.index_select(cache, 0, idx, out=out)
    if out is None:
        return hwc(cache).index_select(0, idx).permute(0, 3, 1, 2)
    torch.index_select(hwc(cache), 0, idx, out=hwc(out))
    return out


def _check_exchange(cache_device: torch.device) -> None:
    """A split cache trades images through the ranks' process group: there must be one, able to carry
    tensors of the cache's device."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise MinwaError("data.shard_cache trades images between ranks: start the ranks with torchrun")
    if dist.get_backend() == "nccl" and cache_device.type == "cpu":
        raise MinwaError("data.shard_cache on GPUs trades images through NCCL, so the cache must be on them: "
                         "use data.cache=device")


def _host_budget(cfg: DataConfig) -> int:
    if cfg.cache_gb > 0:
        return int(cfg.cache_gb * 2**30)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return total // 4


def _device_budget(cfg: DataConfig, device: torch.device) -> int:
    if cfg.cache_gb > 0:
        return int(cfg.cache_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 3
    return 0


# ------------------------------------------------------------------------------------------ the loader
class Loader:
    """Iterable over this rank's ``Batch``es of one epoch; see the module docstring."""

    def __init__(self, cfg: DataConfig, dataset: ImageDataset, *, train: bool, rank: int = 0,
                 world_size: int = 1, device="cpu", epoch: int = 0):
        check_data_config(cfg)
        if not 0 <= rank < world_size:
            raise MinwaError(f"rank {rank} is not in 0..{world_size - 1}")
        self.cfg, self.dataset, self.train = cfg, dataset, bool(train)
        self.rank, self.world_size = int(rank), int(world_size)
        self.device = torch.device(device)
        self.seed, self.epoch, self.position = int(cfg.seed), int(epoch), 0
        self._finished = False
        self.drop_last = bool(cfg.drop_last) and self.train
        self.rrc = (cfg.crop or cfg.scale) if (cfg.random_resized_crop and self.train) else 0
        if cfg.random_resized_crop and self.train and not self.rrc:
            raise MinwaError("data.random_resized_crop needs data.crop (or data.scale) to know the output size")
        self.size = self._size()
        self.skip = cfg.on_bad_sample == "skip"
        self.reader = _SampleReader(dataset, self.size, self.rrc, self.seed, skip=self.skip,
                                    random_square=self._random_square())
        self._bad: dict[int, dict] = {}  # damaged samples met (skip): index -> record with its "skipped" count
        self._bad_mask: np.ndarray | None = None  # damaged samples known up front (a cache), None if none
        self.cache: torch.Tensor | None = None  # N x C x H x W uint8 (this rank's share with shard_cache)
        self.shard = bool(cfg.shard_cache) and self.world_size > 1
        self.mode = self._choose_mode()
        if self.mode == "cache":
            if self.shard:
                _check_exchange(self.cache_device)
            self._build_cache()
        elif self.mode == "jpeg":
            found = [] if self.skip else None
            self.jpeg = JpegCache(dataset, self.size, self.device, on_bad=found)
            if self.jpeg.nbytes > _host_budget(cfg) * 3:
                raise MinwaError(f"data.cache=jpeg needs {self.jpeg.nbytes / 2**30:.1f} GiB of host memory for the JPEG "
                                 "bytes, more than there is room for; use data.cache=none")
            self._known_bad(found or [])

    # -- set-up --------------------------------------------------------------------------------------
    def _size(self) -> tuple[int, int]:
        if self.cfg.scale > 0:
            return (self.cfg.scale, self.cfg.scale)
        native = self.dataset.image_size()
        if native is not None:
            return tuple(int(v) for v in native)
        if self.rrc or self.cfg.crop > 0:
            c = self.rrc or self.cfg.crop
            return (c, c)
        raise MinwaError(f"the images in {self.dataset.path} differ in size (or it is not known); set data.scale")

    def _random_square(self) -> bool:
        """Whether this loader draws the square's position (train, ``square = "random"``, images that are
        not all square already)."""
        if not self.train or self.rrc or self.cfg.square != "random" or self.size[0] != self.size[1]:
            return False
        native = self.dataset.image_size()
        return native is None or native[0] != native[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images in every batch."""
        return self.reader.out_shape[1:]

    def _choose_mode(self) -> str:
        want = self.cfg.cache
        if want == "none":
            return "stream"
        if self.rrc or self.reader.random_square:
            if want in ("memory", "device", "jpeg"):
                what = ("data.random_resized_crop cuts boxes" if self.rrc else
                        "data.square=random places each training square anew every epoch, cut")
                raise MinwaError(f"{what} from the original images, so it cannot use data.cache={want}; use "
                                 "cache=auto or none" + ("" if self.rrc else ", or data.square=centre"))
            return "stream"
        if want == "jpeg":
            if self.device.type != "cuda":
                raise MinwaError(f"data.cache=jpeg decodes on a CUDA device with nvJPEG, and this run is on {self.device}; "
                                 "use data.cache=memory or none")
            return "jpeg"
        nbytes = len(self.dataset) * math.prod(self.reader.out_shape)
        if self.shard:
            nbytes = -(-nbytes // self.world_size)
        on_acc = self.device.type != "cpu"
        self.cache_device = self.device if (want == "device" or (want == "auto" and on_acc)) else torch.device("cpu")
        if want == "auto":
            if on_acc and nbytes <= _device_budget(self.cfg, self.device):
                return "cache"
            self.cache_device = torch.device("cpu")
            return "cache" if nbytes <= _host_budget(self.cfg) else "stream"
        room = _device_budget(self.cfg, self.cache_device) * 2 if self.cache_device.type != "cpu" else _host_budget(self.cfg) * 3
        if nbytes > room:
            raise MinwaError(f"data.cache={want} needs {nbytes / 2**30:.1f} GiB for {len(self.dataset):,} images of "
                             f"{self.reader.out_shape}, more than there is room for; use cache=auto or none")
        return "cache"

    def _build_cache(self):
        which = owned(len(self.dataset), self.rank, self.world_size) if self.shard else None
        found = [] if self.skip else None
        data = decode_all(self.dataset, self.size, self.cfg.workers, which, on_bad=found)
        self.cache = data.to(self.cache_device)
        self._labels = torch.from_numpy(self.dataset.labels).to(self.cache_device)
        if self.shard:
            self.sharded = ShardedCache(self.cache, self.rank, self.world_size)
        self._known_bad(found or [])

    # -- damaged samples (data.on_bad_sample = "skip") ------------------------------------------------
    def _known_bad(self, records: list[dict]) -> None:
        """Damaged samples found before the first batch (a cache reads every sample once). A split cache
        found only its own: the ranks agree on the union (a collective, as every split cache step is)."""
        if not self.skip:
            return
        mask = np.zeros(len(self.dataset), dtype=bool)
        mask[[r["index"] for r in records]] = True
        if self.shard:
            mask = self.sharded.union(mask)
        for r in records:
            self._bad[r["index"]] = {**r, "skipped": 0}
        self._bad_mask = mask if mask.any() else None

    def _note(self, records: list[dict]) -> None:
        for r in records:
            self._bad.setdefault(r["index"], {**r, "skipped": 0})["skipped"] += 1

    def _global(self, order: np.ndarray, b: int) -> np.ndarray:
        """Global batch ``b`` with the known damaged samples replaced (``ordering.substitute``); the
        replacements in this rank's slice are counted."""
        batch = ordering.global_batch(order, b, self.cfg.batch_size)
        if self._bad_mask is None:
            return batch
        try:
            out = ordering.substitute(batch, self._bad_mask)
        except ValueError:
            raise all_damaged(self.dataset.path, b) from None
        mine = ordering.rank_slice(batch, self.rank, self.world_size)
        self._note([self._bad.get(int(i)) or self._record(int(i)) for i in mine[self._bad_mask[mine]]])
        return out

    def _record(self, i: int) -> dict:
        """The record of a damaged sample another rank of a split cache found: read here to name it."""
        scratch = empty_images((1, *self.reader.out_shape))[0]
        return self.reader.attempt(i, scratch) or {"index": i, "shard": "", "key": "", "reason": "damaged on another rank"}

    def bad_samples(self) -> list[dict]:
        """The damaged samples met so far by this rank (``data.on_bad_sample = "skip"``), by index: each
        {"index", "shard", "key", "reason", "skipped"}, ``skipped`` = how many times its place in a batch
        went to another sample (once per epoch that handed it to this rank)."""
        return [dict(self._bad[i]) for i in sorted(self._bad)]

    # -- epochs, length, state -----------------------------------------------------------------------
    def __len__(self) -> int:
        return ordering.num_batches(len(self.dataset), self.cfg.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (the permutation is a function of (seed, epoch))."""
        self.epoch, self.position, self._finished = int(epoch), 0, False

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_samples": len(self.dataset), "batch_size": self.cfg.batch_size, "train": self.train}

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_samples"]) != len(self.dataset) or int(state["batch_size"]) != self.cfg.batch_size:
            raise MinwaError(f"the saved loader position is for {state['num_samples']} samples in global batches of "
                             f"{state['batch_size']}, this loader has {len(self.dataset)} and {self.cfg.batch_size}")
        self.seed = int(state["seed"])
        self.reader.seed = self.seed
        self.epoch, self.position, self._finished = int(state["epoch"]), int(state["position"]), False

    def order(self) -> np.ndarray:
        """The global sample order of the current epoch."""
        return ordering.epoch_order(len(self.dataset), self.seed, self.epoch, self.train)

    # -- iteration -----------------------------------------------------------------------------------
    def __iter__(self):
        if self._finished:
            self.position, self._finished = 0, False
        start, stop = self.position, len(self)
        self.reader.epoch = self.epoch
        if self.mode == "stream" and hasattr(self.dataset, "check_unchanged"):
            self.dataset.check_unchanged()  # files are read this epoch: they must be the ones opened
        batches = {"cache": self._cached, "jpeg": self._decoded_on_device}.get(self.mode, self._streamed)(start, stop)
        for b, batch in zip(range(start, stop), batches):
            self.position = b + 1
            yield batch
        self._finished = True

    def _cached(self, start: int, stop: int):
        if self.shard:
            yield from self._exchanged(start, stop)
            return
        order_np = self.order()
        # on the cache's device once, not a copy per batch; batches with damaged samples replaced are not
        order = torch.from_numpy(order_np).to(self.cache_device) if self._bad_mask is None else None
        bs, target = self.cfg.batch_size, self.device
        for b in range(start, stop):
            batch = order[b * bs : (b + 1) * bs] if order is not None else torch.from_numpy(self._global(order_np, b))
            idx = ordering.rank_slice(batch, self.rank, self.world_size).to(self.cache_device)
            if self.cache_device.type != "cpu":
                yield Batch(_gather(self.cache, idx), self._labels.index_select(0, idx), idx)
                continue
            pinned = target.type == "cuda"  # gather into page-locked memory so the copy runs asynchronously
            images = empty_images((len(idx), *self.cache.shape[1:]), pinned)
            with _one_thread():  # a gather is memory-bound: 2.7 ms on one thread, 54 ms on two busy ones
                _gather(self.cache, idx, images)
            batch = Batch(images, self._labels.index_select(0, idx), idx)
            yield batch if target.type == "cpu" else batch.to(target, non_blocking=pinned)

    def _exchanged(self, start: int, stop: int):
        order = self.order()
        for b in range(start, stop):
            batch = self._global(order, b)
            idx = torch.from_numpy(ordering.rank_slice(batch, self.rank, self.world_size)).to(self.cache_device)
            images = self.sharded.batch(batch)
            yield Batch(images, self._labels.index_select(0, idx), idx).to(self.device)

    def _decoded_on_device(self, start: int, stop: int):
        order = self.order()
        for b in range(start, stop):
            idx = ordering.rank_slice(self._global(order, b), self.rank, self.world_size)
            labels = torch.from_numpy(self.dataset.labels[idx])
            yield Batch(self.jpeg.batch(idx), labels.to(self.device), torch.from_numpy(idx).to(self.device))

    def _streamed(self, start: int, stop: int):
        if start >= stop:
            return
        order = self.order()
        pin = self.device.type == "cuda"
        if self.cfg.workers == 0:
            for b in range(start, stop):
                gb = ordering.global_batch(order, b, self.cfg.batch_size)
                batch, bad = self.reader.batch(gb, b, ordering.rank_bounds(len(gb), self.rank, self.world_size))
                self._note(bad)
                yield batch if self.device.type == "cpu" else batch.to(self.device)
            return
        pool = BatchWorkers(self.reader, order, self.cfg.batch_size, self.rank, self.world_size, start, stop,
                            self.cfg.workers, self.cfg.prefetch, pin)
        for images, labels, indices, bad in pool:
            self._note(bad)
            batch = Batch(images, labels, indices)
            yield batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=pin)


def build_loader(cfg: DataConfig, dataset: ImageDataset, *, train: bool, rank: int = 0, world_size: int = 1,
                 device="cpu", epoch: int = 0) -> Loader:
    """The loader for ``dataset`` on this rank (see the module docstring for sizes, paths and order)."""
    return Loader(cfg, dataset, train=train, rank=rank, world_size=world_size, device=device, epoch=epoch)
