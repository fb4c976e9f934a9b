"""OpenWebText through the command line, as a user runs it: real subprocesses, real files."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlprep.pipeline.samples.text import build_owt_mirror
from vlprep.pipeline.sinks.fairseq import read_index

from ..helpers import one_line_error, run_cli

OUT_FILES = ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx")


def outputs(data: Path) -> dict[str, bytes]:
    return {name: (data / "out" / "owt" / name).read_bytes() for name in OUT_FILES}


@pytest.mark.parametrize("command", ["fetch", "binarize", "shard", "verify", "stats", "demo"])
def test_every_command_has_help_with_an_example(command):
    result = run_cli(command, "--help")
    assert "Example" in result.stdout


def test_version():
    assert run_cli("--version").stdout.startswith("vlprep, version ")


def test_fetch_over_http_mirror_then_skip(tmp_path, owt_mirror_url):
    data = tmp_path / "data"
    first = run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", owt_mirror_url)
    assert "6 fetched" in first.stdout
    second = run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", owt_mirror_url)
    assert "0 fetched, 6 already on disk" in second.stdout
    sums = (data / "raw" / "owt" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 6 and sums[0].endswith("  subsets/urlsf_subset00.tar")


def test_output_is_identical_for_every_worker_count(tmp_path, fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--workers", "1")
    one = outputs(fetched)
    stats_one = json.loads((fetched / "out" / "owt" / "stats.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "raw").symlink_to(fetched / "raw")
    run_cli("binarize", "owt", "--data-dir", str(other), "--workers", "3", "--tokenizer", "tiktoken")
    assert outputs(other) == one  # other worker count and the reference tokenizer: same bytes
    stats = json.loads((other / "out" / "owt" / "stats.json").read_text())
    assert stats["splits"] == stats_one["splits"]
    assert (stats_one["tokenizer"], stats["tokenizer"]) == ("gigatoken", "tiktoken")
    train = stats["splits"]["train"]
    assert train["documents"] == 5 * 3 * 20
    assert train["items"] == train["lines"] and train["ids"] == train["bpe_tokens"] + train["lines"]
    assert train["nul_removed"] > 0 and train["empty_lines_dropped"] > 0
    assert read_index(fetched / "out" / "owt" / "train.idx").sizes.size == train["items"]
    run_cli("verify", "owt", "--data-dir", str(fetched))


def test_doc_separator_puts_one_item_between_kept_documents(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--doc-separator", "--workers", "2")
    stats = json.loads((fetched / "out" / "owt" / "stats.json").read_text())
    for split in ("train", "valid"):
        counts = stats["splits"][split]
        assert counts["separators"] == counts["documents_kept"] - 1
        assert counts["items"] == counts["lines"] + counts["separators"]
        sizes = np.array(read_index(fetched / "out" / "owt" / f"{split}.idx").sizes)
        assert (sizes == 1).sum() == counts["separators"]
        assert sizes[0] != 1 and sizes[-1] != 1
    run_cli("verify", "owt", "--data-dir", str(fetched))


def test_tokenizer_check_reencodes_random_lines_with_the_reference(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--doc-separator", "--limit", "30")
    result = run_cli("verify", "owt", "--data-dir", str(fetched), "--tokenizer-check", "300", "--seed", "3")
    assert "tokenizer check: ok (300 random items" in result.stdout


def test_tokenizer_check_catches_a_wrong_id_that_structure_checks_miss(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    out = fetched / "out" / "owt"
    index = read_index(out / "valid.idx")
    tokens = np.fromfile(out / "valid.bin", dtype=index.dtype)
    victim = int(index.sizes[:3].sum()) + 1  # inside item 3, not its </s>
    tokens[victim] = 1000 if tokens[victim] != 1000 else 1001
    tokens.tofile(out / "valid.bin")
    stats = json.loads((out / "stats.json").read_text())  # as if the binarizer itself had written it
    stats["files"]["valid.bin"]["sha256"] = hashlib.sha256((out / "valid.bin").read_bytes()).hexdigest()
    (out / "stats.json").write_text(json.dumps(stats))
    run_cli("verify", "owt", "--data-dir", str(fetched))  # structurally sound
    failed = run_cli("verify", "owt", "--data-dir", str(fetched), "--tokenizer-check", "20000", check=False)
    assert failed.returncode == 1
    assert "valid.bin item 3 " in failed.stderr and "differ from the tiktoken encoding" in failed.stderr


def test_limit_takes_the_first_documents_of_each_subset(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "25")
    stats = json.loads((fetched / "out" / "owt" / "stats.json").read_text())
    assert all(s["documents"] == 25 for s in stats["subsets"].values())
    assert stats["splits"]["valid"]["documents"] == 25


def test_a_limit_trial_does_not_replace_a_fuller_build_without_force(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    stats_path = fetched / "out" / "owt" / "stats.json"
    before, stats = outputs(fetched), stats_path.read_bytes()
    refused = run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "3", check=False)
    one_line_error(refused, f"{fetched / 'out' / 'owt'}: the published output was built with no --limit "
                   "(360 documents)", "vlprep binarize owt --limit 3", "--force", "another --data-dir")
    assert outputs(fetched) == before and stats_path.read_bytes() == stats

    run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "5", "--force")
    assert json.loads(stats_path.read_text())["splits"]["valid"]["documents"] == 5
    smaller = run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "4", check=False)
    one_line_error(smaller, "built with --limit 5 (30 documents)", "vlprep binarize owt --limit 4")
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "5")  # the same trial again: allowed
    run_cli("binarize", "owt", "--data-dir", str(fetched))  # a full build over a trial: allowed
    assert outputs(fetched) == before
    help_text = " ".join(run_cli("binarize", "owt", "--help").stdout.split())
    assert "it replaces out/owt, but never one built with no limit or a larger one unless --force" in help_text


def test_a_changed_subset_hint_runs_binarize_again_with_the_data_dir(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--limit", "5")
    tar = fetched / "raw" / "owt" / "subsets" / "urlsf_subset03.tar"
    tar.write_bytes(tar.read_bytes() + bytes(512))
    stale = run_cli("verify", "owt", "--data-dir", str(fetched), check=False)
    one_line_error(stale, "urlsf_subset03.tar changed", f"fix: run again: vlprep binarize owt --data-dir {fetched}")


def test_rerun_skips_finished_work(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    stamp = {p: p.stat().st_mtime_ns for p in (fetched / "out" / "owt").iterdir()}
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    assert {p: p.stat().st_mtime_ns for p in (fetched / "out" / "owt").iterdir()} == stamp


@pytest.mark.slow
def test_kill_9_then_resume_ends_byte_identical(tmp_path):
    mirror = tmp_path / "mirror"
    build_owt_mirror(mirror, (0, 5), chunks=12, docs_per_chunk=150, seed=11)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for data in (reference, killed):
        run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(mirror), "--subsets", "0,5")
    run_cli("binarize", "owt", "--data-dir", str(reference), "--train-subsets", "0", "--workers", "2")

    args = [sys.executable, "-m", "vlprep.cli", "binarize", "owt", "--data-dir", str(killed),
            "--train-subsets", "0", "--workers", "2"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    done: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        done = list((killed / "work" / "owt").glob("chunks-*/*/*.json"))
        if len(done) >= 4:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make the sample larger"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "out" / "owt" / "train.bin").exists()
    survivors = {p: p.stat().st_mtime_ns for p in (killed / "work" / "owt").glob("chunks-*/*/*.json")}
    assert len(survivors) >= 4

    run_cli("binarize", "owt", "--data-dir", str(killed), "--train-subsets", "0", "--workers", "2")
    assert outputs(killed) == outputs(reference)
    for path, mtime in survivors.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone after the resume"
    run_cli("verify", "owt", "--data-dir", str(killed))


# ------------------------------------------------------------------------------------- bad input

def test_verify_catches_a_corrupted_binary(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    train_bin = fetched / "out" / "owt" / "train.bin"
    data = bytearray(train_bin.read_bytes())
    data[-2:] = (60000).to_bytes(2, "little")  # last id: outside the dictionary, and not </s>
    train_bin.write_bytes(bytes(data))
    result = run_cli("verify", "owt", "--data-dir", str(fetched), check=False)
    assert result.returncode != 0
    assert "train" in result.stderr and "</s>" in result.stderr


def test_verify_catches_a_truncated_index(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    idx = fetched / "out" / "owt" / "valid.idx"
    idx.write_bytes(idx.read_bytes()[:-8])
    result = run_cli("verify", "owt", "--data-dir", str(fetched), check=False)
    assert result.returncode != 0 and "valid.idx" in result.stderr


def test_corrupt_xz_member_names_the_file_and_keeps_earlier_outputs(fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched))
    before = outputs(fetched)
    tar = fetched / "raw" / "owt" / "subsets" / "urlsf_subset02.tar"
    data = bytearray(tar.read_bytes())
    data[2000:2100] = b"\x00" * 100  # inside the first xz member's compressed stream
    tar.write_bytes(bytes(data))
    result = run_cli("binarize", "owt", "--data-dir", str(fetched), "--doc-separator", check=False)
    assert result.returncode != 0
    assert "urlsf_subset02.tar" in result.stderr and "Traceback" not in result.stderr
    assert outputs(fetched) == before


def test_corrupt_xz_member_is_caught_even_when_sizes_match(tmp_path, owt_mirror):
    """A corrupted raw file whose verification record was forged still fails loudly in the decoder."""
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(owt_mirror), "--subsets", "0,5")
    tar = data / "raw" / "owt" / "subsets" / "urlsf_subset00.tar"
    stat = tar.stat()
    blob = bytearray(tar.read_bytes())
    blob[1600:1700] = bytes(100)
    tar.write_bytes(bytes(blob))
    os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = run_cli("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0", check=False)
    assert result.returncode != 0 and "urlsf_subset00.tar" in result.stderr
    assert "fetch" in result.stderr


def test_checksum_mismatch_in_mirror_is_refused(tmp_path, owt_mirror):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "subsets").mkdir()
    (mirror / "subsets" / "urlsf_subset00.tar").write_bytes(
        (owt_mirror / "subsets" / "urlsf_subset00.tar").read_bytes())
    (mirror / "SHA256SUMS").write_text(f"{'ab' * 32}  subsets/urlsf_subset00.tar\n")
    result = run_cli("fetch", "owt", "--data-dir", str(tmp_path / "d"), "--mirror", str(mirror),
                     "--subsets", "0", check=False)
    assert result.returncode != 0 and "does not match" in result.stderr
    assert not (tmp_path / "d" / "raw" / "owt" / "subsets" / "urlsf_subset00.tar").exists()


def test_malformed_dictionary_names_file_and_line(fetched, tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("13 10\n262 10\n11 x\n")
    result = run_cli("binarize", "owt", "--data-dir", str(fetched), "--dict", str(bad), check=False)
    assert result.returncode != 0
    assert str(bad) in result.stderr and "line 3" in result.stderr


def test_own_dictionary_gives_its_own_indices(fetched, tmp_path):
    reordered = tmp_path / "dict.txt"
    shipped = (Path(__file__).parents[2] / "pipeline" / "transforms" / "data" / "gpt2-dict.txt").read_text()
    lines = shipped.splitlines()
    reordered.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--dict", str(reordered))
    assert (fetched / "out" / "owt" / "dict.txt").read_text() == reordered.read_text()
    run_cli("verify", "owt", "--data-dir", str(fetched))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_dir(tmp_path, fetched):  # pragma: no cover - CI runs as root
    (fetched / "out").mkdir(exist_ok=True)
    os.chmod(fetched / "out", 0o500)
    result = run_cli("binarize", "owt", "--data-dir", str(fetched), check=False)
    assert result.returncode != 0 and "writable" in result.stderr


def test_data_dir_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("fetch", "owt", "--data-dir", str(blocker / "data"), "--mirror", str(tmp_path), check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_binarize_before_fetch_says_what_to_run(tmp_path):
    result = run_cli("binarize", "owt", "--data-dir", str(tmp_path / "empty"), check=False)
    assert result.returncode != 0 and "vlprep fetch owt" in result.stderr


def test_demo_runs_offline_and_lists_outputs(tmp_path):
    result = run_cli("demo", "--data-dir", str(tmp_path / "demo"))
    assert "train.bin" in result.stdout and "stats.json" in result.stdout
    run_cli("verify", "owt", "--data-dir", str(tmp_path / "demo"))


def test_fetch_from_hub_records_the_resolved_commit(tmp_path, owt_mirror):
    import http.server
    import threading

    from ..helpers import HubHandler

    HubHandler.files = {f"subsets/urlsf_subset{s:02d}.tar": (owt_mirror / "subsets" / f"urlsf_subset{s:02d}.tar").read_bytes()
                        for s in (0, 5)}
    HubHandler.gated, HubHandler.commit = False, "c0ffee" * 6 + "abcd"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HUB_DISABLE_XET": "1"}
    try:
        data = tmp_path / "data"
        result = run_cli("fetch", "owt", "--data-dir", str(data), "--subsets", "0,5", "--revision", "main", env=env)
        assert HubHandler.commit in result.stdout
        missing = run_cli("fetch", "owt", "--data-dir", str(data), "--subsets", "7", env=env, check=False)
        assert missing.returncode != 0 and "urlsf_subset07.tar" in missing.stderr
    finally:
        server.shutdown()
    run_cli("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0")
    stats = json.loads((data / "out" / "owt" / "stats.json").read_text())
    assert stats["subsets"]["00"]["source"] == {"hub_repo": "Skylion007/openwebtext", "revision": "main",
                                                "commit": HubHandler.commit}
