"""Every ``raw/<dataset>/`` holds ``SHA256SUMS`` (``sha256sum -c`` passes in it) and ``SOURCE.json``
(where each file came from, whether it was verified), written by the one fetch loop whatever the
origin: a mirror folder or URL, the hub, published URLs, or a file the user passed (CC3M's --tsv).
No credential of a mirror URL reaches any file under raw/."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

from vlprep.pipeline.datasets import cc3m, owt, registry
from vlprep.pipeline.engines.fetch import fetch_local
from vlprep.pipeline.layout import Layout
from vlprep.pipeline.samples.serve import serve_directory
from vlprep.pipeline.sources.checksums import CHECKS, SUMS_NAME, parse_sha256sums
from vlprep.pipeline.sources.provenance import ORIGIN_KEYS, SOURCE_NAME

from ..helpers import HubHandler, run_cli

USER, PASSWORD, TOKEN = "user", "secret", "tokSecretQ"


def _sources(raw: Path) -> dict[str, dict]:
    return json.loads((raw / SOURCE_NAME).read_text(encoding="utf-8"))


def _check_raw_folder(raw: Path) -> dict[str, dict]:
    """``sha256sum -c`` passes in ``raw``; SOURCE.json has one well-formed entry per file summed."""
    checked = subprocess.run(["sha256sum", "--strict", "-c", SUMS_NAME], cwd=raw, capture_output=True, text=True)
    assert checked.returncode == 0, (raw, checked.stdout, checked.stderr)
    sums = parse_sha256sums((raw / SUMS_NAME).read_text(), str(raw / SUMS_NAME))
    sources = _sources(raw)
    assert sorted(sources) == sorted(sums) and sums, raw
    for relpath, entry in sources.items():
        assert entry["kind"] in ORIGIN_KEYS and all(entry.get(k) for k in ORIGIN_KEYS[entry["kind"]]), entry
        assert entry["sha256"] == sums[relpath] and entry["size"] == (raw / relpath).stat().st_size
        assert entry["checked"] in CHECKS and entry["verified"] is (entry["checked"] == "published")
    return sources


LOCAL_IN_DEMO = ("cc3m", "cc12m", "weblist")


def test_every_raw_folder_holds_sums_that_check_and_a_source_per_file(demo_data):
    for name in (recipe.name for recipe in registry.with_stage("fetch")):  # the prompts are shipped, not fetched
        raw = demo_data / "raw" / name
        assert (raw / SUMS_NAME).is_file() and (raw / SOURCE_NAME).is_file(), raw
        sources = _check_raw_folder(raw)
        # the demo passes its web lists as the user's own files (--tsv, --list); everything else comes from a mirror
        assert {e["kind"] for e in sources.values()} == ({"local"} if name in LOCAL_IN_DEMO else {"mirror"}), name
    tsv = _sources(demo_data / "raw" / "cc3m")["Train_GCC-training.tsv"]
    assert tsv["path"] == str(demo_data / "demo-mirror" / "cc3m" / "Train_GCC-training.tsv")  # the user's copy
    assert tsv["checked"] == "recorded"
    coco = _sources(demo_data / "raw" / "coco")["zips/val2014.zip"]
    assert coco["official_url"] == "http://images.cocodataset.org/zips/val2014.zip"
    assert coco["url"].endswith("/coco/zips/val2014.zip") and coco["checked"] == "mirror-sums"


def test_credentials_of_a_mirror_url_reach_no_file_under_raw(tmp_path, owt_mirror, base):
    root, _ = base
    data = tmp_path / "data"
    (root / "cc3m").mkdir(exist_ok=True)
    (root / "cc3m" / "Train_GCC-training.tsv").write_text("a cat\thttp://example.org/cat.jpg\n")
    with serve_directory(owt_mirror) as owt_url, serve_directory(root) as url:
        def secret(base_url: str) -> str:
            return base_url.replace("http://", f"http://{USER}:{PASSWORD}@") + f"?token={TOKEN}"

        run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", secret(owt_url + "/"), "--subsets", "0,5")
        run_cli("fetch", "vg", "--data-dir", str(data), "--mirror", secret(f"{url}/vg/"))
        cc3m.fetch_tsv(Layout(data), None, secret(f"{url}/cc3m/"))
    for name in ("owt", "vg", "cc3m"):
        sources = _check_raw_folder(data / "raw" / name)
        assert all(e["kind"] == "mirror" and e["mirror"].startswith("http://REDACTED@127.0.0.1:")
                   and "token=REDACTED" in e["url"] for e in sources.values()), sources
    assert _sources(data / "raw" / "cc3m")["Train_GCC-training.tsv"]["official_url"] == cc3m.TSV_URL
    for path in (p for p in (data / "raw").rglob("*") if p.is_file()):
        assert PASSWORD.encode() not in path.read_bytes() and TOKEN.encode() not in path.read_bytes(), path


def test_a_list_the_user_has_is_brought_into_raw_and_recorded_as_local(tmp_path):
    given = tmp_path / "mine" / "list.tsv"
    given.parent.mkdir()
    given.write_text("a cat\thttp://example.org/cat.jpg\n")
    raw = tmp_path / "raw" / "cc3m"
    first = fetch_local(raw, {"Train_GCC-training.tsv": given})
    assert first.fetched == ["Train_GCC-training.tsv"] and first.checked == {"Train_GCC-training.tsv": "recorded"}
    assert (raw / "Train_GCC-training.tsv").read_bytes() == given.read_bytes()
    entry = _check_raw_folder(raw)["Train_GCC-training.tsv"]
    assert entry["kind"] == "local" and entry["path"] == str(given.resolve())
    assert fetch_local(raw, {"Train_GCC-training.tsv": given}).skipped == ["Train_GCC-training.tsv"]
    replaced = tmp_path / "mine" / "new.tsv"
    replaced.write_text("a dog\thttp://example.org/dog.jpg\n")
    os.replace(replaced, given)  # another file under the same name: fetched again, never kept stale
    assert fetch_local(raw, {"Train_GCC-training.tsv": given}).fetched == ["Train_GCC-training.tsv"]
    assert (raw / "Train_GCC-training.tsv").read_text().startswith("a dog")
    _check_raw_folder(raw)


def test_an_owt_source_record_of_the_older_form_still_reads_and_is_carried_over(fetched, owt_mirror):
    raw = fetched / "raw" / "owt"
    older = {rel: {"hub_repo": "Skylion007/openwebtext", "revision": "main", "commit": "c" * 40,
                   "sha256": entry["sha256"]} for rel, entry in _sources(raw).items()}
    (raw / SOURCE_NAME).write_text(json.dumps(older))
    origin = {"hub_repo": "Skylion007/openwebtext", "revision": "main", "commit": "c" * 40}
    assert owt.subset_origin(raw, "subsets/urlsf_subset00.tar") == origin
    again = run_cli("fetch", "owt", "--data-dir", str(fetched), "--mirror", str(owt_mirror))
    assert "0 fetched, 6 already on disk" in again.stdout  # the bytes still came from where the record says
    upgraded = _check_raw_folder(raw)
    assert all(e["kind"] == "hub" and e["commit"] == "c" * 40 for e in upgraded.values())
    assert owt.subset_origin(raw, "subsets/urlsf_subset00.tar") == origin


class _Hub(HubHandler):
    files: dict[str, bytes] = {}
    commit = "b0" * 20


def test_a_hub_fetch_records_repo_revision_commit_and_the_file_url(tmp_path, owt_mirror):
    relpath = "subsets/urlsf_subset00.tar"
    _Hub.files = {relpath: (owt_mirror / relpath).read_bytes()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    try:
        run_cli("fetch", "owt", "--data-dir", str(tmp_path), "--subsets", "0", "--revision", "main",
                env={"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1"})
    finally:
        server.shutdown()
    entry = _check_raw_folder(tmp_path / "raw" / "owt")[relpath]
    assert (entry["kind"], entry["hub_repo"], entry["revision"], entry["commit"], entry["checked"]) == \
        ("hub", "Skylion007/openwebtext", "main", _Hub.commit, "hub-lfs")
    assert entry["url"].endswith(f"/datasets/Skylion007/openwebtext/resolve/{_Hub.commit}/{relpath}")
    assert PASSWORD not in (tmp_path / "raw" / "owt" / SOURCE_NAME).read_text()
