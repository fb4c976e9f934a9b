"""The crawl on real clusters on 127.0.0.1: a two-node Ray cluster whose second node's Python lacks vlprep,
and a Spark standalone master + worker (when Java is installed). Each run's shards are compared byte for
byte with the multiprocessing run of the same rows, and the cluster's own records (Ray's worker logs of
each node, the Spark master's list of applications) show that the work really ran there."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlprep.pipeline.engines import clusters, webcrawl
from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.layout import Layout
from vlprep.pipeline.records.cc3m import READER
from vlprep.pipeline.samples.web import serve_web, write_tsv

from ..helpers import run_cli
from .clusters_fixtures import bare_python, ray_cluster

pytest.importorskip("ray")
KINDS = ["good", "404", "good", "png", "good", "html", "webp", "good", "redirect", "good", "good", "bomb"]
COUNT = 6
SUB_SHARD = 3
"""Rows per img2dataset shard here, so a window has several shards for the nodes to share."""


@pytest.fixture(scope="module")
def web():
    with serve_web(trickle_seconds=1) as served:
        yield served


@pytest.fixture(scope="module")
def tsv(web, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clusters") / "t.tsv"
    write_tsv(path, web, KINDS)
    return path


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    monkeypatch.setattr(webcrawl, "SUB_SHARD", SUB_SHARD)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def crawl(data: Path, tsv: Path, **cluster) -> dict[str, bytes]:
    """The shards of a first-N crawl of ``tsv`` into ``data``, by name."""
    config = webcrawl.DownloadConfig(timeout=3.0, retries=0, processes=1, threads=4, shard_samples=4, **cluster)
    urls = webcrawl.UrlList(name="cc3m", path=tsv, reader=READER, raw_name="t.tsv", command="vlprep fetch cc3m")
    webcrawl.fetch_first(Layout(data), urls, COUNT, config)
    return {p.name: p.read_bytes() for p in sorted((data / "out" / "cc3m").glob("cc3m-train-*.tar"))}


@pytest.fixture(scope="module")
def reference(tsv, tmp_path_factory) -> dict[str, bytes]:
    """The multiprocessing run of the same rows."""
    patch = pytest.MonkeyPatch()
    patch.setattr(webcrawl, "SUB_SHARD", SUB_SHARD)
    try:
        shards = crawl(tmp_path_factory.mktemp("reference"), tsv)
    finally:
        patch.undo()
    assert len(shards) == 2
    return shards


@pytest.fixture(scope="module")
def ray_nodes():
    with ray_cluster() as cluster:
        yield cluster


def test_unreachable_or_unnamed_clusters_are_clear_errors(monkeypatch):
    with pytest.raises(VlprepError, match=r"--ray-address 127\.0\.0\.1:9: nothing answers at 127\.0\.0\.1:9"):
        clusters.resolve("ray", "127.0.0.1:9")
    with pytest.raises(VlprepError, match="(?s)names no cluster.*--ray-address local"):
        clusters.resolve("ray")
    with pytest.raises(VlprepError, match=r"--spark-master spark://127\.0\.0\.1:9: nothing answers at 127\.0\.0\.1:9"):
        clusters.resolve("pyspark", spark_master="spark://127.0.0.1:9")
    monkeypatch.setenv("SPARK_CONF_DIR", "/nonexistent")
    monkeypatch.delenv("MASTER", raising=False)
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    with pytest.raises(VlprepError, match="names no Spark master"):
        clusters.resolve("pyspark")
    monkeypatch.setenv("MASTER", "local[2]")
    assert clusters.resolve("pyspark") == clusters.ClusterConfig("pyspark")  # the user's own configuration
    with pytest.raises(VlprepError, match="is for --distributor ray"):
        clusters.resolve("multiprocessing", ray_address="127.0.0.1:9")


def test_the_cli_refuses_an_unreachable_ray_address(tmp_path, tsv):
    failed = run_cli("fetch", "cc3m", "--data-dir", str(tmp_path), "--tsv", str(tsv), "--distributor", "ray",
                     "--ray-address", "127.0.0.1:9", "--limit", "2", check=False)
    assert failed.returncode == 1 and "--ray-address 127.0.0.1:9: nothing answers at 127.0.0.1:9" in failed.stderr


def test_the_staged_package_is_vlprep_alone(tmp_path):
    staged = clusters.stage_package(tmp_path)
    names = {str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()}
    assert "cli.py" in names and "pipeline/engines/webdownload.py" in names
    assert "pipeline/transforms/data/gpt2-dict.txt" in names
    assert not any(n.startswith(("tests/", ".venv/", "benchmarks/")) or "__pycache__" in n for n in names)


def test_ray_two_nodes_give_the_multiprocessing_bytes(ray_nodes, tsv, reference, tmp_path):
    before = {name: ray_nodes.task_logs(name, "_download") for name in ray_nodes.nodes}
    assert crawl(tmp_path / "data", tsv, distributor="ray", ray_address=ray_nodes.address) == reference
    ran = {name: ray_nodes.task_logs(name, "_download") - before[name] for name in ray_nodes.nodes}
    assert ran["head"] > 0 and ran["bare"] > 0  # both nodes ran shards; "bare" has no vlprep installed


def test_a_killed_driver_resumes_on_the_cluster_to_the_same_bytes(ray_nodes, tsv, reference, tmp_path):
    """kill -9 of ``vlprep`` while its window runs on Ray: the window's child (the Ray job's driver)
    ends itself, and the same command then finishes with the multiprocessing run's bytes."""
    data = tmp_path / "data"
    command = [sys.executable, "-m", "vlprep.cli", "fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv),
               "--limit", str(COUNT), "--timeout", "3", "--retries", "0", "--workers", "1", "--threads", "4",
               "--shard-samples", "4", "--distributor", "ray", "--ray-address", ray_nodes.address]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(data.glob("work/cc3m/*/windows/000000/engine.json")) and time.monotonic() < deadline:
        assert process.poll() is None, "the fetch ended before its first window started"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (data / "out" / "cc3m" / "stats.json").exists()  # killed mid-window, not after it
    time.sleep(2)  # the window's child notices within 0.5 s that its parent is gone
    assert not [p for p in Path("/proc").glob("[0-9]*") if _runs_in(p, str(data))]
    run_cli(*command[3:])
    assert {p.name: p.read_bytes() for p in sorted((data / "out" / "cc3m").glob("cc3m-train-*.tar"))} == reference


