"""A crawl's manners and plan through the command line: the User-Agent every host sees, robots.txt when
asked, everything recorded in stats.json, and the window plan's result equal to any other plan's."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vlprep.pipeline import __version__
from vlprep.pipeline.samples.web import KINDS_OK, SampleWeb, serve_web, write_tsv

from ..helpers import run_cli

ROBOTS = b"User-agent: vlprep\nDisallow: /png/\n"


@dataclass
class PoliteWeb(SampleWeb):
    """The sample web with a robots.txt that disallows vlprep its PNGs, noting each request's User-Agent."""

    agents: set[str] = field(default_factory=set)

    def answer(self, handler) -> None:
        with self._lock:
            self.agents.add(handler.headers.get("User-Agent", ""))
        if handler.path == "/robots.txt":
            from vlprep.pipeline.samples.web import send

            with self._lock:
                self.requests.append(handler.path)
            return send(handler, 200, ROBOTS, "text/plain")
        return super().answer(handler)


@pytest.fixture(scope="module")
def web():
    with serve_web(trickle_seconds=5, web_class=PoliteWeb) as served:
        yield served


KINDS = ["good", "png", "webp", "404", "png", "good", "redirect", "png", "good", "webp"] * 3
FAST = ("--timeout", "3", "--retries", "1", "--workers", "2", "--threads", "8")


def fetch(data: Path, tsv: Path, *args: str):
    return run_cli("fetch", "cc3m", "--data-dir", str(data), "--tsv", str(tsv), *FAST, *args)


def shard_bytes(data: Path) -> dict[str, bytes]:
    out = data / "out" / "cc3m"
    return {p.name: p.read_bytes() for p in sorted(out.glob("cc3m-train-*.tar"))}


def test_robots_txt_contact_and_plan_through_the_cli(tmp_path, web):
    tsv = tmp_path / "Train_GCC-training.tsv"
    write_tsv(tsv, web, KINDS)
    data = tmp_path / "polite"
    fetch(data, tsv, "--limit", "12", "--robots-txt", "--contact", "mailto:crawl@example.org", "--per-host", "3")
    assert web.agents == {f"vlprep/{__version__} (+mailto:crawl@example.org)"}
    assert not any(p.startswith("/png/") for p in web.requests)
    split = json.loads((data / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]
    manners = split["config"]["politeness"]
    assert manners == {"contact": "mailto:crawl@example.org", "per_host": 3, "retry_after_max": 60.0,
                       "robots_txt": True, "user_agent": f"vlprep/{__version__} (+mailto:crawl@example.org)"}
    reachable = [r for r, kind in enumerate(KINDS) if kind in KINDS_OK and kind != "png"]
    assert split["last_row_kept"] == reachable[11]
    assert split["failures"]["robots_txt"] == KINDS[:split["rows_tried"]].count("png")

    # The same rows without robots.txt keep the PNGs: robots.txt is part of what decides the rows.
    plain = tmp_path / "plain"
    fetch(plain, tsv, "--limit", "12")
    split = json.loads((plain / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]
    assert "robots_txt" not in split["failures"] and split["config"]["politeness"]["robots_txt"] is False
    assert len(split["windows"]) == 1  # 12 / 0.7 rows: the probe is the whole plan

    # Windows of four rows at most: another plan, the same bytes.
    small = tmp_path / "small-windows"
    fetch(small, tsv, "--limit", "12", "--max-window", "4")
    windows = json.loads((small / "out" / "cc3m" / "stats.json").read_text())["splits"]["train"]["windows"]
    assert len(windows) >= 4 and max(w["stop"] - w["start"] for w in windows) == 4
    assert shard_bytes(small) == shard_bytes(plain)


def test_a_contact_with_a_line_break_is_refused_before_any_request(tmp_path, web):
    tsv = tmp_path / "Train_GCC-training.tsv"
    write_tsv(tsv, web, KINDS[:4])
    before = len(web.requests)
    result = run_cli("fetch", "cc3m", "--data-dir", str(tmp_path / "d"), "--tsv", str(tsv),
                     "--contact", "https://x.org/?token=abc", check=False)
    assert result.returncode != 0 and "--contact" in result.stderr and "query" in result.stderr
    assert len(web.requests) == before


def test_a_list_read_with_the_wrong_columns_is_refused_before_any_window(tmp_path):
    csv_list = tmp_path / "pairs.csv"
    csv_list.write_text("url,caption\n" + "".join(f"http://127.0.0.1:9/{n}.jpg,caption {n}\n" for n in range(30)))
    data = tmp_path / "d"
    result = run_cli("fetch", "weblist", "--data-dir", str(data), "--list", str(csv_list), "--format", "jsonl",
                     "--split", "mine", "--limit", "5", check=False)
    assert result.returncode == 1 and "none of its first 31 rows has an http(s) URL" in result.stderr
    assert "--url-col" in result.stderr and not list(data.glob("work/weblist/*/windows"))
