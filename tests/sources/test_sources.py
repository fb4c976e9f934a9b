"""Downloads against real sockets on 127.0.0.1: resume, retries, refusals, the hub API, mirrors, archives."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.samples.serve import RangeRequestHandler, serve_directory
from vlprep.pipeline.sources import hub
from vlprep.pipeline.sources.archives import iter_tar_members, list_tar, safe_member_name
from vlprep.pipeline.sources.http import RetryPolicy, download
from vlprep.pipeline.sources.mirror import Mirror

from ..helpers import HubHandler

FAST = RetryPolicy(attempts=4, backoff=0.01, timeout=(5.0, 5.0))


@pytest.fixture
def payload(tmp_path) -> Path:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "file.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return root


class FlakyHandler(RangeRequestHandler):
    """Fails the first requests in the ways real servers do; counts what it saw."""

    plan: list[str] = []
    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Range")))
        action = type(self).plan.pop(0) if type(self).plan else "ok"
        if action == "503":
            self.send_error(503)
            return
        if action == "404":
            self.send_error(404)
            return
        if action == "cut":  # send half the body, then drop the connection
            path = Path(self.translate_path(self.path))
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def flaky(payload):
    FlakyHandler.plan, FlakyHandler.seen = [], []
    with serve_directory(payload, FlakyHandler) as url:
        yield url


def test_resumes_with_range_after_a_cut_connection(flaky, payload, tmp_path):
    FlakyHandler.plan = ["cut"]
    expected = hashlib.sha256((payload / "file.bin").read_bytes()).hexdigest()
    sha = download(f"{flaky}/file.bin", tmp_path / "out.bin", expected_sha256=expected, policy=FAST)
    assert sha == expected
    assert (tmp_path / "out.bin").read_bytes() == (payload / "file.bin").read_bytes()
    resumed_at = FlakyHandler.seen[1][1]
    assert resumed_at and resumed_at.startswith("bytes=") and resumed_at != "bytes=0-", "must resume, not restart"


def test_retries_5xx_but_not_404(flaky, tmp_path):
    FlakyHandler.plan = ["503", "503"]
    download(f"{flaky}/file.bin", tmp_path / "a.bin", policy=FAST)
    assert len(FlakyHandler.seen) == 3
    FlakyHandler.plan, FlakyHandler.seen = ["404"], []
    with pytest.raises(VlprepError, match="404"):
        download(f"{flaky}/file.bin", tmp_path / "b.bin", policy=FAST)
    assert len(FlakyHandler.seen) == 1
    assert not (tmp_path / "b.bin").exists()


def test_checksum_mismatch_is_refused_and_leaves_nothing(flaky, tmp_path):
    with pytest.raises(VlprepError, match="sha256"):
        download(f"{flaky}/file.bin", tmp_path / "c.bin", expected_sha256="0" * 64, policy=FAST)
    assert list(tmp_path.glob("c.bin*")) == []


def test_resumes_a_part_file_left_by_an_earlier_run(payload, tmp_path):
    data = (payload / "file.bin").read_bytes()
    (tmp_path / "d.bin.part").write_bytes(data[:1000])
    with serve_directory(payload) as url:
        download(f"{url}/file.bin", tmp_path / "d.bin", expected_size=len(data), policy=FAST)
    assert (tmp_path / "d.bin").read_bytes() == data


def test_http_mirror_checks_sha256sums(payload, tmp_path):
    (payload / "SHA256SUMS").write_text(f"{'1' * 64}  file.bin\n")
    with serve_directory(payload) as url:
        with pytest.raises(VlprepError, match="does not match"):
            Mirror(url).fetch("file.bin", tmp_path / "e.bin")
    assert not (tmp_path / "e.bin").exists()


def test_local_mirror_and_missing_file(payload, tmp_path):
    sha = hashlib.sha256((payload / "file.bin").read_bytes()).hexdigest()
    (payload / "SHA256SUMS").write_text(f"{sha} *file.bin\n")
    assert Mirror(str(payload)).fetch("file.bin", tmp_path / "f.bin") == sha
    with pytest.raises(VlprepError, match="has no file"):
        Mirror(str(payload)).fetch("nope.bin", tmp_path / "g.bin")


# ------------------------------------------------------------------------------------------- hub

@pytest.fixture
def hub_server(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    HubHandler.files, HubHandler.gated, HubHandler.commit = {"subsets/urlsf_subset00.tar": b"x" * 5000}, False, "a" * 40
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    yield url
    server.shutdown()


def test_hub_resolves_commit_and_verifies_lfs_sha(hub_server, tmp_path):
    remote = hub.resolve("Skylion007/openwebtext", "subsets/urlsf_subset00.tar", "main")
    assert remote.commit == "a" * 40
    assert remote.sha256 == hashlib.sha256(b"x" * 5000).hexdigest()
    path, sha = hub.download(remote, tmp_path)
    assert path == tmp_path / "subsets" / "urlsf_subset00.tar" and sha == remote.sha256


def test_hub_errors_say_what_to_do(hub_server):
    with pytest.raises(VlprepError, match="does not exist"):
        hub.resolve("Skylion007/openwebtext", "subsets/urlsf_subset99.tar", "main")
    HubHandler.gated = True
    with pytest.raises(VlprepError, match="HF_TOKEN"):
        hub.resolve("Skylion007/openwebtext", "subsets/urlsf_subset00.tar", "main")


# -------------------------------------------------------------------------------------- archives

@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "a/../../b", "C:\\x.txt", "..\\x"])
def test_member_names_that_escape_are_refused(name):
    with pytest.raises(VlprepError, match="outside"):
        safe_member_name(name, "a.tar")


def test_escaping_member_in_a_real_tar_is_refused(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(VlprepError, match="outside"):
        list_tar(path)
    with open(path, "rb") as handle, pytest.raises(VlprepError, match="outside"):
        list(iter_tar_members(handle, str(path)))


def test_truncated_tar_is_reported(tmp_path):
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("a.xz")
        info.size = 100_000
        archive.addfile(info, io.BytesIO(b"z" * 100_000))
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(VlprepError, match="truncated or corrupt"):
        list_tar(path)


def test_zip_members_stream_and_escapes_are_refused(tmp_path):
    import zipfile

    from vlprep.pipeline.sources.archives import iter_zip

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("dir/a.txt", b"alpha")
        archive.writestr("b.json", b"{}")
    assert [(n, s.read()) for n, s in iter_zip(good)] == [("dir/a.txt", b"alpha"), ("b.json", b"{}")]
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../../evil.txt", b"x")
    with pytest.raises(VlprepError, match="outside"):
        list(iter_zip(bad))
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:40])
    with pytest.raises(VlprepError, match="truncated or corrupt"):
        list(iter_zip(tmp_path / "cut.zip"))


def test_gz_tar_streams(tmp_path):
    import gzip

    from zlib_ng import gzip_ng

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("x/1.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "a.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))
    with gzip_ng.open(tmp_path / "a.tar.gz", "rb") as stream:
        assert list(iter_tar_members(stream, "a.tar.gz")) == [("x/1.txt", b"hi")]


def _tar(fmt: int, entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """A tar in memory: (name, data or None for a directory, type) per entry."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "target.txt"
            if data is not None and kind == tarfile.REGTYPE:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def _tarfile_listing(raw: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        return [(i.name, archive.extractfile(i).read()) for i in archive if i.isreg()]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("long_names", [False, True])
def test_fast_tar_listing_equals_tarfile(fmt, long_names):
    from vlprep.pipeline.sources.archives import list_tar_bytes

    deep = "/".join(["folder"] * 12) if long_names else "folder"  # > 100 chars: prefix, L or pax
    entries = [(f"{deep}/", None, tarfile.DIRTYPE), (f"{deep}/a.txt", b"alpha\n" * 100, tarfile.REGTYPE),
               ("empty.txt", b"", tarfile.REGTYPE), ("link", None, tarfile.SYMTYPE),
               ("caf\u00e9 \u6f22.txt", b"x" * 513, tarfile.REGTYPE), ("last.txt", b"z", tarfile.REGTYPE)]
    raw = _tar(fmt, entries)
    fast = [(name, raw[start:start + size]) for name, start, size in list_tar_bytes(raw, "t.tar")]
    assert fast == _tarfile_listing(raw)
    assert [n for n, _ in fast][-1] == "last.txt" and len(fast) == 4


def test_fast_tar_listing_refuses_damage_tarfile_would_skip_silently():
    from vlprep.pipeline.sources.archives import list_tar_bytes

    raw = bytearray(_tar(tarfile.GNU_FORMAT, [("a.txt", b"a" * 600, tarfile.REGTYPE),
                                              ("b.txt", b"b", tarfile.REGTYPE)]))
    raw[1536 + 3] ^= 0x20  # the second header's name: its checksum no longer holds
    assert len(_tarfile_listing(bytes(raw))) == 1  # tarfile just stops: one member silently lost
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list_tar_bytes(bytes(raw), "t.tar")
    with pytest.raises(tarfile.ReadError, match="past the end"):
        list_tar_bytes(bytes(raw[:700]), "t.tar")
    with pytest.raises(VlprepError, match="outside"):
        list_tar_bytes(_tar(tarfile.GNU_FORMAT, [("../evil.txt", b"x", tarfile.REGTYPE)]), "t.tar")


class _Trickle(io.RawIOBase):
    """A forward-only stream that returns at most 700 bytes a read (as a pipe or socket may)."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 700 if size < 0 else min(size, 700)
        chunk = self._data[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("long_names", [False, True])
@pytest.mark.parametrize("trickle", [False, True])
def test_streamed_tar_members_equal_tarfile(fmt, long_names, trickle):
    from vlprep.pipeline.sources.archives import iter_tar_members

    deep = "/".join(["folder"] * 12) if long_names else "folder"  # > 100 chars: prefix, L or pax
    entries = [(f"{deep}/", None, tarfile.DIRTYPE), (f"{deep}/a.txt", b"alpha\n" * 100, tarfile.REGTYPE),
               ("empty.txt", b"", tarfile.REGTYPE), ("link", None, tarfile.SYMTYPE),
               (f"{deep}/caf\u00e9 \u6f22.txt", b"x" * 513, tarfile.REGTYPE), ("last.txt", b"z", tarfile.REGTYPE)]
    raw = _tar(fmt, entries)
    stream = _Trickle(raw) if trickle else io.BufferedReader(io.BytesIO(raw))
    assert list(iter_tar_members(stream, "t.tar")) == _tarfile_listing(raw)
    # Without its end-of-archive blocks (some writers stop after the last member), as tarfile reads it.
    cut = raw[:raw.rindex(b"z") + 512 - raw.rindex(b"z") % 512]
    assert list(iter_tar_members(io.BytesIO(cut), "t.tar")) == _tarfile_listing(raw)


def test_streamed_tar_refuses_damage_that_tarfile_passes_over():
    from vlprep.pipeline.sources.archives import iter_tar_members

    raw = _tar(tarfile.GNU_FORMAT, [("a.txt", b"a" * 600, tarfile.REGTYPE), ("b.txt", b"b", tarfile.REGTYPE)])
    damaged = bytearray(raw)
    damaged[1536 + 3] ^= 0x20  # the second header's name: its checksum no longer holds
    with pytest.raises(tarfile.ReadError, match="checksum at byte 1,536"):
        list(iter_tar_members(io.BytesIO(bytes(damaged)), "t.tar"))
    zeroed = raw[:1536] + b"\0" * 512 + raw[2048:]
    with pytest.raises(tarfile.ReadError, match="empty header at byte 1,536 but data follows"):
        list(iter_tar_members(io.BytesIO(zeroed), "t.tar"))
    with pytest.raises(tarfile.ReadError, match="ends inside member a.txt"):
        list(iter_tar_members(io.BytesIO(raw[:700]), "t.tar"))
    with pytest.raises(tarfile.ReadError, match="ends inside the header"):
        list(iter_tar_members(io.BytesIO(raw[:1536 + 100]), "t.tar"))
    with pytest.raises(VlprepError, match="outside"):
        list(iter_tar_members(io.BytesIO(_tar(tarfile.PAX_FORMAT, [("../" + "x" * 120, b"x", tarfile.REGTYPE)])),
                              "t.tar"))
    sparse = bytearray(raw[:512])
    sparse[156] = ord("S")
    sparse[148:156] = b"%06o\0 " % (sum(sparse[:148]) + 256 + sum(sparse[156:]))
    with pytest.raises(tarfile.ReadError, match="sparse"):
        list(iter_tar_members(io.BytesIO(bytes(sparse) + raw[512:]), "t.tar"))


def test_streamed_tar_reads_a_pax_size_and_path():
    """pax records override the header's name and size (sizes over 8 GiB only fit there)."""
    from vlprep.pipeline.sources.archives import iter_tar_members

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("short.bin")
        info.size = 5
        info.pax_headers = {"path": "d\u00e9j\u00e0/long.bin", "size": "5", "comment": "x = y"}
        archive.addfile(info, io.BytesIO(b"hello"))
    raw = bytearray(buffer.getvalue())
    header = raw.index(b"short.bin")  # the member's own header: its size field says 0, its pax record 5
    raw[header + 124:header + 136] = b"%011o\0" % 0
    raw[header + 148:header + 156] = b" " * 8
    raw[header + 148:header + 156] = b"%06o\0 " % sum(raw[header:header + 512])
    assert _tarfile_listing(bytes(raw)) == [("d\u00e9j\u00e0/long.bin", b"hello")]
    assert list(iter_tar_members(io.BytesIO(bytes(raw)), "t.tar")) == [("d\u00e9j\u00e0/long.bin", b"hello")]
