"""Loader settings (owned by the data stage)."""

from dataclasses import dataclass, field

from minwa.errors import check_rules


CACHE_CHOICES = ("auto", "memory", "device", "jpeg", "none")
ON_BAD_SAMPLE = ("fail", "skip")
SQUARES = ("random", "centre")
MAX_SIDE = 4096  # px: data.scale / data.crop above this are typos (the paper's largest scale is 512)


# Debian's dataset-fashion-mnist: where the demo and the benchmarks read by default (no recipe points at it)
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

@dataclass
class DataConfig:
    train: str = ""  # packed shards folder (or a raw source: IDX folder, ImageFolder, .lst)
    val: str = ""  # evaluation data: shards or a raw source; for an IDX folder the test split is used
    val_fraction: float = 0.1  # without `val`: this fraction of each class of `train` is held out for validation
    # (stratified, drawn from `seed`, listed in the run's held_out.csv); 0 = no validation
    scale: int = 0  # S: shorter side resized to S, centre S x S handed over (0 = keep the native size)
    crop: int = 0  # C: the C x C crop fed to the network, cut by the augmenter (0 = same as scale / native)
    square: str = "random"  # train: where the S x S square sits along a photo's long side, drawn per sample and
    # epoch (random) or always the centre; validation and evaluation always take the centre
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


def check(cfg: DataConfig) -> DataConfig:
    """Reject impossible loader settings, each in one sentence, before any data is read."""
    check_rules([
        (cfg.scale >= 0 and cfg.crop >= 0, "data.scale and data.crop must not be negative"),
        (max(cfg.scale, cfg.crop) <= MAX_SIDE, f"data.scale and data.crop are at most {MAX_SIDE} px (got scale "
                                               f"{cfg.scale}, crop {cfg.crop}); the paper's largest scale is 512"),
        (0 <= cfg.val_fraction < 1, f"data.val_fraction is a fraction in [0, 1), got {cfg.val_fraction}"),
        (cfg.square in SQUARES, f"data.square must be {' or '.join(SQUARES)}, got '{cfg.square}'"),
        (cfg.batch_size >= 1, f"data.batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.workers >= 0, f"data.workers must not be negative (0 = decode in the training process), got {cfg.workers}"),
        (cfg.prefetch >= 1, f"data.prefetch must be at least 1, got {cfg.prefetch}"),
        (cfg.cache_gb >= 0, f"data.cache_gb must not be negative (0 = automatic), got {cfg.cache_gb}"),
        (cfg.cache in CACHE_CHOICES, f"data.cache must be one of {', '.join(CACHE_CHOICES)}, got '{cfg.cache}'"),
        (cfg.on_bad_sample in ON_BAD_SAMPLE, f"data.on_bad_sample must be {' or '.join(ON_BAD_SAMPLE)}, "
                                              f"got '{cfg.on_bad_sample}'"),
    ])
    return cfg
