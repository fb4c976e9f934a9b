"""Concurrent runs never lose data; killed runs leave nothing behind; workers die with their parent.

Every test starts real ``vlprep`` processes. Where two must overlap, the one that took the lock is
frozen with SIGSTOP while it holds it (a sample run is shorter than a Python start-up, so starting
two at once would not by itself make them meet), and thawed with SIGCONT afterwards.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlprep.pipeline.fileio import is_temp_name, sha256_file
from vlprep.pipeline.layout import Layout
from vlprep.pipeline.locking import claims, holder_pids, stage_lock
from vlprep.pipeline.samples.images import build_imagenet_mirror
from vlprep.pipeline.samples.text import build_glue_mirror, build_owt_mirror

from .helpers import run_cli

GLUE_TRIAL = ("--limit", "100000")
IMAGENET_TRIAL = ("--limit", "100000", "--shard-samples", "8")


class Run:
    """A ``vlprep`` process started in the background, its output in files (a frozen process writes none)."""

    def __init__(self, folder: Path, *args: str, session: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / str(time.monotonic_ns())
        self.out, self.err = stem.with_suffix(".out"), stem.with_suffix(".err")
        env = {**os.environ, "VLPREP_HTTP_BACKOFF": "0.01"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "vlprep.cli", *args], stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=session)
        self.pid = self.process.pid

    def finish(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.err.read_text()


def lock_holder(data: Path, name: str, runs: list[Run], timeout: float = 60) -> Run:
    """The run that holds ``locks/<name>.lock`` exclusively, once one does; it is frozen on return."""
    path = data / "locks" / f"{name}.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = json.loads(path.read_text() or "{}").get("pid")
        except (OSError, ValueError):
            pid = None
        for run in runs:
            if run.pid == pid:
                os.kill(run.pid, signal.SIGSTOP)
                if run.pid in (holder_pids(path) or []):
                    return run
                os.kill(run.pid, signal.SIGCONT)  # an old record: this run had not locked yet
        assert all(run.process.poll() is None for run in runs), [run.stderr() for run in runs]
        time.sleep(0.005)
    raise AssertionError(f"nobody took {path}")


def thaw_all(runs: list[Run]) -> None:
    for run in runs:
        if run.process.poll() is None:
            os.kill(run.pid, signal.SIGCONT)


def two_at_once(data: Path, logs: Path, lock: str, args: tuple[str, ...]) -> tuple[Run, Run]:
    """Start two identical commands at once; return (the one holding ``lock``, frozen; the other)."""
    runs = [Run(logs, *args), Run(logs, *args)]
    try:
        holder = lock_holder(data, lock, runs)
    except BaseException:
        thaw_all(runs)
        raise
    return holder, next(run for run in runs if run is not holder)


def assert_one_ran_and_the_other_named_it(data: Path, logs: Path, lock: str, args: tuple[str, ...]) -> None:
    holder, other = two_at_once(data, logs, lock, args)
    try:
        assert other.finish(timeout=60) == 1
        message = other.stderr()
        assert f"PID {holder.pid} (vlprep {args[0]} {args[1]}" in message, message
        assert "--wait-lock" in message and "Traceback" not in message
        assert len(message.strip().splitlines()) == 2  # the error line and its fix
    finally:
        thaw_all([holder, other])
    assert holder.finish() == 0, holder.stderr()


def assert_both_finish_one_after_the_other(data: Path, logs: Path, lock: str, args: tuple[str, ...]) -> None:
    holder, other = two_at_once(data, logs, lock, (*args, "--wait-lock"))
    try:
        deadline = time.monotonic() + 60
        while f"waiting for PID {holder.pid}" not in other.stderr():
            assert time.monotonic() < deadline and other.process.poll() is None, other.stderr()
            time.sleep(0.02)
    finally:
        thaw_all([holder, other])
    assert holder.finish() == 0, holder.stderr()
    assert other.finish() == 0, other.stderr()


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if is_temp_name(p.name)]


def dead_pid() -> int:
    """The PID of a process that has ended (so nothing can still be writing its temp files)."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(ended.stdout)


# --------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def glue_mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("glue-mirror")
    build_glue_mirror(root)
    return root


@pytest.fixture(scope="module")
def glue_reference(tmp_path_factory, glue_mirror) -> dict[str, str]:
    """Every file of out/glue after one run alone."""
    data = tmp_path_factory.mktemp("glue-reference") / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror))
    run_cli("binarize", "glue", "--data-dir", str(data), *GLUE_TRIAL)
    return files_of(data / "out" / "glue")


@pytest.fixture
def glue_fetched(tmp_path, glue_mirror) -> Path:
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror))
    return data


@pytest.fixture(scope="module")
def imagenet_mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet-mirror")
    build_imagenet_mirror(root)
    return root


@pytest.fixture(scope="module")
def big_owt_mirror(tmp_path_factory) -> Path:
    """Two subsets large enough that binarize runs for a few seconds with two workers."""
    root = tmp_path_factory.mktemp("big-owt-mirror")
    build_owt_mirror(root, (0, 5), chunks=12, docs_per_chunk=150, seed=11)
    return root


