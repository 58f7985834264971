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
class HighresBenchConfig:
    work: str = "runs/bench-highres"  # the data set, its shards, the three runs and results.json / robustness.png
    data: str = ""  # an ImageFolder with train/ and test/ (default: make the small-objects set in work/data)
    train_images: int = 20000  # small-objects images made for training (reused when already there)
    test_images: int = 5000
    object_side: list[float] = field(default_factory=lambda: [0.08, 0.2])  # the item's side / the shorter side
    short_side: int = 512  # the made photographs' shorter side
    seed: int = 0  # the data set, the weights and the augmentation
    model: str = "photo-net"  # one registry family for all three models
    low_scale: int = 128  # S of the low-resolution model: shorter side resized to S, then
    low_crop: int = 112  # ... random C x C training crops
    high_scale: int = 256
    high_crop: int = 224
    # training seconds per model (validation excluded), the same for all three: 3 x 400 s leave ~15 of the
    # 40 minutes to pack, evaluate (5,000 images, 6 views and dense, 2 models) and the robustness curves
    budget_s: float = 400.0
    # > 0: every model trains this many epochs instead (budget_s unused): the same data seen whatever the
    # machine's speed, so the result does not depend on how busy it is (the quick run's way)
    epochs: float = 0.0
    batch_size: int = 64
    low_test_scales: list[int] = field(default_factory=lambda: [112, 128, 160])  # multi-scale testing
    high_test_scales: list[int] = field(default_factory=lambda: [224, 256, 320])
    flip: bool = True  # also the mirrored views
    dense: bool = True  # also whole images through the net (FC as convolution; global pooling: as it is)
    eval_limit: int = 0  # test images evaluated (0 = all)
    robustness: bool = True  # deepimage vs flips+crops only, under graded corruptions
    robust_limit: int = 500  # test images per corruption and severity (0 = all)
    quick: bool = False  # make test's pipeline check: larger items, 2,000 small images, scales 40/32 and 80/64
    json: bool = False
    train: dict = field(default_factory=dict)  # TrainConfig fields for all three runs, e.g. train.optim.lr=0.2
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class ExportBenchConfig:
    model: str = "resnet18"  # registry model, random weights (the speed does not depend on them)
    size: int = 224  # C: the input side
    in_chans: int = 3
    num_classes: int = 1000
    batches: list[int] = field(default_factory=lambda: [1, 32])  # batch sizes, each timed for every contestant
    seconds: float = 2.0  # each timed round runs at least this long (and at least one call)
    rounds: int = 3  # timed rounds per contestant and batch size; the median counts
    warmup: int = 2  # untimed calls first (torch.compile compiles in them)
    skip: list[str] = field(default_factory=list)  # contestants to leave out: onnxruntime, eager, compile
    json: bool = False
    # runtime.threads: torch's threads and onnxruntime's intra-op threads (0 = all cores); CPU, fp32 only
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu", precision="fp32"))


@dataclass
class ServeBenchConfig:
    # registry model @ crop C (scale S = round(C*256/224)), random weights: two whose batched inference
    # dominates a request's cost (the paper's deepimage16, whose FC weights make batching pay, and resnet50,
    # whose forward pass batches little on a CPU), one where HTTP and decoding do
    models: list[str] = field(default_factory=lambda: ["deepimage16@224", "resnet50@224", "resnet-tiny@32"])
    num_classes: int = 1000
    clients: list[int] = field(default_factory=lambda: [1, 8, 32, 128])  # concurrent clients, dynamic batching
    single_clients: list[int] = field(default_factory=lambda: [1, 32])  # also run with max_batch 1
    seconds: float = 10.0  # each level's window, at least (and one more answer per client)
    max_seconds: float = 240.0  # each level, warm-up included, at most
    soak: float = 60.0  # seconds at the peak level: no failed request, resident memory flat
    half_peak: float = 60.0  # seconds of open-loop load at half the peak rate (p99 against p50), at least,
    half_peak_requests: int = 500  # and long enough for this many requests: p99 is then the 5th slowest, not
    # the slowest one of a short window (20 s of deepimage16 held 84-89 answers: p99/p50 1.8x and 3.3x)
    quick: bool = False  # seconds 3, soak 10, half_peak 8 and 40 requests
    # the server's (dynamic batching) and the offline ceiling's batch: on 2 CPU cores resnet50@224 runs 6.3
    # images/s at batch 8 against 2.3-2.6 at batch 32 (docs/BENCHMARKS.md §13)
    max_batch: int = 8
    max_delay_ms: float = 5.0
    instances: int = 0  # the server's model instances (0 = its default: 2 on a CPU with 2 or more threads)
    images: int = 64  # JPEGs of the corpus (500x375, from real photographs) the clients cycle through
    work: str = "runs/bench-serve"  # corpus, checkpoints, results.json
    json: bool = False
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(device="cpu"))  # the server's and offline's


