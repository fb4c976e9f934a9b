"""Commit a folder of manifests into a git repository and push it, never forcing, never half-done.

All work happens in a throw-away clone: the target repository sees either one new commit on its
branch (a plain fast-forward push) or nothing at all. A GitHub https URL is authenticated with
``GITHUB_TOKEN`` through an ``http.extraHeader`` passed in git's environment
(``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``): never on git's command line, where
any local user can read it in the process list, never in a config file, never to another host, never
in a message. ssh URLs and local paths use the user's own git set-up. ``--path`` must stay inside
the repository: absolute paths, ``..`` and ``.git`` are refused, and so is a folder that a symlink
in the repository leads outside of it.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import VlprepError
from ..redact import parses, redact_url, scrub


@dataclass(frozen=True)
class Published:
    commit: str
    files: list[str]
    branch: str


def _is_github_https(repo: str) -> bool:
    """Only ``https://github.com/...`` (no other host, port or user info) may receive the token."""
    try:
        parts = urlsplit(repo)
        return (parts.scheme == "https" and parts.hostname == "github.com" and parts.port is None
                and "@" not in parts.netloc)
    except ValueError:
        return False


def split_credentials(repo: str) -> tuple[str, str | None]:
    """``repo`` without its user info, and that user info (``user:password``, decoded) if it had any.

    git would keep credentials written into the URL on its argv (readable in the process list) and
    in the clone's ``.git/config``; they travel in an ``extraHeader`` for that URL's host instead."""
    try:
        parts = urlsplit(repo)
        if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
            return repo, None
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
    except ValueError:
        return repo, None
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])), f"{user}:{password}"


def _auth_env(repo: str, base: dict[str, str]) -> dict[str, str]:
    """``GIT_CONFIG_*`` variables carrying the credentials written in ``repo`` for its own host, or
    else the token's header for a GitHub https remote, else nothing.

    Entries already in ``base`` (the user's own ``GIT_CONFIG_COUNT``) are kept; ours come after."""
    remote, userinfo = split_credentials(repo)
    token = base.get("GITHUB_TOKEN")
    if userinfo is not None:
        parts = urlsplit(remote)
        scope, basic_of = f"{parts.scheme}://{parts.netloc}/", userinfo
    elif token and _is_github_https(repo):
        scope, basic_of = "https://github.com/", f"x-access-token:{token}"
    else:
        return {}
    try:
        count = int(base.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    basic = base64.b64encode(basic_of.encode()).decode()
    return {"GIT_CONFIG_COUNT": str(count + 1),
            f"GIT_CONFIG_KEY_{count}": f"http.{scope}.extraHeader",
            f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}"}


def _token_forms() -> list[str]:
    """The token as it may show up in git's messages: plain, and inside the Basic header."""
    token = os.environ.get("GITHUB_TOKEN")
    return [token, base64.b64encode(f"x-access-token:{token}".encode()).decode()] if token else []


def _git(args: list[str], cwd: Path | None, repo: str, check: bool = True) -> subprocess.CompletedProcess:
    base = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    env = {**base, **_auth_env(repo, base)}
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        message = scrub((result.stderr or result.stdout).strip(), repo)
        for secret in _token_forms():
            message = message.replace(secret, "***")
        raise VlprepError(f"git {args[0]} failed for {redact_url(repo)}: {message}",
                          fix="check the repository URL, the branch and your access rights (GITHUB_TOKEN for "
                              "https://github.com URLs); nothing was pushed")
    return result


def check_subdir(subdir: str) -> PurePosixPath:
    """``--path`` as a folder inside the repository; refuse one that would leave it or enter ``.git``."""
    path = PurePosixPath(subdir.replace("\\", "/"))
    if not subdir.strip() or path.is_absolute() or ".." in path.parts or ".git" in path.parts:
        raise VlprepError(f"--path {subdir!r} leaves the repository (absolute, '..' or '.git')",
                          fix="pass a folder relative to the repository root, such as manifests")
    return path


def _target_inside(clone: Path, subdir: PurePosixPath) -> Path:
    """The folder to copy into, refused if a symlink in the cloned repository leads it outside."""
    root = clone.resolve()
    target = (clone / subdir).resolve()
    if target != root and root not in target.parents:
        raise VlprepError(f"--path {subdir} leads outside the repository (through a symlink) to {target}",
                          fix="pass another --path; nothing was pushed")
    target.mkdir(parents=True, exist_ok=True)
    return target


def publish(files: list[Path], repo: str, branch: str, message: str, subdir: str = "manifests") -> Published:
    """Copy ``files`` into ``subdir/`` of ``repo``'s ``branch``, commit and push; refuse if nothing changed."""
    if shutil.which("git") is None:
        raise VlprepError("git is not installed", fix="install git, then run the publish again")
    inside = check_subdir(subdir)
    if repo.lower().startswith(("http://", "https://")) and not parses(repo):
        raise VlprepError(f"--repo {redact_url(repo)}: its host or port does not parse",
                          fix="percent-encode '/', '?', '#' and '@' inside a user name or password (%2F, %3F, %23, "
                          "%40); nothing was pushed")
    if os.path.isdir(repo):
        repo = str(Path(repo).resolve())
    remote = split_credentials(repo)[0]  # what git sees; ``repo`` still carries the credentials to _git
    with tempfile.TemporaryDirectory(prefix="vlprep-publish-") as tmp:
        clone = Path(tmp) / "clone"
        heads = _git(["ls-remote", "--heads", remote, branch], None, repo).stdout.strip()
        if heads:
            _git(["clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch, "--depth", "1", remote,
                  str(clone)], None, repo)
        else:  # an empty repository, or a new branch: start it with this commit
            _git(["init", "--quiet", "-b", branch, str(clone)], None, repo)
            _git(["remote", "add", "origin", remote], clone, repo)
        target = _target_inside(clone, inside)
        for path in files:
            destination = target / path.name
            if destination.is_symlink():  # never write through a link the repository holds
                destination.unlink()
            shutil.copyfile(path, destination)
        _git(["add", "--", str(inside)], clone, repo)
        if _git(["diff", "--cached", "--quiet"], clone, repo, check=False).returncode == 0:
            raise VlprepError(f"the manifests are unchanged on {redact_url(repo)} ({branch}): nothing to publish",
                              fix="build new manifests first (vlprep manifest build), or leave the repository as it is")
        identity = [] if _git(["config", "user.email"], clone, repo, check=False).stdout.strip() else \
            ["-c", "user.name=vlprep", "-c", "user.email=vlprep@localhost"]
        _git([*identity, "commit", "--quiet", "-m", message], clone, repo)
        commit = _git(["rev-parse", "HEAD"], clone, repo).stdout.strip()
        _git(["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"], clone, repo)
        changed = _git(["show", "--name-only", "--format=", "HEAD"], clone, repo).stdout.split()
    return Published(commit, changed, branch)
