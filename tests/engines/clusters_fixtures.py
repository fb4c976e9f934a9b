"""Real clusters on 127.0.0.1 for the cluster tests: a two-node Ray cluster and a Spark standalone master
+ worker, each with its own ports and temp dir, so tests of other checkouts on the same machine never
meet them, and each stopped by the pid of what it started (never by a name pattern).

The second Ray node (and the Spark executors) run a Python that lacks vlprep: a bare venv whose only
path to packages is a ``.pth`` line naming the main venv's site-packages. ``.pth`` files inside a
directory added that way are not processed, so vlprep's editable finder is never loaded there while
ray, pyspark and img2dataset import; whatever vlprep code runs there was shipped by vlprep itself.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

VENV_BIN = Path(sys.executable).parent
SITE_PACKAGES = sysconfig.get_paths()["purelib"]


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_python(root: Path, broken: tuple[str, ...] = ()) -> Path:
    """A Python without vlprep that imports the main venv's packages; ``broken`` modules fail to import."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    lines = []
    if broken:
        shadow = root / "shadow"
        for name in broken:
            (shadow / name).mkdir(parents=True, exist_ok=True)  # a test may make the same node again
            (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is broken on this node')\n")
        lines.append(str(shadow))
    (site / "main-venv.pth").write_text("\n".join([*lines, SITE_PACKAGES]) + "\n")
    return root / "bin" / "python"


def imports(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are taken, so the kernel never
    hands out one port twice (separate ``free_port`` calls may, and Ray refuses a port given twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ray_ports(head_port: int) -> list[str]:
    """Ports for one node's Ray components: distinct, and never the head's."""
    names = ("--node-manager-port", "--object-manager-port", "--runtime-env-agent-port",
             "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--metrics-export-port")
    found = [p for p in free_ports(len(names) + 1) if p != head_port][:len(names)]
    ports = dict(zip(names, found))
    low = 20000 + (os.getpid() * 97) % 30000
    return [*(f"{k}={v}" for k, v in ports.items()), f"--min-worker-port={low}", f"--max-worker-port={low + 200}"]


@dataclass
class RayCluster:
    """A head (this venv, 1 CPU) and a second node (a Python without vlprep, 1 CPU) on 127.0.0.1."""

    root: Path
    address: str
    nodes: dict[str, Path] = field(default_factory=dict)
    """Node name -> the temp dir holding its logs (``head``, ``bare``, and any added node)."""
    env: dict = field(default_factory=dict)

    def add_node(self, name: str, python: Path, cpus: int = 1) -> None:
        temp = self.root / name
        temp.mkdir(exist_ok=True)
        _ray_start(python, self.env, ["--address", self.address, f"--temp-dir={temp}", f"--num-cpus={cpus}",
                                      *_ray_ports(int(self.address.rsplit(":", 1)[1]))])
        self.nodes[name] = temp
        wait_for(lambda: self.alive_nodes() >= len(self.nodes), f"ray node {name}", 60)

    def alive_nodes(self) -> int:
        out = subprocess.run([str(VENV_BIN / "python"), "-c",
                              "import ray, json; ray.init(address=%r, logging_level='ERROR');"
                              "print(json.dumps(sum(n['Alive'] for n in ray.nodes())))" % self.address],
                             capture_output=True, text=True, env=self.env)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def task_logs(self, name: str, marker: str) -> int:
        """How many worker log files of node ``name`` record running a task named ``marker`` (Ray's own
        ``:task_name:`` lines, written by the worker process that ran it)."""
        logs = self.nodes[name].glob("session_*/logs/worker-*.out")
        return sum(f":task_name:{marker}" in p.read_text(errors="replace") for p in logs)

    def stop(self) -> None:
        """Kill every process whose command line names this cluster's temp dir, by pid (Ray's own
        ``ray stop`` kills every Ray process of the user, including other checkouts' clusters)."""
        _kill_naming(str(self.root))


def _ray_start(python: Path, env: dict, args: list[str]) -> None:
    ray = [str(python), "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]
    done = subprocess.run([*ray, "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed: {done.stderr[-3000:]}")


def _kill_naming(text: str) -> None:
    for _ in range(3):
        pids = [int(p.name) for p in Path("/proc").glob("[0-9]*") if _names(p, text)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids:
            return
        time.sleep(0.5)


def _names(proc: Path, text: str) -> bool:
    try:
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        environ = (proc / "environ").read_bytes()
    except OSError:
        return False
    return text.encode() in command or f"VLPREP_TEST_CLUSTER={text}".encode() in environ


@contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """Head + a node whose Python lacks vlprep; always stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="c18r-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "VLPREP_TEST_CLUSTER": str(root)}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    cluster = RayCluster(root, f"127.0.0.1:{port}", env=env)
    try:
        (root / "head").mkdir()
        _ray_start(VENV_BIN / "python", env, ["--head", f"--port={port}", f"--temp-dir={root / 'head'}",
                                              "--num-cpus=1", "--include-dashboard=false",
                                              *_ray_ports(port)])
        cluster.nodes["head"] = root / "head"
        bare = bare_python(root / "venv-bare")
        assert not imports(bare, "vlprep") and imports(bare, "ray") and imports(bare, "img2dataset")
        cluster.add_node("bare", bare)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class SparkCluster:
    master: str
    ui: str
    python: Path

    def applications(self) -> list[dict]:
        """The master's own record of applications, running and completed (its JSON endpoint)."""
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=10) as answer:
            state = json.loads(answer.read())
        return state.get("activeapps", []) + state.get("completedapps", [])

    def workers(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=10) as answer:
            return json.loads(answer.read()).get("workers", [])


@contextmanager
def spark_cluster() -> Iterator[SparkCluster]:
    """A standalone master + one worker (2 cores) on 127.0.0.1, executors on a Python without vlprep."""
    import pyspark

    root = Path(tempfile.mkdtemp(prefix="c18s-", dir="/tmp"))
    port, ui, worker_ui = free_port(), free_port(), free_port()
    home = Path(pyspark.__file__).parent  # pip's pyspark is a whole Spark: jars, bin/spark-class
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(root / "logs"),
           "SPARK_WORKER_DIR": str(root / "work"), "VLPREP_TEST_CLUSTER": str(root)}
    spark_class = str(home / "bin" / "spark-class")
    processes: list[subprocess.Popen] = []
    try:
        python = bare_python(root / "venv-bare")
        with open(root / "master.log", "wb") as log:
            processes.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui)], env=env, stdout=log, stderr=log, start_new_session=True))
        master = f"spark://127.0.0.1:{port}"
        with open(root / "worker.log", "wb") as log:
            processes.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
                 "--memory", "2g", "--webui-port", str(worker_ui), "--work-dir", str(root / "work"), master],
                env=env, stdout=log, stderr=log, start_new_session=True))
        cluster = SparkCluster(master, f"http://127.0.0.1:{ui}", python)
        wait_for(lambda: _quiet(lambda: len(cluster.workers()) == 1) or _exited(processes, root),
                 "spark worker registration", 90)
        yield cluster
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        _kill_naming(str(root))
        shutil.rmtree(root, ignore_errors=True)


def _exited(processes: list[subprocess.Popen], root: Path) -> bool:
    """Raise with the daemon's log if a Spark daemon has exited (instead of waiting out the timeout)."""
    for process, name in zip(processes, ("master", "worker")):
        if process.poll() is not None:
            raise RuntimeError(f"spark {name} exited: {(root / (name + '.log')).read_text()[-3000:]}")
    return False


def _quiet(check) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


def wait_for(check, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {seconds:.0f} s")
