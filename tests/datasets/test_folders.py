"""After a build: the readers' metadata of each folder, and what is said of files of the older layout."""
from __future__ import annotations

import json
import shutil

from vlprep.pipeline.datasets.folders import describe, legacy_files
from vlprep.pipeline.datasets.registry import recipe
from vlprep.pipeline.layout import Layout


def test_files_of_the_older_layout_are_named_and_their_splits_leave_stats(demo_data, tmp_path):
    layout = Layout(tmp_path / "data")
    out = layout.out("vg")
    shutil.copytree(demo_data / "out" / "vg", out)
    (out / "train-concat-000000.tar").write_bytes(b"old shard")       # as an older vlprep stored VG concat
    (out / "train-concat.index.json").write_text("{}")
    stats = json.loads((out / "stats.json").read_text())
    stats["splits"]["train-concat"] = dict(stats["splits"]["train"])
    (out / "stats.json").write_text(json.dumps(stats))
    said: list[str] = []
    written = describe(layout, recipe("vg"), said.append)
    assert set(json.loads((out / "stats.json").read_text())["splits"]) == {"train"}
    assert (out / "train-concat-000000.tar").read_bytes() == b"old shard"   # never deleted for the user
    [note] = said
    assert "older vlprep layout" in note and "train-concat" in note
    assert note.endswith("rm -- train-concat-000000.tar train-concat.index.json")
    assert legacy_files(out) == [out / "train-concat-000000.tar", out / "train-concat.index.json"]
    assert out / "README.md" in written and out / "croissant.json" in written
    again: list[str] = []
    (out / "train-concat-000000.tar").unlink(), (out / "train-concat.index.json").unlink()
    describe(layout, recipe("vg"), again.append)
    assert again == []


def test_verify_refuses_readers_metadata_that_no_longer_matches(demo_data, tmp_path):
    from ..helpers import run_cli

    data = tmp_path / "data"
    shutil.copytree(demo_data, data, symlinks=True)
    run_cli("verify", "imagenet", "--data-dir", str(data))
    (data / "out" / "imagenet" / "imagenet-val-000001.idx").unlink()      # DALI's index of one shard
    card = data / "out" / "imagenet" / "README.md"
    card.write_text(card.read_text().replace("imagenet-val-", "imagenet-gone-"))
    failed = run_cli("verify", "imagenet", "--data-dir", str(data), check=False)
    assert failed.returncode == 1 and "README.md, imagenet-val-000001.idx missing or out of date" in failed.stderr
    assert "vlprep shard imagenet --split" in failed.stderr
