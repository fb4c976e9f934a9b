"""``vlprep manifest build|publish``: the used-ID manifests of every built dataset, indexed and published.

The shard and fetch stages write their manifests as they finish (``coco-<split>``, ``vg-<variant>``,
``cc3m-train-<N>``); OpenWebText's (``owt-subsets``: each subset file with its sha256, source and
document counts) is written here from ``out/owt/stats.json``. ``build`` gathers them into the
manifest folder with a ``README.md`` index generated from the files themselves, so an unchanged
set of manifests gives unchanged bytes and ``publish`` can refuse to push nothing.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..fileio import atomic_path, read_json
from ..layout import Layout
from ..redact import redact_text
from ..sinks import manifests as manifest_sink
from ..sinks import publish as publish_sink

OWT_HEADER = ("file", "split", "sha256", "documents", "documents_kept", "source")
HEADERS = {
    "owt": OWT_HEADER,
    "coco": ("key", "status"),
    "vg": ("key", "status"),
    "cc3m": ("row", "url", "sha256", "caption_hash"),
    "imagenet": ("file", "label", "status"),
    "glue": ("file", "task", "split", "rows", "sha256"),
}
DESCRIPTIONS = {
    "owt": "OpenWebText subset files: sha256, where they came from (hub repo@commit or mirror), documents",
    "coco": "COCO image ids (cocoid, 12 digits) considered for the split: used, or skipped and why",
    "vg": "Visual Genome image ids considered: used, leak-guarded (coco_id in Karpathy val/test), or skipped",
    "glue": "GLUE parquet files binarized: task, fairseq split, rows, sha256",
    "imagenet": "ImageNet file names of the split with their class index (0-999, classes.py order), or skipped and why",
    "cc3m": "Conceptual Captions rows kept (0-based TSV line), their URL, sha256 of the bytes, caption hash (first 16 hex digits of its sha256)",
}


@dataclass(frozen=True)
class ManifestFile:
    dataset: str
    path: Path
    rows: int
    sha256: str


def dataset_of(path: Path) -> str:
    return path.name.split("-", 1)[0]


def write_owt_manifest(layout: Layout) -> Path:
    stats = read_json(layout.out("owt") / "stats.json")
    split_of = {int(subset): split for split, data in stats["splits"].items() for subset in data.get("subsets", [])}
    rows = []
    for subset, data in sorted(stats["subsets"].items()):
        source = data.get("source") or {}
        repo = source.get("repo") or source.get("hub_repo")
        origin = redact_text(f"{repo}@{source.get('commit') or source.get('revision')}" if repo
                             else f"mirror {source.get('mirror', '?')}")
        rows.append((data["file"], split_of.get(int(subset), "?"), data["sha256"], data["documents"],
                     data.get("documents_kept", data["documents"]), origin))
    return manifest_sink.write_tsv_gz(layout.manifests() / "owt-subsets.tsv.gz", OWT_HEADER, rows)


def write_glue_manifest(layout: Layout) -> Path:
    from ..records import glue as glue_records

    stats = read_json(layout.out("glue") / "stats.json")
    rows = []
    for name, task_stats in stats["tasks"].items():
        task = glue_records.TASKS[name]
        for hub_split, split, _ in task.splits:
            path = layout.raw("glue") / task.relpath(hub_split)
            rows.append((task.relpath(hub_split), name, split, task_stats["splits"][split]["rows"],
                         hashlib.sha256(path.read_bytes()).hexdigest()))
    return manifest_sink.write_tsv_gz(layout.manifests() / "glue-files.tsv.gz", HEADERS["glue"], sorted(rows))


def build(layout: Layout, datasets: tuple[str, ...], manifest_dir: Path | None = None) -> list[ManifestFile]:
    """Write/collect the manifests of ``datasets`` into ``manifest_dir``; write its README.md index."""
    target = Path(manifest_dir) if manifest_dir else layout.manifests()
    sources: list[Path] = []
    for dataset in datasets:
        if not (layout.out(dataset) / "stats.json").exists():
            raise VlprepError(f"{dataset} has not been built in {layout.root}",
                              fix="build it first (see vlprep --help), or name only built datasets")
        if dataset == "owt":
            write_owt_manifest(layout)
        if dataset == "glue":
            write_glue_manifest(layout)
        found = sorted(layout.manifests().glob(f"{dataset}-*.tsv.gz"))
        if not found:
            raise VlprepError(f"no manifest of {dataset} in {layout.manifests()}",
                              fix=f"run the stage that builds {dataset} again; it writes the manifest")
        sources += found
    target.mkdir(parents=True, exist_ok=True)
    for path in sources:
        if path.parent.resolve() != target.resolve():
            with atomic_path(target / path.name) as tmp:
                shutil.copyfile(path, tmp)
    files = validate(target)
    with atomic_path(target / "README.md") as tmp:
        tmp.write_text(index_markdown(files), encoding="utf-8")
    return files


def validate(folder: Path) -> list[ManifestFile]:
    """Every ``*.tsv.gz`` in ``folder`` readable, with its dataset's header, rows sorted and unique."""
    files = []
    paths = sorted(Path(folder).glob("*.tsv.gz"))
    if not paths:
        raise VlprepError(f"{folder} holds no manifests", fix="run: vlprep manifest build")
    for path in paths:
        dataset = dataset_of(path)
        try:
            header, rows = manifest_sink.read_tsv_gz(path)
        except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
            raise VlprepError(f"{path}: not a readable manifest ({exc})", fix="run: vlprep manifest build") from exc
        if tuple(header) != HEADERS.get(dataset):
            raise VlprepError(f"{path}: columns {header} are not those of a {dataset} manifest",
                              fix="run: vlprep manifest build")
        keys = [int(r[0]) if dataset == "cc3m" else r[0] for r in rows]
        if not rows or any(len(r) != len(header) for r in rows) or keys != sorted(set(keys)):
            raise VlprepError(f"{path}: empty, ragged, unsorted or with repeated keys",
                              fix="run: vlprep manifest build")
        files.append(ManifestFile(dataset, path, len(rows), hashlib.sha256(path.read_bytes()).hexdigest()))
    return files


