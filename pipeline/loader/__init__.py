"""The trainer side: the shards and binaries ``vlprep`` writes, as PyTorch datasets.

From ``vlprep shard coco`` to batches on the GPU::

    from torch.utils.data import DataLoader
    from vlprep.pipeline.loader import pair_dataset
    batches = DataLoader(pair_dataset("data/out/coco/coco-karpathy-train"), batch_size=256, num_workers=8)

Each pass over a stream takes the next epoch by itself (``set_epoch`` fixes it); ``state_dict`` /
``load_state_dict`` resume mid-epoch under torchdata's ``StatefulDataLoader`` and ``merge_states``
joins the states of several ranks (:mod:`.state`). ``dtype="uint8"`` ships unnormalized views and
``normalize(batch, device)`` finishes them on the GPU.

Needs the ``loader`` extra (``pip install 'vlprep[loader]'``), which brings the pinned torch.
"""
from __future__ import annotations

try:
    import torch  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "vlprep.pipeline.loader needs torch: install the loader extra, pip install 'vlprep[loader]' "
        "(with PIP_CONSTRAINT pointing at constraints.txt for the CPU build)") from exc

from .augment import IMAGE_SCALE, IMAGENET_MEAN, IMAGENET_STD, PAIR_SCALE, RATIO, Crop, ViewConfig, crop_params
from .decode import normalize
from .images import CAPTION_LENGTH, image_dataset, pair_dataset
from .prompts import prompt_tokens
from .retrieval import RetrievalSet, recall_at_k, retrieval_dataset
from .shards import ShardStream
from .state import merge_states
from .text import collate_tokens, glue_dataset, text_dataset

__all__ = [
    "CAPTION_LENGTH", "IMAGE_SCALE", "IMAGENET_MEAN", "IMAGENET_STD", "PAIR_SCALE", "RATIO", "Crop", "ShardStream",
    "ViewConfig", "collate_tokens", "crop_params", "glue_dataset", "image_dataset", "merge_states", "normalize",
    "pair_dataset", "prompt_tokens", "recall_at_k", "retrieval_dataset", "RetrievalSet", "text_dataset",
]