def _runs_in(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_a_node_that_cannot_run_the_downloader_is_left_out(ray_nodes, tsv, reference, tmp_path, capsys):
    ray_nodes.add_node("broken", bare_python(ray_nodes.root / "venv-broken", broken=("img2dataset",)))
    assert crawl(tmp_path / "data", tsv, distributor="ray", ray_address=ray_nodes.address) == reference
    said = capsys.readouterr()
    assert "is left out: cannot import the downloader (ImportError: img2dataset is broken on this node)" \
        in said.out + said.err
    assert ray_nodes.task_logs("broken", "_download") == 0


def test_a_node_that_fails_its_shards_costs_only_them(ray_nodes, tsv, reference, tmp_path, monkeypatch):
    """The broken node passes no check here (as if it broke after it): its shards fail, move, and the
    node gets no more; the fetch ends with the same bytes."""
    if "broken" not in ray_nodes.nodes:
        ray_nodes.add_node("broken", bare_python(ray_nodes.root / "venv-broken", broken=("img2dataset",)))
    monkeypatch.setattr(clusters, "preflight", lambda config, *args, **kwargs: config)
    data = tmp_path / "data"
    assert crawl(data, tsv, distributor="ray", ray_address=ray_nodes.address) == reference
    logs = "".join(p.read_text() for p in data.glob("work/cc3m/*/windows/*/engine.log"))
    assert "img2dataset is broken on this node" in logs and "gets no more" in logs


def test_ray_errors_name_the_cause_from_the_engine_log(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("Traceback ...\nValueError: x\n" + clusters.CAUSE_PREFIX + "no Ray node left: ImportError: y\n")
    assert clusters.engine_cause(log) == "no Ray node left: ImportError: y"