def index_markdown(files: list[ManifestFile]) -> str:
    lines = ["# Used-ID manifests", "",
             "Generated by `vlprep manifest build` from the files in this folder. Each is a gzip "
             "(no name, mtime 0) of a sorted TSV with a header row; equal content gives equal bytes. "
             "Read one with `zcat FILE | head`. Rebuild CC3M exactly with "
             "`vlprep fetch cc3m --tsv Train_GCC-training.tsv --from-manifest cc3m-train-<N>.tsv.gz`.", "",
             "| file | dataset | rows | sha256 | columns |", "|---|---|---:|---|---|"]
    for f in files:
        lines.append(f"| `{f.path.name}` | {f.dataset} | {f.rows:,} | `{f.sha256[:16]}…` | "
                     f"{', '.join(HEADERS[f.dataset])} |")
    lines += ["", "What each dataset's manifest lists:", ""]
    for dataset in sorted({f.dataset for f in files}):
        lines.append(f"- **{dataset}**: {DESCRIPTIONS[dataset]}.")
    return "\n".join(lines) + "\n"


def publish(folder: Path, repo: str, branch: str, message: str | None, subdir: str) -> publish_sink.Published:
    """Validate the folder's manifests and README, then commit and push them into ``repo``."""
    files = validate(folder)
    readme = Path(folder) / "README.md"
    if not readme.exists() or readme.read_text(encoding="utf-8") != index_markdown(files):
        raise VlprepError(f"{readme} is missing or does not describe the manifests beside it",
                          fix="run: vlprep manifest build")
    summary = ", ".join(f"{f.path.name} ({f.rows:,} rows)" for f in files)
    return publish_sink.publish([f.path for f in files] + [readme], repo, branch,
                                message or f"Update vlprep manifests: {summary}", subdir)


def summary(files: list[ManifestFile]) -> list[str]:
    return [f"{f.path}  {f.rows:,} rows  sha256 {f.sha256[:16]}" for f in files]

