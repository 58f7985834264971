"""``minwa serve``'s settings: where it listens, how requests are batched and bounded, and how the models
run; ``check(cfg)`` refuses impossible values in one sentence before any checkpoint is read."""

from dataclasses import dataclass, field

from minwa import config as config_io
from minwa.errors import check_rules
from minwa.utils import runtime_config
from minwa.utils.runtime_config import RuntimeConfig

MAX_PIXELS = 178_956_970  # = minwa.data.decode.MAX_PIXELS (Pillow's bomb limit), kept here torch-free
MAX_INSTANCES = 64  # model instances, at most (each is a thread holding a batch's activations)
MAX_SCALE = 2048  # a test scale a request may ask for, at most (bounds one request's compute)


@dataclass
class ServeConfig:
    ckpts: list[str] = field(default_factory=list)  # several = an ensemble (softmax averaged), as in eval
    host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface
    port: int = 8000
    max_batch: int = 32  # images per forward pass, at most
    max_delay_ms: float = 5.0  # how long the first request of a batch waits for others to join it
    # model instances computing batches side by side from one queue (Triton's instance count, TorchServe's
    # workers), each with its share of the CPU threads; 0 = 2 on a CPU with 2 or more threads, else 1
    instances: int = 0
    max_queue: int = 256  # requests admitted (decoding or waiting) at once; more are answered 503
    max_bytes: int = 20_000_000  # a larger request body is answered 413
    max_pixels: int = MAX_PIXELS  # a larger image is answered 400 (at most Pillow's limit)
    decode_threads: int = 2  # threads decoding uploads while the model runs
    topk: int = 5  # classes per answer unless the request asks for another number
    scales: list[int] = field(default_factory=list)  # default test scales (empty: each model's own)
    flip: bool = False  # default: also the mirrored image
    wordnet: str = ""  # folder holding WordNet's data.noun, for class names (""= /usr/share/wordnet)
    warmup: bool = True  # run every batch size 1..max_batch once before /readyz says ready
    warmup_s: float = 120.0  # ... or as many as fit in this long (the others are built on first use)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def check(cfg: ServeConfig) -> ServeConfig:
    """Reject impossible serving settings, each in one sentence."""
    config_io.check_finite(cfg)
    runtime_config.check(cfg.runtime, ("auto", "bf16", "fp16", "fp32"))
    check_rules([
        (0 <= cfg.port <= 65535, f"port must be in 0..65535, got {cfg.port}"),
        (cfg.max_batch >= 1, f"max_batch must be at least 1, got {cfg.max_batch}"),
        (0 <= cfg.max_delay_ms <= 10_000, f"max_delay_ms must be in 0..10000, got {cfg.max_delay_ms}"),
        (0 <= cfg.instances <= MAX_INSTANCES, f"instances must be in 0..{MAX_INSTANCES} (0 = automatic), got {cfg.instances}"),
        (cfg.max_queue >= 1, f"max_queue must be at least 1, got {cfg.max_queue}"),
        (cfg.max_bytes >= 1, f"max_bytes must be at least 1, got {cfg.max_bytes}"),
        (1 <= cfg.max_pixels <= MAX_PIXELS, f"max_pixels must be in 1..{MAX_PIXELS} (Pillow's limit), got {cfg.max_pixels}"),
        (0 <= cfg.warmup_s <= 3600, f"warmup_s must be in 0..3600, got {cfg.warmup_s}"),
        (cfg.decode_threads >= 1, f"decode_threads must be at least 1, got {cfg.decode_threads}"),
        (cfg.topk >= 1, f"topk must be at least 1, got {cfg.topk}"),
        (all(1 <= s <= MAX_SCALE for s in cfg.scales), f"scales must be in 1..{MAX_SCALE}, got {list(cfg.scales)}"),
    ])
    return cfg
