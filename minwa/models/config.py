"""Model settings: a registry name plus keyword arguments for its constructor."""

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    name: str = "fashion-net"
    kwargs: dict = field(default_factory=dict)  # passed to the constructor (width, fc, batchnorm, ...)
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (pays on GPU; usually not on a 2-core CPU)
    checkpointing: bool = False  # activation checkpointing (trades compute for memory)
