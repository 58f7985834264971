"""The data stage: sources → shards → uint8 batches (see docs/data.md).

``open_dataset`` reads any source (shards, Fashion-MNIST IDX, ImageFolder, ``.lst``); ``pack`` writes
WebDataset-layout shards with an index and a manifest; ``verify`` re-checks them; ``build_loader`` yields
rank-partitioned, seeded, resumable ``Batch``es from a decoded cache or a multi-process stream.
"""

from minwa.data.config import DataConfig
from minwa.data.loader import Batch, Loader, build_loader, decode_all
from minwa.data.order import epoch_permutation
from minwa.data.packing import pack
from minwa.data.shards import ShardDataset
from minwa.data.sources import IdxDataset, ImageDataset, ImageFolderDataset, ListDataset, open_dataset
from minwa.data.verification import verify

__all__ = [
    "Batch", "DataConfig", "IdxDataset", "ImageDataset", "ImageFolderDataset", "ListDataset", "Loader",
    "ShardDataset", "build_loader", "decode_all", "epoch_permutation", "open_dataset", "pack", "verify",
]  # fmt: skip
