"""Helpers shared by test modules: the CLI in a subprocess (plain or under a memory cap), a fake hub,
sample mirrors made hostile, checksum files, and the git plumbing of manifest publishing. Fixtures
live in ``conftest.py``; test modules import from here, never from each other."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.pipeline.reports.manifests import index_markdown, schema, validate
from vlprep.pipeline.samples.images import build_imagenet_mirror
from vlprep.pipeline.samples.text import build_glue_mirror
from vlprep.pipeline.sinks import manifests as manifest_sink
from vlprep.pipeline.sources.checksums import SUMS_NAME, format_sha256sums

TRIAL = ("--limit", "100000")  # sample data: the published-count check is for full runs
ADDRESS_SPACE = 2 << 30
COCO_FILES = ["zips/train2014.zip", "zips/val2014.zip", "annotations/annotations_trainval2014.zip",
              "caption_datasets.zip"]

CAPPED_RUNNER = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({{"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "peak": peak}}))
"""


# ------------------------------------------------------------------------------------ running vlprep

def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``vlprep`` in a real subprocess, as a user would."""
    full_env = {**os.environ, "VLPREP_HTTP_BACKOFF": "0.01", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "vlprep.cli", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"vlprep {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_capped(*args: str, limit: int = ADDRESS_SPACE) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``vlprep`` under an address-space limit; return the result and the peak RSS in bytes of
    the CLI and its workers (a wrapper process measures its own children only)."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
        "done = subprocess.run([sys.executable, '-m', 'vlprep.cli', *sys.argv[1:]], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'rc': done.returncode, 'out': done.stdout, 'err': done.stderr, 'peak': peak}))\n")
    result = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "VLPREP_HTTP_BACKOFF": "0.01"})
    report = json.loads(result.stdout)
    return subprocess.CompletedProcess(args, report["rc"], report["out"], report["err"]), report["peak"]


def run_capped_printing_peak(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """``vlprep ARGS`` under a 2 GiB address-space limit; the result and the peak RSS (bytes) of the
    command and all its workers, from ``getrusage(RUSAGE_CHILDREN)`` of a runner that did nothing else.
    Unlike ``run_capped``, the runner itself must succeed and the peak is printed."""
    runner = [sys.executable, "-c", CAPPED_RUNNER.format(limit=ADDRESS_SPACE), sys.executable, "-m", "vlprep.cli",
              *args]
    outer = subprocess.run(runner, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "VLPREP_HTTP_BACKOFF": "0.01"})
    assert outer.returncode == 0, outer.stderr
    report = json.loads(outer.stdout)
    done = subprocess.CompletedProcess(args, report["rc"], report["stdout"], report["stderr"])
    print(f"vlprep {' '.join(args[:2])}: peak RSS {report['peak'] / 1e6:.0f} MB under RLIMIT_AS 2 GiB")
    return done, report["peak"]


def one_line_error(result, *words: str) -> None:
    """A failure printed as one error line plus its fix, naming everything in ``words``."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) == 2 and lines[1].strip().startswith("fix: "), result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def assert_clean_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 1, one ``error:`` line (and its ``fix:``), no traceback, and every word in the message."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and len(lines) <= 2, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# ------------------------------------------------------------------------------------------- the hub

class HubHandler(http.server.BaseHTTPRequestHandler):
    """Enough of the hub's file API: HEAD/GET /datasets/<repo>/resolve/<rev>/<path>."""

    files: dict[str, bytes] = {}
    commit = "a" * 40
    gated = False
    repo = "Skylion007/openwebtext"

    def log_message(self, *args):
        pass

    def _resolve(self):
        parts = self.path.split("/resolve/", 1)
        if len(parts) != 2 or not parts[0].startswith("/datasets/"):
            return None, None
        repo = parts[0][len("/datasets/"):]
        rev, _, name = parts[1].partition("/")
        return repo, name

    def _headers(self, code, data, extra=None):
        self.send_response(code)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self._answer(head=True)

    def do_GET(self):  # noqa: N802
        self._answer(head=False)

    def _answer(self, head: bool):
        repo, name = self._resolve()
        if type(self).gated:
            self._headers(403, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
            return
        if repo != type(self).repo:
            self._headers(404, b"", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "no repo"})
            return
        if name not in type(self).files:
            self._headers(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "no file"})
            return
        data = type(self).files[name]
        sha = hashlib.sha256(data).hexdigest()
        extra = {"X-Repo-Commit": type(self).commit, "ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"',
                 "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes"}
        start = 0
        if not head and self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._headers(206 if start else 200, data[start:], extra)
        if not head:
            self.wfile.write(data[start:])


