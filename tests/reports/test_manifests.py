"""`vlprep manifest build|publish` through the command line, into a real local bare git repository."""
from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path

import pytest

from vlprep.pipeline.sinks.publish import _auth_env

from ..helpers import run_cli


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("demo") / "data"
    run_cli("demo", "--data-dir", str(data))
    return data


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare repository whose main branch already holds someone else's file."""
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare))
    work = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(work))
    (work / "OTHER.md").write_text("kept\n")
    git("add", "OTHER.md", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return bare


def test_build_writes_every_manifest_and_an_index_deterministically(built):
    run_cli("manifest", "build", "--data-dir", str(built))
    folder = built / "manifests"
    names = sorted(p.name for p in folder.glob("*.tsv.gz"))
    assert names == ["cc12m-train-5.tsv.gz", "cc3m-train-16.tsv.gz", "coco-karpathy-test.tsv.gz",
                     "coco-karpathy-train.tsv.gz", "flickr30k-test.tsv.gz", "flickr30k-train.tsv.gz",
                     "glue-files.tsv.gz", "imagenet-prompts-items.tsv.gz", "imagenet-train.tsv.gz",
                     "imagenet-val.tsv.gz", "owt-subsets.tsv.gz", "sbu-train-5.tsv.gz", "vg-concat.tsv.gz",
                     "vg-regions.tsv.gz", "weblist-train-5.tsv.gz"]
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    run_cli("manifest", "build", "--data-dir", str(built))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first
    owt = gzip.decompress(first["owt-subsets.tsv.gz"]).decode().splitlines()
    assert owt[0].split("\t") == ["file", "split", "sha256", "documents", "documents_kept", "source"]
    assert [line.split("\t")[1] for line in owt[1:]] == ["train"] * 5 + ["valid"]
    readme = first["README.md"].decode()
    assert all(f"`{name}`" in readme for name in names)
    vg = gzip.decompress(first["vg-regions.tsv.gz"]).decode()
    assert "\tleak-guarded" in vg and "\tskipped: no text left after cleaning" in vg


def test_publish_commits_pushes_refuses_unchanged_and_invalid(built, remote, tmp_path):
    run_cli("manifest", "build", "--data-dir", str(built))
    before = git("--git-dir", str(remote), "rev-parse", "main")
    result = run_cli("manifest", "publish", "--repo", str(remote), "--data-dir", str(built))
    assert "published" in result.stdout
    after = git("--git-dir", str(remote), "rev-parse", "main")
    assert git("--git-dir", str(remote), "rev-parse", "main^") == before  # a fast-forward on top
    files = git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "OTHER.md" in files and "manifests/README.md" in files and "manifests/owt-subsets.tsv.gz" in files
    published = subprocess.run(["git", "--git-dir", str(remote), "show", "main:manifests/vg-regions.tsv.gz"],
                               capture_output=True, check=True).stdout
    assert published == (built / "manifests" / "vg-regions.tsv.gz").read_bytes()

    unchanged = run_cli("manifest", "publish", "--repo", str(remote), "--data-dir", str(built), check=False)
    assert unchanged.returncode == 1 and "unchanged" in unchanged.stderr
    assert git("--git-dir", str(remote), "rev-parse", "main") == after

    broken = built / "manifests" / "coco-karpathy-test.tsv.gz"
    saved = broken.read_bytes()
    broken.write_bytes(b"not gzip")
    try:
        refused = run_cli("manifest", "publish", "--repo", str(remote), "--data-dir", str(built), check=False)
    finally:
        broken.write_bytes(saved)
    assert refused.returncode == 1 and "coco-karpathy-test.tsv.gz" in refused.stderr
    assert git("--git-dir", str(remote), "rev-parse", "main") == after

    (built / "manifests" / "README.md").write_text("edited by hand\n")
    stale = run_cli("manifest", "publish", "--repo", str(remote), "--data-dir", str(built), check=False)
    assert stale.returncode == 1 and "manifest build" in stale.stderr
    run_cli("manifest", "build", "--data-dir", str(built))

    other = run_cli("manifest", "publish", "--repo", str(remote), "--data-dir", str(built), "--branch", "subsets",
                    "--message", "the method's subsets")
    assert "subsets" in other.stdout
    assert git("--git-dir", str(remote), "log", "-1", "--format=%s", "subsets") == "the method's subsets"
    assert git("--git-dir", str(remote), "rev-parse", "main") == after

    missing = run_cli("manifest", "publish", "--repo", str(tmp_path / "nowhere.git"), "--data-dir", str(built),
                      check=False)
    assert missing.returncode == 1 and "nothing was pushed" in missing.stderr


def test_a_github_token_only_goes_to_github_in_a_header():
    env = {"GITHUB_TOKEN": "s3cret"}
    extra = _auth_env("https://github.com/me/manifests.git", env)
    assert extra["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    assert base64.b64encode(b"x-access-token:s3cret").decode() in extra["GIT_CONFIG_VALUE_0"]
    assert _auth_env("https://gitlab.example.org/me/manifests.git", env) == {}
    assert _auth_env("git@github.com:me/manifests.git", env) == {}