# ------------------------------------------------------------------------ 4. concurrent runs

def test_two_binarize_glue_at_once_one_runs_the_other_names_its_pid(tmp_path, glue_fetched, glue_reference):
    args = ("binarize", "glue", "--data-dir", str(glue_fetched), *GLUE_TRIAL)
    assert_one_ran_and_the_other_named_it(glue_fetched, tmp_path / "logs", "out-glue", args)
    assert files_of(glue_fetched / "out" / "glue") == glue_reference
    assert len(list((glue_fetched / "out" / "glue" / "MNLI-bin").rglob("*.*"))) == 29
    run_cli("verify", "glue", "--data-dir", str(glue_fetched))


def test_two_binarize_glue_with_wait_lock_both_finish_complete(tmp_path, glue_fetched, glue_reference):
    args = ("binarize", "glue", "--data-dir", str(glue_fetched), *GLUE_TRIAL)
    assert_both_finish_one_after_the_other(glue_fetched, tmp_path / "logs", "out-glue", args)
    assert files_of(glue_fetched / "out" / "glue") == glue_reference
    run_cli("verify", "glue", "--data-dir", str(glue_fetched))


def test_a_reader_is_refused_while_a_writer_holds_the_target(tmp_path, glue_fetched):
    writer = Run(tmp_path / "logs", "binarize", "glue", "--data-dir", str(glue_fetched), *GLUE_TRIAL)
    try:
        lock_holder(glue_fetched, "out-glue", [writer])
        for command in (("verify", "glue"), ("fetch", "glue", "--mirror", str(tmp_path))):
            refused = run_cli(*command, "--data-dir", str(glue_fetched), check=False)
            assert refused.returncode == 1 and f"PID {writer.pid} (vlprep binarize glue" in refused.stderr
    finally:
        thaw_all([writer])
    assert writer.finish() == 0


def test_two_fetch_owt_at_once_one_runs_the_other_names_its_pid(tmp_path, owt_mirror, owt_mirror_url):
    data = tmp_path / "data"
    args = ("fetch", "owt", "--data-dir", str(data), "--mirror", owt_mirror_url)
    assert_one_ran_and_the_other_named_it(data, tmp_path / "logs", "raw-owt", args)
    raw = data / "raw" / "owt"
    published = files_of(owt_mirror)
    published.pop("SHA256SUMS")
    assert {relpath: sha256_file(raw / relpath) for relpath in published} == published
    assert not list(raw.rglob("*.part")) and not temp_files(raw)
    again = run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", owt_mirror_url)
    assert "0 fetched, 6 already on disk" in again.stdout


def test_two_fetch_owt_with_wait_lock_both_succeed(tmp_path, owt_mirror_url):
    data = tmp_path / "data"
    args = ("fetch", "owt", "--data-dir", str(data), "--mirror", owt_mirror_url)
    assert_both_finish_one_after_the_other(data, tmp_path / "logs", "raw-owt", args)
    run_cli("binarize", "owt", "--data-dir", str(data))
    run_cli("verify", "owt", "--data-dir", str(data))


def test_two_shard_imagenet_at_once_one_runs_the_other_names_its_pid(tmp_path, imagenet_mirror):
    data = tmp_path / "data"
    run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(imagenet_mirror))
    args = ("shard", "imagenet", "--data-dir", str(data), "--workers", "2", *IMAGENET_TRIAL)
    assert_one_ran_and_the_other_named_it(data, tmp_path / "logs", "out-imagenet", args)
    verified = run_cli("verify", "imagenet", "--data-dir", str(data))
    assert "imagenet train: ok" in verified.stdout and "29 images decoded" in verified.stdout

    assert_both_finish_one_after_the_other(data, tmp_path / "logs", "out-imagenet", args)
    run_cli("verify", "imagenet", "--data-dir", str(data))


def test_two_datasets_at_once_in_one_data_dir_both_succeed(tmp_path, glue_fetched, owt_mirror, glue_reference):
    data = glue_fetched
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(owt_mirror))
    glue = Run(tmp_path / "logs", "binarize", "glue", "--data-dir", str(data), *GLUE_TRIAL)
    try:
        lock_holder(data, "out-glue", [glue])  # frozen while it holds out/glue and the data dir
        run_cli("binarize", "owt", "--data-dir", str(data), "--workers", "2")
        run_cli("verify", "owt", "--data-dir", str(data))
    finally:
        thaw_all([glue])
    assert glue.finish() == 0, glue.stderr()
    assert files_of(data / "out" / "glue") == glue_reference
    run_cli("verify", "glue", "--data-dir", str(data))


def test_what_each_stage_claims():
    def held(stage: str, dataset: str) -> set[tuple[str, bool]]:
        return {(c.name, c.exclusive) for c in claims(stage, dataset)}

    assert held("fetch", "coco") == {("data-dir", False), ("raw-coco", True)}
    assert held("fetch", "cc3m") == {("data-dir", False), ("raw-cc3m", True), ("out-cc3m", True)}
    assert held("shard", "vg") == {("data-dir", False), ("raw-vg", False), ("raw-coco", False), ("out-vg", True)}
    assert held("verify", "owt") == {("data-dir", False), ("raw-owt", False), ("out-owt", False)}
    assert held("stats", "coco") == {("data-dir", False), ("out-coco", False)}
    assert held("demo", "all") == {("data-dir", True)}