@dataclass
class Scale21kBenchConfig:
    data: str = ""  # a pack to measure (default: make the imagenet21k-synthetic one in work/, or reuse it)
    work: str = "runs/bench-scale21k"  # the made pack (29 GB at full size) and results.json
    samples: int = 14_197_087  # of the made pack: ImageNet-21k's size
    classes: int = 21_841
    ranks: int = 1024  # the rank partition: every rank's part of one epoch
    batch_per_rank: int = 32  # global batch = ranks x batch_per_rank (32 x 1024 = 32,768)
    workers: int = 2  # loader worker processes (0 = decode in the measuring process)
    batch_size: int = 256  # the loader's batch (one rank)
    loader_samples: int = 200_000  # samples timed after the first batch (the steady rate)
    repeats: int = 3  # fresh processes per open and per order measurement; the median counts
    cold: bool = True  # evict the indices from the page cache before the first open; time the loader from disk too
    quick: bool = False  # 50,000 samples in 1,000 classes in a temporary folder, fewer timed samples: seconds
    json: bool = False


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
        (cfg.soak >= 0 and cfg.half_peak >= 0 and cfg.half_peak_requests >= 0,
         "soak, half_peak and half_peak_requests must not be negative"),
        (cfg.max_batch >= 1 and cfg.images >= 1 and cfg.num_classes >= 1, "max_batch, images and num_classes must be positive"),
        (cfg.max_delay_ms >= 0, f"max_delay_ms must not be negative, got {cfg.max_delay_ms}"),
        (cfg.instances >= 0, f"instances must not be negative (0 = the server's default), got {cfg.instances}"),
    ])
    return cfg


def check_integrity(cfg: IntegrityBenchConfig) -> IntegrityBenchConfig:
    check_rules([
        (cfg.images >= 1 and cfg.rounds >= 1, "images and rounds must be positive"),
        (1 <= cfg.quality <= 100, f"quality must be in [1, 100], got {cfg.quality}"),
    ])
    return cfg


def check_highres(cfg: HighresBenchConfig) -> HighresBenchConfig:
    runtime_config.check(cfg.runtime)
    scales = cfg.low_test_scales + cfg.high_test_scales
    check_rules([
        (cfg.low_scale >= cfg.low_crop >= 1 and cfg.high_scale >= cfg.high_crop >= 1,
         f"each crop must be between 1 and its scale (low {cfg.low_scale}/{cfg.low_crop}, "
         f"high {cfg.high_scale}/{cfg.high_crop})"),
        (cfg.high_crop > cfg.low_crop, f"high_crop {cfg.high_crop} must exceed low_crop {cfg.low_crop}"),
        (all(s >= 1 for s in scales) and cfg.low_test_scales and cfg.high_test_scales,
         "low_test_scales and high_test_scales must be non-empty lists of positive sizes"),
        (cfg.train_images >= 10 and cfg.test_images >= 10, "train_images and test_images must be at least 10"),
        (cfg.budget_s > 0, f"budget_s must be a positive number of seconds, got {cfg.budget_s}"),
        (cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.eval_limit >= 0 and cfg.robust_limit >= 0, "eval_limit and robust_limit must not be negative"),
    ])
    train_config.check(config_io.merge(train_config.TrainConfig(), cfg.train, "train"))
    return cfg


def check_scale21k(cfg: Scale21kBenchConfig) -> Scale21kBenchConfig:
    check_rules([
        (min(cfg.samples, cfg.classes, cfg.ranks, cfg.batch_per_rank, cfg.batch_size, cfg.repeats) >= 1,
         "samples, classes, ranks, batch_per_rank, batch_size and repeats must be positive"),
        (cfg.workers >= 0 and cfg.loader_samples >= 0, "workers and loader_samples must not be negative"),
    ])
    return cfg


def check_export(cfg: ExportBenchConfig) -> ExportBenchConfig:
    runtime_config.check(cfg.runtime, ("fp32",))
    check_rules([
        (cfg.runtime.device == "cpu", f"the export bench runs on the CPU (runtime.device=cpu), not '{cfg.runtime.device}'"),
        (cfg.size >= 1 and cfg.in_chans in (1, 3) and cfg.num_classes >= 1,
         "size and num_classes must be positive and in_chans 1 or 3"),
        (bool(cfg.batches) and all(b >= 1 for b in cfg.batches), f"batches must be positive sizes, got {cfg.batches}"),
        (cfg.seconds > 0 and cfg.rounds >= 1 and cfg.warmup >= 0, "seconds and rounds must be positive, warmup not negative"),
        _subset(cfg.skip, ("onnxruntime", "eager", "compile"), "skip"),
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
    "highres": (HighresBenchConfig, check_highres),
    "export": (ExportBenchConfig, check_export),
    "serve": (ServeBenchConfig, check_serve),
    "scale21k": (Scale21kBenchConfig, check_scale21k),
}


def check(name: str, cfg):
    """The bench ``name``'s settings, each impossible one refused in one sentence before any work."""
    config_io.check_finite(cfg)
    return BENCH_CONFIGS[name][1](cfg)
