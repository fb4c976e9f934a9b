"""Commit a folder of manifests into a git repository and push it, never forcing, never half-done.

All work happens in a throw-away clone: the target repository sees either one new commit on its
branch (a plain fast-forward push) or nothing at all. A GitHub https URL is authenticated with
``GITHUB_TOKEN`` through an ``http.extraHeader`` given on the command line only (never written to
a config file or shown in a message); ssh URLs and local paths use the user's own git set-up.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError


@dataclass(frozen=True)
class Published:
    commit: str
    files: list[str]
    branch: str


def _auth_args(repo: str) -> list[str]:
    token = os.environ.get("GITHUB_TOKEN")
    if token and repo.startswith("https://github.com/"):
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return ["-c", f"http.https://github.com/.extraHeader=Authorization: Basic {basic}"]
    return []


def _git(args: list[str], cwd: Path | None, repo: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    result = subprocess.run(["git", *_auth_args(repo), *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        token = os.environ.get("GITHUB_TOKEN")
        if token:
            message = message.replace(token, "***")
        raise VlprepError(f"git {args[0]} failed for {repo}: {message}",
                          fix="check the repository URL, the branch and your access rights (GITHUB_TOKEN for "
                              "https://github.com URLs); nothing was pushed")
    return result


def publish(files: list[Path], repo: str, branch: str, message: str, subdir: str = "manifests") -> Published:
    """Copy ``files`` into ``subdir/`` of ``repo``'s ``branch``, commit and push; refuse if nothing changed."""
    if shutil.which("git") is None:
        raise VlprepError("git is not installed", fix="install git, then run the publish again")
    if os.path.isdir(repo):
        repo = str(Path(repo).resolve())
    with tempfile.TemporaryDirectory(prefix="vlprep-publish-") as tmp:
        clone = Path(tmp) / "clone"
        heads = _git(["ls-remote", "--heads", repo, branch], None, repo).stdout.strip()
        if heads:
            _git(["clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch, "--depth", "1", repo,
                  str(clone)], None, repo)
        else:  # an empty repository, or a new branch: start it with this commit
            _git(["init", "--quiet", "-b", branch, str(clone)], None, repo)
            _git(["remote", "add", "origin", repo], clone, repo)
        target = clone / subdir
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)
        _git(["add", "--", subdir], clone, repo)
        if _git(["diff", "--cached", "--quiet"], clone, repo, check=False).returncode == 0:
            raise VlprepError(f"the manifests are unchanged on {repo} ({branch}): nothing to publish",
                              fix="build new manifests first (vlprep manifest build), or leave the repository as it is")
        identity = [] if _git(["config", "user.email"], clone, repo, check=False).stdout.strip() else \
            ["-c", "user.name=vlprep", "-c", "user.email=vlprep@localhost"]
        _git([*identity, "commit", "--quiet", "-m", message], clone, repo)
        commit = _git(["rev-parse", "HEAD"], clone, repo).stdout.strip()
        _git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], clone, repo)
        changed = _git(["show", "--name-only", "--format=", "HEAD"], clone, repo).stdout.split()
    return Published(commit, changed, branch)