def test_shard_vg_holds_coco_raw_so_a_fetch_of_coco_is_refused(tmp_path):
    """VG's leak guard reads raw/coco: fetching COCO meanwhile is refused, naming the holder."""
    data = tmp_path / "data"
    with stage_lock(Layout(data), "shard", ["vg"], say=lambda line: None):
        refused = run_cli("fetch", "coco", "--data-dir", str(data), "--mirror", str(tmp_path), check=False)
        free = run_cli("fetch", "imagenet", "--data-dir", str(data), "--mirror", str(tmp_path), check=False)
    assert refused.returncode == 1 and f"{data / 'raw' / 'coco'} is in use by PID {os.getpid()}" in refused.stderr
    assert "in use" not in free.stderr  # another dataset's raw folder is free (it fails later: no files)


# ---------------------------------------------------------------- 8a. stale temporary files

def test_temp_files_of_dead_runs_are_removed_and_resumable_parts_kept(tmp_path, fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    out, work, raw = (fetched / part / "owt" for part in ("out", "work", "raw"))
    reference = files_of(out)
    pid = dead_pid()
    chunk = next(work.glob("chunks-*/*/00000.bin"))
    planted = {out / f"train.tmp-{pid}.bin": 3_000_000, out / f"stats.json.tmp-{pid}": 10,
               chunk.with_name(f"00000.bin.tmp-{pid}"): 1000, out / f"train.tmp-{os.getpid()}.idx": 10}
    for path, size in planted.items():
        path.write_bytes(b"\0" * size)
    result = run_cli("binarize", "owt", "--data-dir", str(fetched))
    assert "removed 4 stale temporary files of interrupted runs (3.0 MB)" in result.stderr
    assert not temp_files(out, work) and files_of(out) == reference

    part = raw / "subsets" / "urlsf_subset00.tar.part"
    part.write_bytes(b"resumable")
    (raw / f"SHA256SUMS.tmp-{pid}").write_text("half")
    variant_dir = fetched / "out" / "owt-variant" / f".part-bin.tmp-{pid}"  # out/<dataset>-<variant>/
    variant_dir.mkdir(parents=True)
    (variant_dir / "train.bin").write_bytes(b"x" * 100)
    fetched_again = run_cli("fetch", "owt", "--data-dir", str(fetched), "--mirror", str(tmp_path / "none"),
                            check=False)
    assert "removed 1 stale temporary file of interrupted runs (4 bytes)" in fetched_again.stderr
    assert part.exists() and not temp_files(raw)
    assert variant_dir.exists()  # fetch holds raw/owt only: out/ belongs to binarize
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    assert not variant_dir.exists()


@pytest.mark.slow
def test_kill_9_mid_binarize_then_rerun_removes_its_temp_files_and_ends_identical(tmp_path, big_owt_mirror):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for data in (reference, killed):
        run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(big_owt_mirror), "--subsets", "0,5")
    run_cli("binarize", "owt", "--data-dir", str(reference), "--train-subsets", "0", "--workers", "2")

    run = Run(tmp_path / "logs", "binarize", "owt", "--data-dir", str(killed), "--train-subsets", "0",
              "--workers", "2", session=True)
    folders = (killed / "out" / "owt", killed / "work" / "owt")
    left: list[Path] = []
    while run.process.poll() is None and not left:
        os.killpg(run.pid, signal.SIGSTOP)  # the whole run stands still while we look
        left = temp_files(*folders)
        os.killpg(run.pid, signal.SIGKILL if left else signal.SIGCONT)
        time.sleep(0.003)
    run.process.wait()
    assert left, "the run ended before a temporary file was seen; make the sample larger"

    rerun = run_cli("binarize", "owt", "--data-dir", str(killed), "--train-subsets", "0", "--workers", "2",
                    "--wait-lock")
    assert "stale temporary file" in rerun.stderr and not temp_files(*folders)
    assert files_of(killed / "out" / "owt") == files_of(reference / "out" / "owt")
    run_cli("verify", "owt", "--data-dir", str(killed))


# ---------------------------------------------------------------- 8b. workers die with their parent

def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_die_when_only_the_main_process_is_killed(tmp_path, big_owt_mirror):
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(big_owt_mirror), "--subsets", "0,5")
    run = Run(tmp_path / "logs", "binarize", "owt", "--data-dir", str(data), "--train-subsets", "0",
              "--workers", "2", session=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := children(run.pid)) < 2:
            assert time.monotonic() < deadline and run.process.poll() is None, run.stderr()
            time.sleep(0.01)
        os.kill(run.pid, signal.SIGKILL)  # the main process only, as `kill -9 <pid>` does
        run.process.wait()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)], "pool workers outlived their parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
