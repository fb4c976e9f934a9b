"""The cluster a web crawl runs img2dataset on: Ray or Spark by the user's choice, never by accident.

img2dataset left alone builds ``local[N]`` Spark or starts a private Ray whenever it finds no session,
so a crawl meant for a cluster quietly runs on one machine. Here a cluster is named (``--ray-address``
or ``RAY_ADDRESS``; ``--spark-master`` or the user's own Spark configuration) or the run is refused;
an address that does not answer is an error that names it. A local cluster is only ever an explicit
choice (``--ray-address local``, ``--spark-master local[N]``).

Workers need ray or pyspark and img2dataset's dependencies, never vlprep: vlprep ships itself (a
staged copy of its ``.py`` files and package data, as Ray's ``py_modules`` or a zip for Spark's
``addPyFile``). Before the first window :func:`preflight` runs a task on every node that imports the
downloader and reads a token the driver wrote into the crawl's folder, so a folder that is not shared,
or a node that cannot run the downloader, is found before any row is tried; bad Ray nodes are left out
of the crawl. The Ray distributor (:func:`ray_distributor`) replaces img2dataset's, which fails the
whole window on one failed task: here a failed task costs its shard, which is tried again on another
node, and a node that fails twice gets no more shards.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import zipfile
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..errors import VlprepError

LOCAL = "local"
"""``--ray-address local``: a Ray started for this run on this machine, by choice."""
TOKEN_NAME = "cluster-check.token"
NODE_STRIKES = 2
"""Failed shards after which a Ray node gets no more shards (one failure may be the shard's own)."""
SHARD_TRIES = 4
"""Most Ray tasks one shard gets, each on a node that has not failed it before when one is left."""
CAUSE_PREFIX = "vlprep cluster: "
"""Lines of the engine log that say what went wrong on the cluster; the crawl's error repeats the last."""
CONNECT_SECONDS = 5.0
PACKAGE_DATA = ("pipeline/transforms/data/gpt2-dict.txt",)
"""vlprep's package data (pyproject's ``package-data``), shipped with its ``.py`` files."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where img2dataset's distributor runs: ``multiprocessing`` on this machine, or a named cluster."""

    distributor: str = "multiprocessing"
    ray_address: str | None = None
    spark_master: str | None = None
    exclude_nodes: tuple[str, ...] = ()
    """Ray node ids the preflight found unable to run the downloader."""

    def to_json(self) -> dict:
        return {**asdict(self), "exclude_nodes": list(self.exclude_nodes)}

    @classmethod
    def from_json(cls, data: dict | None) -> ClusterConfig:
        data = dict(data or {})
        data["exclude_nodes"] = tuple(data.get("exclude_nodes", ()))
        return cls(**data)


# ----------------------------------------------------------------------------------------------- naming


def resolve(distributor: str, ray_address: str | None = None, spark_master: str | None = None) -> ClusterConfig:
    """The cluster the options and environment name, checked to answer; an error when none is named."""
    for given, option, wanted in ((ray_address, "--ray-address", "ray"), (spark_master, "--spark-master", "pyspark")):
        if given and distributor != wanted:
            raise VlprepError(f"{option} {given} is for --distributor {wanted}, not {distributor}",
                              fix=f"add --distributor {wanted}, or leave out {option}")
    if distributor == "ray":
        address = ray_address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise VlprepError("--distributor ray names no cluster: neither --ray-address nor RAY_ADDRESS is set",
                              fix="pass --ray-address HOST:PORT (the address `ray start --head` prints), or "
                                  "--ray-address local to start a Ray on this machine for this run")
        if address != LOCAL:
            check_reachable(address, f"--ray-address {address}", "start the cluster (`ray start --head` on the head node) "
                            "or correct the address; --ray-address local runs Ray on this machine")
        return ClusterConfig(distributor, ray_address=address)
    if distributor == "pyspark":
        master = spark_master or user_spark_master()
        if not master:
            raise VlprepError("--distributor pyspark names no Spark master: no --spark-master, and neither MASTER, "
                              "PYSPARK_SUBMIT_ARGS --master nor spark.master in spark-defaults.conf is set",
                              fix="pass --spark-master spark://HOST:7077 (or local[N] for Spark on this machine)")
        for address in spark_addresses(master):
            check_reachable(address, f"--spark-master {master}", "start the master (spark-class "
                            "org.apache.spark.deploy.master.Master) or correct the address")
        return ClusterConfig(distributor, spark_master=spark_master)
    return ClusterConfig(distributor)


def user_spark_master() -> str | None:
    """The master the user's own Spark configuration names (read as spark-submit would)."""
    if os.environ.get("MASTER"):
        return os.environ["MASTER"]
    found = re.search(r"--master[= ](\S+)", os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    if found:
        return found.group(1)
    for folder in (os.environ.get("SPARK_CONF_DIR"), os.environ.get("SPARK_HOME") and
                   os.path.join(os.environ["SPARK_HOME"], "conf")):
        path = Path(folder or "/nonexistent") / "spark-defaults.conf"
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and parts[0] == "spark.master":
                    return parts[1].strip()
    return None


def spark_addresses(master: str) -> list[str]:
    """``host:port`` of each standalone master in ``spark://h1:p1,h2:p2``; none for local, yarn, k8s."""
    if not master.startswith("spark://"):
        return []
    return [part for part in master[len("spark://"):].split(",") if part]


def check_reachable(address: str, what: str, fix: str) -> None:
    """Refuse an address nobody answers at, in seconds (Ray and Spark themselves wait for minutes)."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise VlprepError(f"{what}: {address!r} is not HOST:PORT", fix=fix)
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as exc:
        raise VlprepError(f"{what}: nothing answers at {host}:{port} ({exc.strerror or exc})", fix=fix) from None


# ----------------------------------------------------------------------------------------------- shipping


def package_root() -> Path:
    """The folder the ``vlprep`` package is imported from (the repository root in a checkout)."""
    import vlprep

    return Path(next(iter(vlprep.__path__)))


def package_files(root: Path) -> list[str]:
    """vlprep's own files, relative to ``root``: ``cli.py``, ``pipeline/**.py`` and its package data."""
    found = ["cli.py"] + sorted(str(p.relative_to(root)) for p in (root / "pipeline").rglob("*.py")
                                 if "__pycache__" not in p.parts)
    return found + [name for name in PACKAGE_DATA if (root / name).is_file()]


def stage_package(dest: Path) -> Path:
    """A clean copy of vlprep as ``dest/vlprep`` (no venv, tests or data), the folder workers import."""
    root = package_root()
    staged = dest / "vlprep"
    for name in package_files(root):
        target = staged / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, target)
    # The installed vlprep is a namespace package (no root __init__.py); zipimport, which Spark's
    # addPyFile relies on, finds only regular packages.
    (staged / "__init__.py").write_text('"""vlprep, as shipped to cluster workers."""\n')
    return staged


def zip_package(staged: Path) -> Path:
    """``vlprep.zip`` beside the staged folder, with ``vlprep/`` at its top (Spark's ``addPyFile``)."""
    path = staged.parent / "vlprep.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(staged.rglob("*")):
            if file.is_file():
                archive.write(file, str(file.relative_to(staged.parent)))
    return path


# ----------------------------------------------------------------------------------------------- sessions


@contextlib.contextmanager
def session(config: ClusterConfig, processes: int, name: str) -> Iterator[None]:
    """Connect to the configured cluster for the block (nothing for multiprocessing), vlprep shipped."""
    if config.distributor == "multiprocessing":
        yield
        return
    with tempfile.TemporaryDirectory(prefix="vlprep-ship-") as folder:
        staged = stage_package(Path(folder))
        if config.distributor == "ray":
            with ray_session(config, staged, processes):
                yield
        else:
            with spark_session(config, staged, processes, name):
                yield


@contextlib.contextmanager
def ray_session(config: ClusterConfig, staged: Path, processes: int) -> Iterator[None]:
    import ray

    local = config.ray_address == LOCAL
    options = {"num_cpus": processes, "include_dashboard": False} if local else {"address": config.ray_address}
    try:
        ray.init(**options, runtime_env={"py_modules": [str(staged)],
                                         "env_vars": {"NO_ALBUMENTATIONS_UPDATE": "1"}},
                 logging_level="WARNING", namespace="vlprep")
    except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError or ValueError
        raise VlprepError(f"--ray-address {config.ray_address}: cannot connect ({type(exc).__name__}: "
                          f"{_first_line(exc)})", fix="check that the address is the head's GCS address "
                          "(`ray status` on the head prints it) and that its Ray version is "
                          f"{ray.__version__}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def spark_session(config: ClusterConfig, staged: Path, processes: int, name: str) -> Iterator[object]:
    """One Spark application; img2dataset's pyspark distributor finds it active and uses it."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(name).config("spark.excludeOnFailure.enabled", "true") \
        .config("spark.task.maxFailures", "4")
    if config.spark_master:
        builder = builder.master(config.spark_master)
    try:
        spark = builder.getOrCreate()
        spark.sparkContext.addPyFile(str(zip_package(staged)))
    except Exception as exc:  # noqa: BLE001 - py4j and pyspark raise their own kinds
        raise VlprepError(f"Spark master {config.spark_master or user_spark_master()}: cannot start an "
                          f"application ({type(exc).__name__}: {_first_line(exc)})",
                          fix="check the master's address and that this machine's pyspark matches its "
                              "version") from None
    try:
        yield spark
    finally:
        spark.stop()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# ----------------------------------------------------------------------------------------------- preflight


def node_check(token_path: str, token: str) -> str:
    """On a worker: import the downloader and read the driver's token; "" if fine, else why not."""
    try:
        import img2dataset.downloader  # noqa: F401

        from . import webdownload  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure makes the node useless
        return f"cannot import the downloader ({type(exc).__name__}: {exc})"
    try:
        found = Path(token_path).read_text()
    except OSError as exc:
        return f"cannot read {token_path} ({type(exc).__name__}: {exc.strerror or exc})"
    return "" if found == token else f"{token_path} holds another token (a different folder under the same path)"


def preflight(config: ClusterConfig, folder: Path, processes: int, say=print) -> ClusterConfig:
    """Check every node before the first window; return the config with the unusable Ray nodes left out.

    ``folder`` is where windows are written: it must be the same shared path on every node.
    """
    if config.distributor == "multiprocessing":
        return config
    token = secrets.token_hex(16)
    token_path = Path(folder) / TOKEN_NAME
    token_path.write_text(token)
    try:
        with session(config, processes, "vlprep-preflight"):
            if config.distributor == "ray":
                results = _ray_node_checks(str(token_path), token)
            else:
                results = _spark_node_checks(str(token_path), token)
    finally:
        token_path.unlink(missing_ok=True)
    bad = {node: why for node, why in results.items() if why}
    for node, why in sorted(bad.items()):
        say(f"{config.distributor} node {node} is left out: {why}")
    if len(bad) == len(results):
        raise VlprepError(f"no {config.distributor} node can run the crawl: {next(iter(bad.values()))}",
                          fix=f"every node must see {folder} at this same path (a shared mount such as NFS) and "
                              "have ray/pyspark and img2dataset's dependencies installed (see docs/clusters.md)")
    return ClusterConfig(**{**asdict(config), "exclude_nodes": tuple(sorted(bad)) if config.distributor == "ray"
                            else ()})


def _ray_node_checks(token_path: str, token: str) -> dict[str, str]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0, max_retries=0)(_remote_node_check)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    refs = {node: check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            .remote(token_path, token) for node in nodes}
    results = {}
    for node, ref in refs.items():
        try:
            results[node] = ray.get(ref, timeout=120)
        except Exception as exc:  # noqa: BLE001 - a task that cannot even start says why here
            results[node] = _task_cause(exc)
    return results


def _remote_node_check(token_path: str, token: str) -> str:
    """Runs on the node (pickled by value, so it starts even where vlprep cannot be imported)."""
    try:
        from vlprep.pipeline.engines.clusters import node_check
    except Exception as exc:  # noqa: BLE001
        return f"cannot import vlprep ({type(exc).__name__}: {exc})"
    return node_check(token_path, token)


_remote_node_check.__module__ = "__main__"  # pickled by value: it must run before vlprep is importable


def _spark_node_checks(token_path: str, token: str) -> dict[str, str]:
    from pyspark.sql import SparkSession

    sc = SparkSession.getActiveSession().sparkContext
    count = max(2, sc.defaultParallelism)
    try:
        found = sc.parallelize(range(count), count).map(lambda _: (socket.gethostname() + ":" + str(os.getpid()),
                                                                   _remote_node_check(token_path, token))).collect()
    except Exception as exc:  # noqa: BLE001 - the job failed: every executor is unusable
        return {"executors": _first_line(exc)}
    return dict(found)


def _task_cause(exc: BaseException) -> str:
    """The last line of a remote traceback: what actually went wrong on the node."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b", line)]
    return (errors[-1] if errors else lines[-1] if lines else type(exc).__name__)[:400]


# ----------------------------------------------------------------------------------------------- ray


def _download(downloader, shard):
    """One img2dataset shard on a Ray worker; ``(status, shard)`` as img2dataset's own task returns."""
    return downloader(shard)


def ray_distributor(processes_count, downloader, reader, _subjob_size, max_shard_retry,
                    excluded: tuple[str, ...] = ()) -> None:
    """img2dataset's distributor signature (plus the nodes the preflight left out); shards go to nodes
    that have not failed them, one task each."""
    import ray

    scheduler = _RayShards(ray.remote(num_cpus=1, max_retries=0)(_download), downloader, set(excluded))
    scheduler.run(reader)


class _RayShards:
    """Shard tasks pinned to nodes: a failure costs the shard's task, the shard moves to another node."""

    def __init__(self, task, downloader, excluded: set[str]) -> None:
        self.task, self.downloader, self.excluded = task, downloader, excluded
        self.strikes: Counter = Counter()
        self.failed_on: dict[int, set[str]] = {}
        self.tries: Counter = Counter()
        self.last_cause = ""

    def nodes(self) -> dict[str, int]:
        """Usable nodes and how many shards each runs at once (its CPUs)."""
        import ray

        return {n["NodeID"]: max(1, int(n["Resources"].get("CPU", 1))) for n in ray.nodes()
                if n["Alive"] and n["NodeID"] not in self.excluded and self.strikes[n["NodeID"]] < NODE_STRIKES}

    def run(self, reader) -> None:
        import ray

        queue: deque = deque()
        shards = iter(reader)
        running: dict = {}
        while True:
            slots = sum(self.nodes().values())
            queue.extend(_take(shards, max(0, slots - len(running) - len(queue))))
            self._submit(queue, running)
            if not running:
                if queue:
                    _say(f"no Ray node left to run shards; last failure: {self.last_cause}")
                    raise RuntimeError(f"no Ray node left: {self.last_cause}")
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                shard, node = running.pop(ref)
                self._finish(ref, shard, node, queue)

    def _submit(self, queue: deque, running: dict) -> None:
        """Start queued shards on free nodes, each on a node that has not failed it (if any is left)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        busy = Counter(node for _, node in running.values())
        nodes = self.nodes()
        waiting: deque = deque()
        while queue:
            shard = queue.popleft()
            tried = self.failed_on.setdefault(shard[0], set())
            if nodes and all(n in tried for n in nodes):
                tried.clear()  # every usable node failed it once: any of them may try again
            free = [n for n, slots in nodes.items() if busy[n] < slots and n not in tried]
            if not free:
                waiting.append(shard)
                continue
            node = min(free, key=lambda n: busy[n])
            ref = self.task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)) \
                .remote(self.downloader, shard)
            running[ref] = (shard, node)
            busy[node] += 1
        queue.extend(waiting)

    def _finish(self, ref, shard, node: str, queue: deque) -> None:
        import ray

        try:
            status, _ = ray.get(ref)
            if status:
                return
            cause = "img2dataset reported the shard failed (its traceback is in the worker's log)"
        except Exception as exc:  # noqa: BLE001 - a dead node, a dead worker, an import error on the node
            cause = _task_cause(exc)
        self.last_cause = cause
        self.strikes[node] += 1
        self.failed_on.setdefault(shard[0], set()).add(node)
        self.tries[shard[0]] += 1
        _say(f"shard {shard[0]} failed on node {node[:12]}: {cause}")
        if self.strikes[node] == NODE_STRIKES:
            _say(f"node {node[:12]} failed {NODE_STRIKES} shards; it gets no more")
        if self.tries[shard[0]] < SHARD_TRIES:
            queue.append(shard)
        else:
            _say(f"shard {shard[0]} failed {SHARD_TRIES} times; left for the next run of the window: {cause}")


def _take(iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _say(message: str) -> None:
    print(CAUSE_PREFIX + message, flush=True)


# ----------------------------------------------------------------------------------------------- causes


def engine_cause(log: Path) -> str | None:
    """What went wrong, from a window's engine log: the last cluster cause line, else the last exception."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, io.SEEK_END)
            handle.seek(max(0, handle.tell() - 200_000))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    causes = [line[len(CAUSE_PREFIX):] for line in lines if line.startswith(CAUSE_PREFIX)]
    if causes:
        return causes[-1].strip()[:400]
    errors = [line.strip() for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b:?", line.strip())]
    return errors[-1][:400] if errors else None


def install(engine_module, config: ClusterConfig) -> None:
    """Put vlprep's Ray distributor into img2dataset's ``main`` module (its own fails a window on one task)."""
    if config.distributor == "ray":
        engine_module.ray_distributor = functools.partial(ray_distributor, excluded=config.exclude_nodes)


def write_cause(message: str) -> None:
    """A cause line the parent finds in the engine log (:func:`engine_cause`)."""
    _say(message)
    sys.stdout.flush()
