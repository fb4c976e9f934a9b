"""Locks per data dir and target, so that two vlprep processes never write the same files at once.

Two ``vlprep binarize glue`` at once used to remove each other's temporary folders (MNLI kept 15
of its 29 files while ``verify`` passed); two fetches of one dataset appended to one ``.part``.
Every command therefore claims what it touches before it starts, with ``flock`` on files under
``DATA_DIR/locks/``:

=================================  ==========================================================
stage                              claims (``X`` is the dataset)
=================================  ==========================================================
fetch X                            raw/X exclusive (CC3M: also out/X, its shards come from fetch)
binarize X, shard X                raw/X shared, out/X exclusive (VG: raw/coco shared, leak guard)
verify X, manifest X               raw/X shared, out/X shared
stats X, preview X                 out/X shared
demo                               the whole data dir exclusive
=================================  ==========================================================

``out/X`` stands for everything the stage writes for X: ``out/X``, ``out/X-<variant>`` and
``work/X``. Every command but ``demo`` also holds the data dir itself shared. A writer excludes
everyone else on its target; readers exclude writers but not each other. Locks are taken in one
order (data dir, then by name), so processes that wait never wait on each other in a circle.

Why lock files in ``locks/`` and not a ``.lock`` inside each target: a target folder may be
replaced or published whole (``out/X`` is what a trainer points at), and a lock file must never
be deleted while anyone may open it (a process holding the old inode and one holding the new one
would both "hold" it). The kernel drops a lock when its process ends, even by ``kill -9``, so there
is no stale lock to clean: the files stay, empty but for the last exclusive holder's record.

A process that finds a claim held either stops at once with one line naming the holder (PID,
command, since when) and the fix, or, with ``wait=True`` (``--wait-lock``), says whom it waits for
and waits.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import VlprepError
from .fileio import Cleanup, ensure_dir, remove_temp_files
from .layout import Layout
from .redact import redact_text

LOCKS_DIR = "locks"
DATA_DIR_CLAIM = "data-dir"
WRITERS = {"binarize", "shard"}
READERS_OF_RAW = {"verify", "manifest"}
READERS = {"verify", "manifest", "stats", "preview"}
LEAK_GUARD_SOURCES = {"vg": ("coco",)}
"""Datasets whose stage reads another dataset's raw files (VG's shard reads COCO's Karpathy split)."""
FETCH_WRITES_OUT = {"cc3m"}
"""Datasets whose fetch also writes their outputs (CC3M's crawl writes out/cc3m and work/cc3m)."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class Claim:
    """One lock: ``name`` is its file in ``locks/``; ``target`` the folder it protects, relative to the data dir."""

    name: str
    exclusive: bool
    target: str


def claims(stage: str, dataset: str) -> list[Claim]:
    """What ``vlprep <stage> <dataset>`` must hold while it runs (see the module's table)."""
    if stage == "demo":
        return [Claim(DATA_DIR_CLAIM, True, "")]
    found = [Claim(DATA_DIR_CLAIM, False, "")]
    if stage == "fetch":
        found.append(_raw(dataset, True))
        if dataset in FETCH_WRITES_OUT:
            found.append(_out(dataset, True))
    elif stage in WRITERS:
        found += [_raw(dataset, False), _out(dataset, True)]
        found += [_raw(source, False) for source in LEAK_GUARD_SOURCES.get(dataset, ())]
    elif stage in READERS:
        found.append(_out(dataset, False))
        if stage in READERS_OF_RAW:
            found.append(_raw(dataset, False))
    else:
        raise ValueError(f"no lock rule for stage {stage!r}")
    return found


def _raw(dataset: str, exclusive: bool) -> Claim:
    return Claim(f"raw-{dataset}", exclusive, f"raw/{dataset}")


def _out(dataset: str, exclusive: bool) -> Claim:
    return Claim(f"out-{dataset}", exclusive, f"out/{dataset}")


def merge_claims(found: Iterable[Claim]) -> list[Claim]:
    """One claim per lock (exclusive if any asks for it), in the one order every process uses."""
    merged: dict[str, Claim] = {}
    for claim in found:
        held = merged.get(claim.name)
        if held is None or (claim.exclusive and not held.exclusive):
            merged[claim.name] = claim
    return sorted(merged.values(), key=lambda c: (c.name != DATA_DIR_CLAIM, c.name))


@contextlib.contextmanager
def stage_lock(layout: Layout, stage: str, datasets: Iterable[str], wait: bool = False,
               say: Say = print) -> Iterator[list[Claim]]:
    """Hold every lock ``stage`` needs on ``datasets`` for the block; then clean stale temp files.

    Example::

        with stage_lock(Layout.from_env(), "binarize", ["owt"]):
            owt.binarize(layout, config, workers)

    Temporary files in the exclusively held folders are removed once the locks are held: nobody
    else may write there now, so every ``*.tmp-<pid>`` found is left by a run that died.
    """
    wanted = merge_claims(c for dataset in datasets for c in claims(stage, dataset))
    folder = layout.root / LOCKS_DIR
    if any(claim.exclusive for claim in wanted):
        ensure_dir(folder)
    else:  # a reader never creates a data dir, and may read one it cannot write
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        for claim in wanted:
            stack.enter_context(_hold(folder, claim, layout, wait, say))
        report_cleanup(remove_temp_files(stale_folders(layout, wanted)), layout, say)
        yield wanted


@contextlib.contextmanager
def _hold(folder: Path, claim: Claim, layout: Layout, wait: bool, say: Say) -> Iterator[None]:
    path = folder / f"{claim.name}.lock"
    fd, writable = _open_lock(path, claim)
    if fd is None:
        yield  # a reader on a data dir it may not write: nobody can write there through it either
        return
    try:
        if _acquire(fd, path, claim, layout, wait, say) and claim.exclusive and writable:
            _write_record(fd)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock (forked workers are gone by now)


def _open_lock(path: Path, claim: Claim) -> tuple[int | None, bool]:
    """The lock file, read-write where possible (``flock`` itself needs only read access)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666), True
    except PermissionError:
        pass
    except OSError as exc:
        if exc.errno != errno.EROFS and claim.exclusive:
            raise
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    except OSError:
        if claim.exclusive:
            raise
        return None, False


def _acquire(fd: int, path: Path, claim: Claim, layout: Layout, wait: bool, say: Say) -> bool:
    """Take the lock; False if the filesystem cannot lock at all (then say so and go on)."""
    mode = fcntl.LOCK_EX if claim.exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        say(f"warning: {path}: this filesystem cannot lock files ({exc.strerror}); do not run two vlprep "
            "commands on this data dir at once")
        return False
    holder = describe_holders(path)
    where = layout.root / claim.target
    if not wait:
        raise VlprepError(
            f"{where} is in use by {holder}",
            fix="wait for it to finish and run this again, or pass --wait-lock (or set VLPREP_WAIT_LOCK=1) "
            "to wait for it",
        )
    say(f"waiting for {holder} to finish with {where} ...")
    fcntl.flock(fd, mode)
    return True


def _write_record(fd: int) -> None:
    """Who holds the lock, for a process that finds it taken (the kernel knows no command lines)."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(sys.argv),
              "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _command(argv: list[str]) -> str:
    """``vlprep stage dataset --options``, with any password or token in a URL hidden."""
    return " ".join(["vlprep", *(shlex.quote(redact_text(arg)) for arg in argv[1:])])


# ------------------------------------------------------------------------------ who holds it

def describe_holders(path: Path) -> str:
    """``PID 123 (vlprep shard coco, since ... on host)``: the holders the kernel lists for ``path``."""
    record = _read_record(path)
    pids = holder_pids(path)
    if not pids and record.get("pid") and (pids is None or record.get("host") != socket.gethostname()):
        pids = [int(record["pid"])]  # no /proc/locks (not Linux), or a holder on another NFS client
    if not pids:
        return "another vlprep process"
    return ", ".join(_describe(pid, record) for pid in pids[:3])


def _describe(pid: int, record: dict) -> str:
    if record.get("pid") == pid and record.get("host") in (None, socket.gethostname()):
        return f"PID {pid} ({record.get('command', '?')}, since {record.get('since', '?')})"
    if record.get("pid") == pid:
        return f"PID {pid} on host {record['host']} ({record.get('command', '?')}, since {record.get('since', '?')})"
    command = _proc_command(pid)
    if command is None:
        return f"PID {pid} (exited; a worker process it started still holds the lock)"
    return f"PID {pid} ({command})"


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}  # being written this very moment, or never written (shared holders leave none)
    return record if isinstance(record, dict) else {}


