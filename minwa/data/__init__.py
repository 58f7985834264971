"""The data stage: sources → shards → uint8 batches (see docs/data.md).

``open_dataset`` reads any source (shards, Fashion-MNIST IDX, ImageFolder, ``.lst``, a labels file); ``pack`` writes
WebDataset-layout shards with an index and a manifest; ``verify`` re-checks them; ``build_loader`` yields
rank-partitioned, seeded, resumable ``Batch``es from a decoded cache or a multi-process stream. Names are
imported on first use, so that reading ``DataConfig`` does not pull in torch or numpy.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "DataConfig": "minwa.data.config",
    "Batch": "minwa.data.loader",
    "Loader": "minwa.data.loader",
    "build_loader": "minwa.data.loader",
    "decode_all": "minwa.data.loader",
    "epoch_permutation": "minwa.data.order",
    "pack": "minwa.data.packing",
    "ShardDataset": "minwa.data.shards",
    "IdxDataset": "minwa.data.sources",
    "ImageDataset": "minwa.data.sources",
    "ImageFolderDataset": "minwa.data.sources",
    "LabelFileDataset": "minwa.data.sources",
    "ListDataset": "minwa.data.sources",
    "open_dataset": "minwa.data.sources",
    "verify": "minwa.data.verification",
})
