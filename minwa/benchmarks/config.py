"""Each benchmark's settings: a small dataclass with a ``check``, loaded like ``minwa train``'s
(``--config FILE`` then ``--set key=value``; ``minwa.commands.bench``). Torch-free: ``minwa --help``
builds every bench's parser from these without importing the benchmarks themselves."""

from __future__ import annotations

from dataclasses import dataclass, field

from minwa import config as config_io
from minwa.errors import check_rules
from minwa.train import config as train_config
from minwa.data.config import FASHION_MNIST
from minwa.train.recipes import RECIPES, get_recipe
from minwa.utils import runtime_config
from minwa.utils.runtime_config import RuntimeConfig

STRATS = ("fsdp", "butterfly", "hybrid")  # the strategies the scaling bench compares with one process


def _subset(items, known: tuple, key: str):
    unknown = [s for s in items if s not in known]
    return (not unknown, f"{key} may name only {', '.join(known)}, not {', '.join(unknown)}")


@dataclass
class LoaderBenchConfig:
    data: str = ""  # packed folder of JPEG shards (default: the make_corpus one)
    make_corpus: int = 0  # first make N photos and pack them
    work: str = "runs/bench-loader"  # folder for the corpus and its shards
    size: int = 224  # S: output images are S x S
    batch_size: int = 128
    workers: int = 0  # worker processes for every contestant (0 = cores)
    rounds: int = 3
    images: int = 0  # images per measurement (0 = the whole set)
    skip: list[str] = field(default_factory=list)  # contestants to leave out: pil, webdataset
    json: bool = False  # print one JSON object
    # runtime.device: also time the device-cache path there (e.g. cuda)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))


@dataclass
class AugmentBenchConfig:
    preset: str = "deepimage"  # augmentation preset
    scale: int = 512  # S: input images are S x S
    crop: int = 224  # C: output crops are C x C
    batch_size: int = 128
    images: int = 0  # images per round and contestant (0 = 1024 on a CPU, 65536 on a GPU)
    rounds: int = 3
    cores: int = 0  # threads for minwa = worker processes for the peer (0 = all)
    backend: str = "auto"  # minwa's CPU path: auto | torch | numba
    layout: str = "nhwc"  # nhwc | nchw: the layout of the input batch minwa is timed on
    skip: list[str] = field(default_factory=list)  # contestants to leave out: albumentations, torch, nchw
    json: bool = False
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))  # the augmenter's device


@dataclass
class TrainBenchConfig:
    data: str = FASHION_MNIST  # Fashion-MNIST IDX folder
    recipe: str = "fashion"
    target: float = 0.94  # test accuracy to reach (0..1); the run is not cut short
    thresholds: list[float] = field(default_factory=lambda: [0.92, 0.93, 0.94])  # also the time to each
    budget: float = 600.0  # seconds of training at most, per contestant
    peer: bool = True  # also the plain PyTorch script
    peer_epochs: int = 5
    pack: bool = False  # pack to shards first and train from them (timed apart)
    out: str = "runs/bench-train"
    json: bool = False
    # the recipe's TrainConfig fields to change, e.g. --set train.epochs=2 --set train.runtime.precision=fp32
    train: dict = field(default_factory=dict)


@dataclass
class ScalingBenchConfig:
    model: str = "deepimage-tiny"  # registry model (an FC head is needed for hybrid)
    img_size: int = 0  # input size (0 = the model's default scale)
    in_chans: int = 0  # input channels (0 = the model's default)
    num_classes: int = 10
    strategies: list[str] = field(default_factory=lambda: list(STRATS))
    procs: list[int] = field(default_factory=list)  # process counts (empty: 1, 2, 4, ... up to the GPUs/cores)
    batch_per_rank: int = 64  # images per rank per step (paper: 64)
    steps: int = 10  # timed steps
    warmup: int = 3
    repeats: int = 3  # timed windows of `steps`; the best one counts
    overhead: bool = True  # also each strategy's overhead on one rank
    out: str = ""  # also write results.json and scaling.png here
    json: bool = False
    # precision bf16: FSDP/hybrid compute in bf16, DDP under autocast; threads per process (on CPU one
    # process per core: 1)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(precision="fp32", threads=1))