# ---------------------------------------------------------------------------- checksums and archives

def write_sums(root: Path, relpaths: list[str]) -> None:
    """``SHA256SUMS`` for ``relpaths`` under ``root``."""
    sums = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in relpaths}
    (root / SUMS_NAME).write_text(format_sha256sums(sums))


def write_all_sums(root: Path) -> None:
    """``SHA256SUMS`` for every file under ``root``."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS_NAME)
    sums = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    (root / SUMS_NAME).write_text(format_sha256sums(sums))


def add_member(subset_tar: Path, name: str, data: bytes) -> None:
    """Append one member to a subset tar (rewritten whole: it is small)."""
    with tarfile.open(subset_tar) as archive:
        members = [(info, archive.extractfile(info).read()) for info in archive.getmembers()]
    info = tarfile.TarInfo(name)
    info.size = len(data)
    members.append((info, data))
    with tarfile.open(subset_tar, "w", format=tarfile.USTAR_FORMAT) as archive:
        for info, body in members:
            archive.addfile(info, io.BytesIO(body))


def rewrite_member(path: Path, name: str, pieces: Iterable[bytes]) -> None:
    """Replace one member of a zip with the concatenated ``pieces`` (written as a stream, deflated)."""
    with zipfile.ZipFile(path) as archive:
        others = [(info, archive.read(info)) for info in archive.infolist() if info.filename != name]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in others:
            archive.writestr(info, data)
        info = zipfile.ZipInfo(name, (2014, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as stream:
            for piece in pieces:
                stream.write(piece)


# --------------------------------------------------------------------------------------- COCO and VG

def copy_mirror(base: tuple[Path, dict], tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"mirror-{name}"
    shutil.copytree(base[0] / name, target)
    return target


def shard(dataset: str, mirror: Path, tmp_path: Path, *args: str, capped: bool = False):
    data = tmp_path / "data"
    sample = ("--allow-unpublished",) if dataset == "coco" else ()  # generated zips, not the published ones
    run_cli("fetch", dataset, "--data-dir", str(data), "--mirror", str(mirror), *sample)
    command = ("shard", dataset, "--data-dir", str(data), *TRIAL, *args)
    if capped:
        result, peak = run_capped(*command)
        print(f"shard {dataset}: peak RSS {peak / 1e6:.0f} MB")
        assert peak < 1e9
    else:
        result = run_cli(*command, check=False)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr
    return result, data


# --------------------------------------------------------------------------------- ImageNet and GLUE

def members_of(path: Path) -> bytes:
    """The members of a generated ``.tar.gz``, without its end-of-archive blocks."""
    raw = gzip.decompress(path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        end = max(m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers())
    return raw[:end]


def zeros_gz(size: int) -> bytes:
    """``size`` zero bytes as concatenated gzip members: a GiB costs a MB on disk and no time to build."""
    piece = gzip.compress(b"\0" * (1 << 20), compresslevel=1)
    whole, rest = divmod(size, 1 << 20)
    return piece * whole + (gzip.compress(b"\0" * rest) if rest else b"")


def imagenet_mirror(tmp_path: Path, extra: dict[int, list[bytes]]) -> Path:
    """The sample ImageNet mirror with gzip-ready pieces appended to train tarballs (by index)."""
    root = tmp_path / "mirror"
    build_imagenet_mirror(root)
    for index, pieces in extra.items():
        path = root / "data" / f"train_images_{index}.tar.gz"
        path.write_bytes(gzip.compress(members_of(path)) + b"".join(pieces) + gzip.compress(b"\0" * 1024))
    write_all_sums(root)
    return root


def fetched_imagenet(tmp_path: Path, mirror: Path) -> Path:
    data = tmp_path / "data"
    run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(mirror))
    return data


def glue_data(tmp_path: Path, task: str, hub_split: str, table: pa.Table, **write) -> Path:
    """A data dir whose GLUE ``task`` was fetched from a mirror holding ``table`` as ``hub_split``."""
    from vlprep.pipeline.records.glue import task_named

    root = tmp_path / "mirror"
    build_glue_mirror(root)
    pq.write_table(table, root / task_named(task).relpath(hub_split), **write)
    write_all_sums(root)
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(root), "--task", task)
    return data


def rte(sentence1: list, sentence2: list | None = None, label: pa.Array | list | None = None) -> pa.Table:
    rows = len(sentence1)
    return pa.table({"sentence1": sentence1, "sentence2": sentence2 or ["a hypothesis"] * rows,
                     "label": label if label is not None else [0] * rows, "idx": list(range(rows))})


# ------------------------------------------------------------------------------- manifest publishing

def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _manifests(folder: Path) -> Path:
    """A valid manifest folder (one GLUE manifest and its README index), without building a dataset."""
    manifest_sink.write_tsv_gz(folder / "glue-files.tsv.gz", schema("glue").header,
                               [("rte/train-00000-of-00001.parquet", "RTE", "train", 3, "ab" * 32)])
    (folder / "README.md").write_text(index_markdown(validate(folder)))
    return folder


def _bare(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    return bare


def _shim(tmp_path: Path) -> tuple[Path, Path]:
    """A ``git`` earlier on PATH that logs each argv (NUL-separated) and which GIT_CONFIG keys it got."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    folder = tmp_path / "shim"
    folder.mkdir()
    log = tmp_path / "argv.log"
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\0' \"$@\" >> '{log}'\n"
        f"printf '\\n' >> '{log}'\n"
        f"env | grep '^GIT_CONFIG_KEY_' | sed 's/^/ENV /' >> '{log}' || true\n"
        f"exec '{real}' \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder, log


