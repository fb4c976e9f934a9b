"""retrieval_dataset and recall_at_k over the shards vlprep writes (COCO karpathy-test, Flickr30K test)."""
from __future__ import annotations

import json

import pytest
import torch
import webdataset as wds

from vlprep.pipeline.loader import recall_at_k, retrieval_dataset
from vlprep.pipeline.loader.retrieval import ImageAt, RetrievalSet
from vlprep.pipeline.loader.augment import ViewConfig


@pytest.mark.parametrize("folder,split", [("coco", "karpathy-test"), ("flickr30k", "test")])
def test_maps_tokens_and_views_match_the_shards(demo_data, folder, split):
    prefix = demo_data / "out" / folder / f"{folder}-{split}"
    test = retrieval_dataset(prefix)
    metas = [json.loads(s["json"]) for path in sorted(prefix.parent.glob(f"{folder}-{split}-*.tar"))
             for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)]
    assert test.keys == [m["key"] for m in metas]
    text = 0
    for image, meta in enumerate(metas):
        assert test.image_to_texts[image].tolist() == list(range(text, text + len(meta["tokens"])))
        for ids in meta["tokens"]:
            assert test.text_to_image[text] == image
            assert test.tokens[text, :len(ids)].tolist() == ids and not test.padding_mask[text, :len(ids)].any()
            assert (test.tokens[text, len(ids):] == 1).all() and test.padding_mask[text, len(ids):].all()
            text += 1
    assert text == len(test.tokens)
    view, index = test[len(test) - 1]
    assert index == len(test) - 1 and tuple(view.shape) == (3, 224, 224) and view.dtype == torch.float32
    if all(len(m["tokens"]) == 5 for m in metas):
        assert test.texts_per_image == 5 and test.text_to_image.tolist() == [i // 5 for i in range(5 * len(metas))]


def _split(counts: list[int]) -> RetrievalSet:
    images = [ImageAt(str(i), "", 0, 0) for i in range(len(counts))]
    return RetrievalSet(images, [[[0, 5, 2]] * n for n in counts], ViewConfig(train=False))


def test_recall_of_a_trivial_scorer_equals_the_hand_computed_value():
    """3 images with 2, 1 and 2 captions (texts 0-1 → image 0, 2 → 1, 3-4 → 2); score = −|text − 2·image|.

    Image→text, best first: image 0 ranks texts 0,1,2,… (hit at 1); image 1 ranks 2,1|3,… (its text 2
    first: hit at 1); image 2 ranks 4,3,… (hit at 1): R@1 = 100.
    Text→image, best first: text 0 → image 0 (hit); text 1 → images 0 and 1 tie at −1, argsort's
    stable sort puts the lower index, image 0, first (hit); text 2 → image 1 (hit); text 3 → images 1 and 2 tie at −1,
    image 1 first (miss at 1, hit at 2); text 4 → image 2 (hit). R@1 = 4/5 = 80, R@5 = 100."""
    split = _split([2, 1, 2])
    assert split.texts_per_image is None and split.text_to_image.tolist() == [0, 0, 1, 2, 2]
    scores = -(torch.arange(5.0).unsqueeze(0) - 2 * torch.arange(3.0).unsqueeze(1)).abs()
    got = recall_at_k(scores, split, ks=(1, 2, 5))
    assert got == {"i2t_r1": 100.0, "t2i_r1": 80.0, "i2t_r2": 100.0, "t2i_r2": 100.0, "i2t_r5": 100.0,
                   "t2i_r5": 100.0}


def test_recall_at_1_5_10_of_a_shifted_scorer():
    """20 images × 5 captions; each image's scores prefer the captions of the image after it (i+1 mod 20),
    then its own. Image→text: own captions come at ranks 6-10, so R@1 = R@5 = 0, R@10 = 100. Text→image:
    caption of image j is best scored by image j−1, then by j, so R@1 = 0, R@5 = R@10 = 100."""
    split = _split([5] * 20)
    owner = split.text_to_image
    images = torch.arange(20).unsqueeze(1)
    scores = 2.0 * (owner.unsqueeze(0) == (images + 1) % 20) + 1.0 * (owner.unsqueeze(0) == images)
    got = recall_at_k(scores, split)
    assert (got["i2t_r1"], got["i2t_r5"], got["i2t_r10"]) == (0.0, 0.0, 100.0)
    assert (got["t2i_r1"], got["t2i_r5"], got["t2i_r10"]) == (0.0, 100.0, 100.0)
