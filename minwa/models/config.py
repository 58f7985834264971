"""Model settings: a registry name plus keyword arguments for its constructor."""

from dataclasses import dataclass, field

from minwa.models.registry import check_options


@dataclass
class ModelConfig:
    name: str = "fashion-net"
    kwargs: dict = field(default_factory=dict)  # passed to the constructor (width, fc, batchnorm, ...)
    compile: bool = False  # torch.compile the model (pays on GPU; usually not on a 2-core CPU)
    checkpointing: bool = False  # activation checkpointing (trades compute for memory)

    MOVED = {"channels_last": "runtime.channels_last"}


def check(cfg: ModelConfig) -> ModelConfig:
    """An unknown model, or constructor options it refuses, in one sentence before any data is read."""
    check_options(cfg.name, cfg.kwargs)
    return cfg
