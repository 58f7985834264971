"""Loader settings (owned by the data stage)."""

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    train: str = ""  # packed shards folder (or a raw source: IDX folder, ImageFolder, .lst)
    val: str = ""  # evaluation data: shards or a raw source; for an IDX folder the test split is used
    scale: int = 0  # S: shorter side resized to S, centre S x S handed over (0 = keep the native size)
    crop: int = 0  # C: the C x C crop fed to the network, cut by the augmenter (0 = same as scale / native)
    random_resized_crop: bool = False  # Inception-style area/aspect crop instead of the paper's S -> C crop
    batch_size: int = 256  # global batch (all ranks together), in images
    workers: int = 2  # decode processes per rank (0 = decode in the training process)
    cache: str = "auto"  # auto | memory | device | jpeg | none: decoded uint8 images held (DESIGN §3.1
    # device cache), or (jpeg, CUDA) the JPEG bytes held and decoded by nvJPEG per batch
    seed: int = 0  # order of samples: permutation per (seed, epoch)
    drop_last: bool = True
    prefetch: int = 2  # batches decoded ahead per worker process (streaming path)
    shard_cache: bool = False  # several ranks: each caches 1/world of the set, batches traded (all_to_all)
    cache_gb: float = 0.0  # cache size limit in GiB (0 = auto: a quarter of RAM, a third of free device memory)
    classes: list[str] = field(default_factory=list)  # train/validate on these classes only (renumbered 0..k-1)
    on_bad_sample: str = "fail"  # a damaged sample in the shards: fail (one sentence naming it) | skip (its place in
    # the batch goes to the next good sample of the same global batch; counted in loader.bad_samples())