@dataclass
class ThroughputBenchConfig:
    model: str = "deepimage16"  # registry model (Table 2)
    size: int = 224  # C: the crop fed to the network
    scale: int = 0  # S: the loader's image side (0 = round(C*256/224))
    batch: int = 256  # images per step
    steps: int = 20  # timed steps per round and path
    warmup: int = 5  # untimed steps before each path's first round
    repeats: int = 3  # rounds; the median round counts
    compile: bool = False  # torch.compile the model (as model.compile=true)
    augment: str = "deepimage"  # augmentation preset
    data: str = ""  # packed folder of JPEG shards (default: the make_corpus one)
    make_corpus: int = 0  # first make N photos and pack them
    work: str = "runs/bench-throughput"  # folder for the corpus, shards and run files
    workers: int = 0  # decode processes (0 = cores - 1, at least 1)
    prefetch: int = 2  # batches held ready on the device (0: no thread)
    cache: str = "none"  # also time cached paths: none | device (decoded pixels) | jpeg (nvJPEG) | all
    cudnn_benchmark: bool = True  # let cuDNN pick its fastest kernels
    peak_n: int = 0  # largest matmul side of the measured peak (0 = the device's default sizes)
    json: bool = False
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class IntegrityBenchConfig:
    images: int = 64  # JPEGs to time
    quality: int = 95  # JPEG quality of the images (95: ~100 KB)
    rounds: int = 5
    json: bool = False


@dataclass
class ServeBenchConfig:
    # registry model @ crop C (scale S = round(C*256/224)), random weights: one whose batched inference
    # dominates a request's cost, one where HTTP and decoding do
    models: list[str] = field(default_factory=lambda: ["resnet50@224", "resnet-tiny@32"])
    num_classes: int = 1000
    clients: list[int] = field(default_factory=lambda: [1, 8, 32, 128])  # concurrent clients, dynamic batching
    single_clients: list[int] = field(default_factory=lambda: [1, 32])  # also run with max_batch 1
    seconds: float = 10.0  # each level's window, at least (and one more answer per client)
    max_seconds: float = 240.0  # each level, warm-up included, at most
    soak: float = 60.0  # seconds at the peak level: no failed request, resident memory flat
    half_peak: float = 20.0  # seconds of open-loop load at half the peak rate (p99 against p50)
    quick: bool = False  # seconds 3, soak 10, half_peak 8
    # the server's (dynamic batching) and the offline ceiling's batch: on 2 CPU cores resnet50@224 runs 6.3
    # images/s at batch 8 against 2.3-2.6 at batch 32 (docs/BENCHMARKS.md §13)
    max_batch: int = 8
    max_delay_ms: float = 5.0
    images: int = 64  # JPEGs of the corpus (500x375, from real photographs) the clients cycle through
    work: str = "runs/bench-serve"  # corpus, checkpoints, results.json
    json: bool = False
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))  # the server's and offline's


def check_loader(cfg: LoaderBenchConfig) -> LoaderBenchConfig:
    runtime_config.check(cfg.runtime)
    check_rules([
        (cfg.size >= 1 and cfg.batch_size >= 1 and cfg.rounds >= 1, "size, batch_size and rounds must be positive"),
        (cfg.workers >= 0 and cfg.images >= 0 and cfg.make_corpus >= 0,
         "workers, images and make_corpus must not be negative"),
        _subset(cfg.skip, ("pil", "webdataset"), "skip"),
    ])
    return cfg


def check_augment(cfg: AugmentBenchConfig) -> AugmentBenchConfig:
    runtime_config.check(cfg.runtime)
    check_rules([
        (cfg.scale >= cfg.crop >= 1, f"crop must be between 1 and scale {cfg.scale}, got {cfg.crop}"),
        (cfg.batch_size >= 1 and cfg.rounds >= 1, "batch_size and rounds must be positive"),
        (cfg.images >= 0 and cfg.cores >= 0, "images and cores must not be negative"),
        (cfg.backend in ("auto", "torch", "numba"), f"backend must be auto, torch or numba, not '{cfg.backend}'"),
        (cfg.layout in ("nhwc", "nchw"), f"layout must be nhwc or nchw, not '{cfg.layout}'"),
        _subset(cfg.skip, ("albumentations", "torch", "nchw"), "skip"),
    ])
    return cfg


def check_train(cfg: TrainBenchConfig) -> TrainBenchConfig:
    """Also the recipe with ``cfg.train`` applied, as ``minwa train`` would check it."""
    check_rules([(cfg.recipe in RECIPES, f"unknown recipe '{cfg.recipe}' (known: {', '.join(RECIPES)})")])
    train_config.check(config_io.merge(get_recipe(cfg.recipe), {"data": {"train": cfg.data}, **cfg.train}, "train"))
    check_rules([
        (0 < cfg.target <= 1, f"target is a test accuracy in (0, 1], got {cfg.target}"),
        (all(0 < t <= 1 for t in cfg.thresholds), f"thresholds are accuracies in (0, 1], got {cfg.thresholds}"),
        (cfg.budget > 0, f"budget must be a positive number of seconds, got {cfg.budget}"),
        (cfg.peer_epochs >= 1, f"peer_epochs must be at least 1, got {cfg.peer_epochs}"),
    ])
    return cfg