# ------------------------------------------------------------------------ published shard folders

def jpeg_bytes(width: int, height: int, shade: int) -> bytes:
    """A small real JPEG of the given size (a plain colour: enough for decoders and size checks)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade % 256, (shade * 7) % 256, (shade * 13) % 256)).save(buffer, "JPEG")
    return buffer.getvalue()


def example_value(kind, name: str, index: int):
    """A value of ``kind`` (a features type) that varies with ``index``: lists of 1 to 3 items,
    fixed-length lists at their length, strings naming the field (with non-ASCII text)."""
    from vlprep.pipeline.sinks.features import ListOf

    if isinstance(kind, ListOf):
        count = kind.length if kind.length is not None else 1 + index % 3
        return [example_value(kind.item, name, index * 3 + position) for position in range(count)]
    return {"string": f"{name} {index} café", "int64": index * 10 + 1, "bool": index % 2 == 1,
            "float64": index + 0.5}[kind.name]


def example_sample(schema, key: str, index: int) -> tuple[dict, int, int]:
    """A sample json matching ``schema`` for sample ``index``, and its image's width and height."""
    width, height = 16 + index % 5, 12 + index % 3
    meta = {f.name: example_value(f.type, f.name, index) for f in schema.fields}
    fixed = {"key": key, "width": width, "height": height, "converted": index % 4 == 3,
             "conversion": "PNG RGB converted to RGB JPEG" if index % 4 == 3 else "", "label": index % 7}
    meta.update({name: value for name, value in fixed.items() if name in meta})
    return meta, width, height


