"""``vlprep manifest publish`` keeps GITHUB_TOKEN off git's command line and off disk, and never
writes outside the repository. git itself runs for real: a PATH shim records the argv of every git
process vlprep starts, and ``url.<local>.insteadOf`` sends the github.com URL to a local bare repo."""
from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest

from vlprep.pipeline.reports.manifests import index_markdown, schema, validate
from vlprep.pipeline.sinks import manifests as manifest_sink

from .conftest import run_cli

TOKEN = "ghp_vlprepTestToken0123456789abcdefXYZ"
GITHUB_URL = "https://github.com/me/manifests.git"


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
        "manifests/README.md\nmanifests/glue-files.tsv.gz"
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
