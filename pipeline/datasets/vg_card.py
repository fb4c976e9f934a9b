"""Visual Genome's sample schemas (one per variant) and published facts, for ``vg.py``'s RECIPE.

They belong in ``vg.py`` beside the recipe, as COCO's do in ``coco.py``; they live here until
they move there (``sample=SAMPLE, about=ABOUT`` in its ``Recipe(...)``; this module imports ``vg``
for its URLs, so ``vg.py`` takes the code rather than importing it). The two variants
store different samples, so each has a folder and a schema of its own: ``regions`` (``out/vg``)
has one box and one region id per description; ``concat`` (``out/vg-concat``) packs descriptions
into captions of at most 64 tokens, so its ``boxes`` and ``region_ids`` have one list per caption,
and it says how the descriptions were joined (``joiner``).
"""
from __future__ import annotations

from ..records import coco as coco_records
from ..sinks.features import IMAGE_FIELDS, INT64, STRING, TEXT_FIELDS, Field, SampleSchema, list_of
from ..sinks.folder import About
from .coco import NAME as COCO, URLS as COCO_URLS
from .vg import NAME, URLS

BOX = list_of(INT64, 4)
"""A region's box: x, y, width, height in pixels of the original image."""


def _common(texts: str) -> tuple[Field, ...]:
    return (
        Field("dataset", STRING, "Always 'vg'."),
        Field("key", STRING, "The sample key: the VG image id, 9 digits."),
        Field("image_id", INT64, "Visual Genome image id."),
        Field("coco_id", INT64, "The image's COCO id, or -1 when it is not a COCO image."),
        Field("variant", STRING, f"'{texts}'."),
        *TEXT_FIELDS,
        *IMAGE_FIELDS,
    )


REGIONS = SampleSchema(
    fields=(
        *_common("regions"),
        Field("region_ids", list_of(INT64), "Per description: its VG region id (regions sorted by id)."),
        Field("boxes", list_of(BOX), "Per description: its region's box [x, y, width, height]."),
    ),
    image="the Visual Genome image, JPEG",
    caption=("texts", 0),
)
"""One image with every region description a text (Energon gets the first description)."""

CONCAT = SampleSchema(
    fields=(
        *_common("concat"),
        Field("region_ids", list_of(list_of(INT64)), "Per packed caption: the region ids of the descriptions "
              "it joins, in order."),
        Field("boxes", list_of(list_of(BOX)), "Per packed caption: the boxes [x, y, width, height] of its "
              "descriptions."),
        Field("joiner", STRING, "How descriptions were joined into a caption."),
    ),
    image="the Visual Genome image, JPEG",
    caption=("texts", 0),
)
"""One image with its descriptions packed into captions of at most 64 tokens (Energon gets the first)."""

SAMPLE = {"regions": REGIONS, "concat": CONCAT}

ABOUT = About(
    pretty_name="Visual Genome 1.2 region descriptions",
    summary="Visual Genome 1.2 images with their region descriptions (short phrases, each with a box), one "
            "sample per image: every description a text (variant regions, out/vg), or descriptions packed in "
            "order into captions of at most 64 tokens (variant concat, out/vg-concat).",
    homepage="https://homes.cs.washington.edu/~ranjay/visualgenome/",
    version="1.2",
    license="cc-by-4.0",
    license_url="https://creativecommons.org/licenses/by/4.0/",
    license_note="Visual Genome is licensed under a Creative Commons Attribution 4.0 International License. "
                 "Its images come from YFCC100M and COCO (Flickr), whose own terms also apply to them.",
    citation="""@article{krishna2017visual,
  title={Visual Genome: Connecting Language and Vision Using Crowdsourced Dense Image Annotations},
  author={Krishna, Ranjay and Zhu, Yuke and Groth, Oliver and Johnson, Justin and Hata, Kenji and Kravitz, Joshua
          and Chen, Stephanie and Kalantidis, Yannis and Li, Li-Jia and Shamma, David A. and Bernstein, Michael S.
          and Fei-Fei, Li},
  journal={International Journal of Computer Vision (IJCV)},
  volume={123},
  number={1},
  pages={32--73},
  year={2017}
}""",
    task_categories=("image-to-text", "text-to-image"),
    sources={**{f"{NAME}/{relpath}": url for relpath, url in URLS.items()},
             f"{COCO}/{coco_records.KARPATHY_ZIP}": COCO_URLS[coco_records.KARPATHY_ZIP]},
    published={"train": (108_077, "images")},
    roles={"train": "train"},
    notes=("The leak guard (on unless --no-leak-guard) leaves out the images whose coco_id is in COCO's Karpathy "
           "val or test split, so a model pretrained here is not evaluated on images it has seen; that is why "
           "it reads COCO's caption_datasets.zip, and why fewer images than the 108,077 published are kept.",),
)