def publish_split(out_dir: Path, dataset: str, split: str, schema, keys: list[str], per_shard: int = 2,
                  sha256_in_index: bool = True, stats: dict | None = None) -> list[tuple[str, dict]]:
    """Publish split ``split`` in ``out_dir`` as a build does, with the package's own writers: shards
    ``<folder>-<split>-NNNNNN.tar``, the errors file, the split's stats.json entry and the wids
    index last. Return the samples, ``(key, json)``.

    ``sha256_in_index=False`` drops the shards' sha256 from the index, as indexes written before it
    was recorded lack it.
    """
    from vlprep.pipeline.sinks.shards import json_bytes, shard_name, write_shard
    from vlprep.pipeline.sinks.splits import merge_split_stats, stem, write_errors, write_index

    out_dir.mkdir(parents=True, exist_ok=True)
    samples, shards = [], []
    for start in range(0, len(keys), per_shard):
        members = []
        for index in range(start, min(start + per_shard, len(keys))):
            meta, width, height = example_sample(schema, keys[index], index)
            files = {"jpg": jpeg_bytes(width, height, index), "json": json_bytes(meta)}
            if schema.label:
                files["cls"] = str(meta["label"]).encode()
            members.append((keys[index], files))
            samples.append((keys[index], meta))
        shards.append(write_shard(out_dir / shard_name(stem(out_dir, split), start // per_shard), members))
    write_errors(out_dir, split, [])
    entry = {"images": len(keys), "shards": len(shards), "inputs": {f"{dataset}/raw-{split}.zip": "ab" * 32},
             "config": {"limit": None, "seed": 0}, **(stats or {})}
    merge_split_stats(out_dir, dataset, split, entry)
    index = write_index(out_dir, split, shards)
    if not sha256_in_index:
        data = json.loads(index.read_text())
        for shard in data["shardlist"]:
            del shard["sha256"]
        index.write_text(json.dumps(data, indent=1) + "\n")
    return samples


FOLDER_SPLITS = {
    "coco": {"karpathy-train": [f"{i:012d}" for i in (9, 25, 30, 41, 57)],
             "karpathy-test": [f"{i:012d}" for i in (3, 8, 71)],
             "train2014": [f"{i:012d}" for i in (25, 41, 90, 99)]},
    "vg": {"train": [f"{i:09d}" for i in (1, 2, 5, 7)]},
    "vg-concat": {"train": [f"{i:09d}" for i in (1, 2, 5, 7)]},
    "cc3m": {"train": [f"{i:09d}" for i in (0, 2, 3)]},
    "imagenet": {"train": [f"n0144076{i % 2}_{i}_n0144076{i % 2}" for i in range(5)],
                 "val": [f"ILSVRC2012_val_{i:08d}_n01440764" for i in range(1, 4)]},
}
"""Small published folders in the new layout: the splits of each and their keys (COCO's train2014
shares two keys with karpathy-train, as the real splits share images)."""


def folder_recipe(name: str):
    """``(recipe, variant)`` of an output folder."""
    from vlprep.pipeline.datasets.registry import recipe

    if name.startswith("vg"):
        return recipe("vg"), ("concat" if name == "vg-concat" else "regions")
    return recipe(name), None


def build_folder(root: Path, name: str, per_shard: int = 2) -> tuple[Path, object, str | None, dict]:
    """Publish every split of ``FOLDER_SPLITS[name]`` in ``root/<name>``; return the folder, its
    recipe and variant, and the samples by split (``{split: [(key, json), ...]}``). The first split's
    index carries sha256, the others' do not (indexes written before it was recorded)."""
    from vlprep.pipeline.datasets.metadata import sample_schema

    found, variant = folder_recipe(name)
    schema = sample_schema(found, variant)
    out = root / name
    written = {}
    for position, (split, keys) in enumerate(FOLDER_SPLITS[name].items()):
        inputs = {source: hashlib.sha256(source.encode()).hexdigest() for source in sorted(found.about.sources)}
        written[split] = publish_split(out, found.name, split, schema, keys, per_shard, sha256_in_index=position == 0,
                                       stats={"inputs": inputs})
    return out, found, variant, written
