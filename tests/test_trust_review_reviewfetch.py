"""Fetch and publish under hostile input the other trust tests do not cover: credentials written
into a publish URL, conflicting ``SHA256SUMS`` entries, passwords with unescaped URL delimiters."""
from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

from .conftest import run_cli
from .test_trust_publish import _bare, _manifests, _shim

URL_TOKEN = "tokInUrl-9f8e7d6c5b4a"
CLEAN_URL = "https://github.com/me/manifests.git"


def test_a_token_inside_the_publish_url_reaches_neither_argv_nor_the_clone_config(tmp_path):
    folder = _manifests(tmp_path / "manifests")
    bare = _bare(tmp_path)
    shim, log = _shim(tmp_path)
    with open(shim / "git", "r+") as script:  # also log the clone's .git/config when git pushes
        text = script.read().replace("exec ", f"case \"$*\" in *push*) cat .git/config >> '{log}';; esac\nexec ", 1)
        script.seek(0)
        script.write(text)
    secret_url = CLEAN_URL.replace("https://", f"https://me:{URL_TOKEN}@")
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{bare}"]\n\tinsteadOf = {CLEAN_URL}\n\tinsteadOf = {secret_url}\n')
    env = {"PATH": f"{shim}:{subprocess.os.environ['PATH']}", "GIT_CONFIG_GLOBAL": str(config),
           "HOME": str(tmp_path)}
    result = run_cli("manifest", "publish", "--repo", secret_url, "--manifest-dir", str(folder), env=env)
    assert "published" in result.stdout
    logged = log.read_bytes()
    assert b"push" in logged and b"[remote \"origin\"]" in logged, "the shim saw the push and the clone's config"
    assert URL_TOKEN.encode() not in logged, "the token went on git's argv or into .git/config"
    assert b"ENV GIT_CONFIG_KEY_0=http.https://github.com/.extraHeader" in logged, "it travels in a header"
    assert URL_TOKEN not in result.stdout + result.stderr