def holder_pids(path: Path) -> list[int] | None:
    """PIDs holding a ``flock`` on ``path`` on this machine, from ``/proc/locks`` (None where there is none)."""
    try:
        inode = os.stat(path).st_ino
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    pids = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "->" marks a waiter, not a holder
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
            pids.append(int(fields[4]))
    return sorted(set(pids) - {os.getpid()})


def _proc_command(pid: int) -> str | None:
    """The command line of a running process, as ``vlprep stage ...`` when it is one (None if gone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    words = [word.decode(errors="replace") for word in argv]
    for start, word in enumerate(words[:3]):  # python -m vlprep.cli ..., or python .../bin/vlprep ...
        if word == "vlprep.cli" or Path(word).name == "vlprep":
            return _command(words[start:])
    return " ".join(shlex.quote(redact_text(word)) for word in words) or None


# ------------------------------------------------------------------------------ stale temp files

def stale_folders(layout: Layout, held: Iterable[Claim]) -> list[Path]:
    """The folders only this process may write now: those of its exclusive claims."""
    folders: list[Path] = []
    for claim in held:
        if not claim.exclusive:
            continue
        if claim.name == DATA_DIR_CLAIM:
            folders += [layout.root / part for part in ("raw", "work", "out")]
            continue
        kind, dataset = claim.name.split("-", 1)
        if kind == "raw":
            folders.append(layout.raw(dataset))
        else:
            folders += [layout.out(dataset), layout.work(dataset)]
            folders += variant_folders(layout, dataset)
    return folders


def variant_folders(layout: Layout, dataset: str) -> list[Path]:
    """The ``out/<dataset>-<variant>`` folders of ``dataset``, never another dataset's whose name
    starts as this one's does (``<dataset>-<word>`` may be a dataset of its own)."""
    from .datasets.registry import names

    others = {name for name in names() if name != dataset}
    return sorted(p for p in layout.out_root().glob(f"{dataset}-*") if p.is_dir() and p.name not in others)


def report_cleanup(cleanup: Cleanup, layout: Layout, say: Say) -> None:
    """One line: how many stale temporary files went, how many bytes, and the first of them."""
    if not cleanup.removed:
        return
    count = len(cleanup.removed)
    first = cleanup.removed[0]
    shown = first.relative_to(layout.root) if first.is_relative_to(layout.root) else first
    more = f" and {count - 1} more" if count > 1 else ""
    say(f"removed {count} stale temporary file{'s' if count > 1 else ''} of interrupted runs "
        f"({_human(cleanup.bytes)}): {shown}{more}")


def _human(size: int) -> str:
    if size < 1000:
        return f"{size:,} bytes"
    scaled, unit = float(size), "bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        scaled /= 1000
        if scaled < 1000:
            break
    return f"{scaled:.1f} {unit}"