def check_scaling(cfg: ScalingBenchConfig) -> ScalingBenchConfig:
    runtime_config.check(cfg.runtime, ("auto", "bf16", "fp32"))
    check_rules([
        _subset(cfg.strategies, STRATS, "strategies"),
        (all(n >= 1 for n in cfg.procs), f"procs must be positive process counts, got {cfg.procs}"),
        (cfg.batch_per_rank >= 1 and cfg.steps >= 1 and cfg.repeats >= 1,
         "batch_per_rank, steps and repeats must be positive"),
        (cfg.warmup >= 0 and cfg.img_size >= 0 and cfg.in_chans >= 0, "warmup, img_size and in_chans must not be negative"),
        (cfg.num_classes >= 1, f"num_classes must be positive, got {cfg.num_classes}"),
    ])
    return cfg


def check_throughput(cfg: ThroughputBenchConfig) -> ThroughputBenchConfig:
    runtime_config.check(cfg.runtime, ("auto", "bf16", "fp16", "fp32"))
    scale = cfg.scale or round(cfg.size * 256 / 224)
    check_rules([
        (1 <= cfg.size <= scale, f"size {cfg.size} must be positive and at most scale {scale}"),
        (cfg.batch >= 1 and cfg.steps >= 1 and cfg.repeats >= 1, "batch, steps and repeats must be positive"),
        (min(cfg.warmup, cfg.workers, cfg.prefetch, cfg.make_corpus, cfg.peak_n) >= 0,
         "warmup, workers, prefetch, make_corpus and peak_n must not be negative"),
        (cfg.cache in ("none", "device", "jpeg", "all"), f"cache must be none, device, jpeg or all, not '{cfg.cache}'"),
    ])
    return cfg


def check_serve(cfg: ServeBenchConfig) -> ServeBenchConfig:
    runtime_config.check(cfg.runtime, ("auto", "bf16", "fp16", "fp32"))
    bad = [m for m in cfg.models if m.count("@") != 1 or not m.split("@")[1].isdigit() or int(m.split("@")[1]) < 1]
    check_rules([
        (cfg.models and not bad, f"models are MODEL@CROP (e.g. resnet50@224), got {bad or cfg.models}"),
        (cfg.clients and min(cfg.clients + cfg.single_clients or [1]) >= 1 and max(cfg.clients) <= 1024,
         f"clients must be 1..1024, got {cfg.clients} and {cfg.single_clients}"),
        (cfg.seconds > 0 and cfg.max_seconds >= cfg.seconds, "seconds must be positive and at most max_seconds"),
        (cfg.soak >= 0 and cfg.half_peak >= 0, "soak and half_peak must not be negative"),
        (cfg.max_batch >= 1 and cfg.images >= 1 and cfg.num_classes >= 1, "max_batch, images and num_classes must be positive"),
        (cfg.max_delay_ms >= 0, f"max_delay_ms must not be negative, got {cfg.max_delay_ms}"),
    ])
    return cfg


def check_integrity(cfg: IntegrityBenchConfig) -> IntegrityBenchConfig:
    check_rules([
        (cfg.images >= 1 and cfg.rounds >= 1, "images and rounds must be positive"),
        (1 <= cfg.quality <= 100, f"quality must be in [1, 100], got {cfg.quality}"),
    ])
    return cfg


# bench name -> (its config class, its check); every config is also checked for finite numbers
BENCH_CONFIGS = {
    "loader": (LoaderBenchConfig, check_loader),
    "augment": (AugmentBenchConfig, check_augment),
    "train": (TrainBenchConfig, check_train),
    "scaling": (ScalingBenchConfig, check_scaling),
    "throughput": (ThroughputBenchConfig, check_throughput),
    "integrity": (IntegrityBenchConfig, check_integrity),
    "serve": (ServeBenchConfig, check_serve),
}


def check(name: str, cfg):
    """The bench ``name``'s settings, each impossible one refused in one sentence before any work."""
    config_io.check_finite(cfg)
    return BENCH_CONFIGS[name][1](cfg)
