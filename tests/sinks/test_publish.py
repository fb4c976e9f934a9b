"""``vlprep manifest publish`` keeps GITHUB_TOKEN off git's command line and off disk, and never
writes outside the repository. git itself runs for real: a PATH shim records the argv of every git
process vlprep starts, and ``url.<local>.insteadOf`` sends the github.com URL to a local bare repo."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ..helpers import _bare, _manifests, _shim, git, run_cli

TOKEN = "ghp_vlprepTestToken0123456789abcdefXYZ"
GITHUB_URL = "https://github.com/me/manifests.git"


def _env(tmp_path: Path, shim: Path, bare: Path) -> dict:
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{bare}"]\n\tinsteadOf = {GITHUB_URL}\n')
    return {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "GITHUB_TOKEN": TOKEN,
            "GIT_CONFIG_GLOBAL": str(config), "HOME": str(tmp_path)}


def _files_hold(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_token_reaches_git_through_its_environment_only(tmp_path):
    folder = _manifests(tmp_path / "manifests")
    bare = _bare(tmp_path)
    shim, log = _shim(tmp_path)
    result = run_cli("manifest", "publish", "--repo", GITHUB_URL, "--manifest-dir", str(folder),
                     env=_env(tmp_path, shim, bare))
    assert "published" in result.stdout
    assert git("--git-dir", str(bare), "show", "--name-only", "--format=", "main") == \
        "manifests/README.md\nmanifests/glue-files.parquet\nmanifests/glue-files.tsv.gz"
    logged = log.read_bytes()
    assert b"push\0--quiet\0origin" in logged, "the shim saw vlprep's git processes"
    assert b"ENV GIT_CONFIG_KEY_0=http.https://github.com/.extraHeader" in logged
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode())
    for secret in (TOKEN.encode(), header):
        assert secret not in logged, "never on git's command line"
        assert secret not in (result.stdout + result.stderr).encode()
        assert _files_hold(tmp_path, secret) == [], "never on disk"


def test_the_token_never_goes_to_another_host(tmp_path):
    folder = _manifests(tmp_path / "manifests")
    bare = _bare(tmp_path)
    shim, log = _shim(tmp_path)
    run_cli("manifest", "publish", "--repo", str(bare), "--manifest-dir", str(folder), env=_env(tmp_path, shim, bare))
    assert b"GIT_CONFIG_KEY" not in log.read_bytes()


@pytest.mark.parametrize("path", ["/tmp/elsewhere", "../..", "manifests/../../x", ".git/hooks", ""])
def test_a_path_that_leaves_the_repository_is_refused(tmp_path, path):
    folder = _manifests(tmp_path / "manifests")
    bare = _bare(tmp_path)
    result = run_cli("manifest", "publish", "--repo", str(bare), "--manifest-dir", str(folder), "--path", path,
                     check=False)
    assert result.returncode == 1 and "leaves the repository" in result.stderr
    assert "Traceback" not in result.stderr
    assert git("--git-dir", str(bare), "for-each-ref") == "", "nothing was pushed"
    assert not Path("/tmp/elsewhere/glue-files.tsv.gz").exists()


def test_a_symlink_in_the_repository_cannot_lead_outside(tmp_path):
    bare = _bare(tmp_path)
    work = tmp_path / "seed"
    git("clone", "--quiet", str(bare), str(work))
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "manifests").symlink_to(outside)
    git("add", "manifests", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    folder = _manifests(tmp_path / "manifests")
    result = run_cli("manifest", "publish", "--repo", str(bare), "--manifest-dir", str(folder), check=False)
    assert result.returncode == 1 and "outside the repository" in result.stderr
    assert list(outside.iterdir()) == []
