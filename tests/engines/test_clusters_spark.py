"""The crawl on a real Spark standalone master + worker on 127.0.0.1 (when Java is installed), executors on
a Python without vlprep: the shards are byte-identical to the multiprocessing run's, and the master's own
record lists the applications. A module of its own, so the Ray cluster of ``test_clusters`` is stopped
before this one starts (two cores do not run both well)."""
from __future__ import annotations

import shutil

import pytest

from .clusters_fixtures import spark_cluster
from .test_clusters import crawl, reference, small_shards, tsv, web  # noqa: F401 - shared fixtures

@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: no Spark standalone cluster can be started")
    with spark_cluster() as cluster:
        yield cluster


def test_spark_standalone_gives_the_multiprocessing_bytes(spark, tsv, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", str(spark.python))  # executors run a Python without vlprep
    assert crawl(tmp_path / "data", tsv, distributor="pyspark", spark_master=spark.master) == reference
    finished = [app for app in spark.applications() if app["name"].startswith("vlprep window")]
    assert finished and all(app["state"] == "FINISHED" for app in finished)
