"""Writing files so that nothing half-written ever carries a final name.

Every sink and source writes through :func:`atomic_path`: bytes go to a temporary sibling, are
flushed to disk, and only a complete file is renamed into place. An interrupted run (even
``kill -9``) therefore leaves at worst a ``*.tmp-<pid>`` file, which the next run of that stage
removes once it holds the target's lock (:func:`remove_temp_files`, called by ``locking``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import VlprepError

TMP_MARK = ".tmp-"
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Failures of a write that the file system, not the writer, causes."""
HASH_CHUNK = 4 << 20
_TEMP_NAME = re.compile(rf"{re.escape(TMP_MARK)}\d+(\.|$)")


def temp_sibling(path: Path) -> Path:
    """A temporary name in the same folder (same filesystem, so rename is atomic)."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def is_temp_name(name: str) -> bool:
    """A per-process temporary name: ``train.bin.tmp-123``, ``train.tmp-123.bin``, ``.RTE-bin.tmp-123``."""
    return _TEMP_NAME.search(name) is not None


@dataclass
class Cleanup:
    """What :func:`remove_temp_files` removed, for the one line that reports it."""

    removed: list[Path]
    bytes: int


def remove_temp_files(folders: Iterable[Path]) -> Cleanup:
    """Remove every ``*.tmp-<pid>`` file or folder under ``folders`` (call only under their exclusive lock).

    Resumable downloads (``*.part``, the hub's ``*.incomplete``) are kept: the next fetch continues them.
    """
    cleanup = Cleanup([], 0)
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in [d for d in dirs if is_temp_name(d)]:
                dirs.remove(name)
                path = Path(root) / name
                cleanup.bytes += _tree_bytes(path)
                shutil.rmtree(path, ignore_errors=True)
                cleanup.removed.append(path)
            for name in files:
                if is_temp_name(name):
                    path = Path(root) / name
                    with contextlib.suppress(FileNotFoundError):
                        cleanup.bytes += path.lstat().st_size
                        path.unlink()
                        cleanup.removed.append(path)
    return cleanup


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path; rename it onto ``path`` only if the block finishes.

    ``durable=False`` skips the fsync: right for intermediates that are validated before reuse
    (a process kill never loses written pages; only a power cut could, and then the check fails
    and the work is redone).
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = temp_sibling(path)
    try:
        with naming_file(path):
            yield tmp
            if durable:
                _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> Path:
    """Create a folder, turning permission problems into an actionable error."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise VlprepError(
            f"cannot create folder {path}: permission denied",
            fix="choose a writable --data-dir (or VLPREP_DATA) or fix the folder's permissions",
        ) from exc
    if not os.access(path, os.W_OK):
        raise VlprepError(
            f"output folder {path} is not writable",
            fix="choose a writable --data-dir (or VLPREP_DATA) or fix the folder's permissions",
        )
    return Path(path)


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON atomically, with sorted keys so equal data gives equal bytes."""
    with atomic_path(path, durable) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """A JSON file vlprep wrote; one that does not parse is a :class:`DamagedFile` naming it."""
    from .errors import DamagedFile

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFile(f"{path}: damaged, not valid JSON ({exc})",
                          fix="restore it, or run the command that wrote it again (a fetch or build "
                              "rewrites it; see vlprep --help)") from exc


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in blocks (shards and archives can be GBs: never whole in memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_digests(path: Path) -> tuple[str, str]:
    """md5 and sha256 of a file in one read (a wids index states both)."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


@contextlib.contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """Give a failed write inside the block (a full disk, a quota, a file-size limit) the file it concerns.

    ``write``, ``flush`` and ``fsync`` failures carry no file name, so the message would not say
    which file could not be written; the error is re-raised, not replaced. Other errors (a read
    of an input inside the block) are left as they are.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in WRITE_ERRNOS:
            exc.filename = str(path)
        raise


def _file_written_at(exc: BaseException) -> str | None:
    """The name of the file open for writing in the innermost frame of ``exc``'s traceback that holds one."""
    frames = []
    trace = exc.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str) \
                    and any(flag in getattr(value, "mode", "") for flag in "wax+"):
                return value.name
    return None


def explain_os_error(exc: OSError, what: str) -> VlprepError:
    """Translate a disk-level failure into a message naming the file and the fix.

    A failure of ``write`` names no file; the writers wrap their writes in :func:`naming_file` so
    it does, and for any other writer the file open for writing nearest the failure is named.
    ``what`` names the operation, and the file only when nothing better is known.
    """
    where = exc.filename or (_file_written_at(exc) if exc.errno in WRITE_ERRNOS else None) or what
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return VlprepError(
            f"no space left on device while writing {where}",
            fix="free disk space or point --data-dir at a larger disk, then run the same command again "
            "(finished work is kept)",
        )
    if exc.errno == errno.EFBIG:
        return VlprepError(
            f"file size limit reached while writing {where}",
            fix="raise the file-size limit (ulimit -f) or the file system's, then run the same command again "
            "(finished work is kept)",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return VlprepError(
            f"cannot write {where}: {exc.strerror}",
            fix="choose a writable --data-dir (or VLPREP_DATA) or fix the permissions",
        )
    return VlprepError(f"{what}: {exc.strerror or exc} ({where})")
