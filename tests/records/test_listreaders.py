"""The caption/URL list readers on real-format files, hostile ones included: every format gives the
same rows for the same list, a malformed row keeps its index, and a wrong column or a huge line is
one error naming the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.records.listreaders import Columns, CsvList, DelimitedList, JsonlList, ParquetList, reader_for
from vlprep.pipeline.records.sbu import write_rows
from vlprep.pipeline.records.urllist import TsvList
from vlprep.pipeline.samples.lists import list_rows, write_list, write_sbu_archive, write_url_first_tsv
from vlprep.pipeline.samples.web import SampleWeb

FORMATS = ("tsv", "csv", "parquet", "jsonl")
KINDS = ["good", "404", "invalid", "empty-caption", "png", "good"] * 4


def rows_of(reader, path: Path) -> list[tuple[int, str, str]]:
    return [(r.row, r.url, r.caption) for r in reader.iter_rows(path)]


@pytest.fixture
def rows():
    return list_rows(SampleWeb("http://127.0.0.1:9"), KINDS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_rows_windows_and_selections(tmp_path, rows, fmt):
    path = write_list(tmp_path / f"list.{fmt}", fmt, rows)
    reader = reader_for(fmt, Columns())
    expected = [(n, url, caption) for n, (url, caption) in enumerate(rows)]
    assert rows_of(reader, path) == expected
    assert reader.count_rows(path) == len(rows)
    assert [r.row for r in reader.iter_rows(path, 5, 11)] == list(range(5, 11))
    assert [(r.row, r.caption) for r in reader.select_rows(path, [22, 3, 9, 3])] == \
        [(n, rows[n][1]) for n in (3, 9, 22)]
    assert list(reader.select_rows(path, [])) == []


def test_a_headerless_tsv_by_position_reads_as_the_cc12m_reader_does(tmp_path, rows):
    path = write_url_first_tsv(tmp_path / "cc12m.tsv", rows)
    with open(path, "ab") as handle:
        handle.write(b"http://h/x.jpg\tcaption\twith a tab\n")
    generic = DelimitedList(Columns(url="0", caption="1"), header=False)
    assert rows_of(generic, path) == rows_of(TsvList(url_first=True), path)
    assert list(generic.iter_rows(path))[-1].caption == "caption\twith a tab"


def test_csv_rows_are_records_not_lines(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text('url,caption\nhttp://h/0.jpg,"one\ntwo\nthree"\nhttp://h/1.jpg,"a ""quoted"", word"\n'
                    'http://h/2.jpg;semi,x\n', encoding="utf-8")
    found = rows_of(CsvList(Columns()), path)
    assert found == [(0, "http://h/0.jpg", "one\ntwo\nthree"), (1, "http://h/1.jpg", 'a "quoted", word'),
                     (2, "http://h/2.jpg;semi", "x")]
    semi = tmp_path / "s.csv"
    semi.write_text("caption;url\nhi;http://h/0.jpg\n", encoding="utf-8")
    assert rows_of(CsvList(Columns(), delimiter=";"), semi) == [(0, "http://h/0.jpg", "hi")]


def test_malformed_rows_keep_their_index(tmp_path):
    jsonl = tmp_path / "l.jsonl"
    jsonl.write_bytes(b'{"url": "http://h/0.jpg", "caption": "zero"}\nnot json\n[1, 2]\n{"url": null, "caption": 5}\n'
                      b'\n{"url": "http://h/5.jpg", "caption": "five \xff\x00 bad"}')
    found = rows_of(JsonlList(Columns()), jsonl)
    assert [r[0] for r in found] == [0, 1, 2, 3, 4, 5] and JsonlList(Columns()).count_rows(jsonl) == 6
    assert found[1][1:] == ("", "") and found[3] == (3, "", "5") and found[5][2] == "five \ufffd\x00 bad"
    tsv = tmp_path / "l.tsv"
    tsv.write_bytes(b"url\tcaption\nno tab here\n\thttp://x\nhttp://h/3.jpg\tcap\x00\xfe\r\n")
    found = rows_of(DelimitedList(Columns()), tsv)
    assert found == [(0, "no tab here", ""), (1, "", "http://x"), (2, "http://h/3.jpg", "cap\x00\ufffd")]
    csv_path = tmp_path / "l.csv"
    csv_path.write_bytes(b'url,caption\nonly-one-field\n"http://h/1.jpg","two\nlines"\n')
    assert rows_of(CsvList(Columns()), csv_path) == [(0, "only-one-field", ""), (1, "http://h/1.jpg", "two\nlines")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_column_names_the_file_and_its_columns(tmp_path, rows, fmt):
    path = write_list(tmp_path / f"list.{fmt}", fmt, rows)
    with pytest.raises(VlprepError) as error:
        list(reader_for(fmt, Columns(url="image_url")).iter_rows(path))
    assert str(path) in str(error.value) and "'image_url'" in str(error.value) and "'caption'" in str(error.value)
    assert "--url-col" in str(error.value)


def test_names_without_a_header_and_a_header_only_file_are_clear(tmp_path):
    path = tmp_path / "l.tsv"
    path.write_text("http://h/0.jpg\tcap\n")
    with pytest.raises(VlprepError, match="0-based positions"):
        list(DelimitedList(Columns(), header=False).iter_rows(path))
    empty = tmp_path / "h.csv"
    empty.write_text("url,caption\n")
    assert rows_of(CsvList(Columns()), empty) == [] and CsvList(Columns()).count_rows(empty) == 0


POSITIONS = Columns(url="0", caption="1")


@pytest.mark.parametrize("reader,name", [(TsvList(max_line=1024), "l.tsv"),
                                         (DelimitedList(POSITIONS, False, 1024), "l.tsv"),
                                         (CsvList(POSITIONS, False, ",", 1024), "l.csv"),
                                         (JsonlList(Columns(), 1024), "l.jsonl")])
def test_a_huge_line_is_an_error_naming_file_line_and_option(tmp_path, reader, name):
    path = tmp_path / name
    first = b'{"url": "http://h/0.jpg", "caption": "ok"}\n' if name.endswith("jsonl") else b"http://h/0.jpg\tok\n"
    path.write_bytes(first + b"x" * 5000 + b"\n")
    with pytest.raises(VlprepError) as error:
        list(reader.iter_rows(path))
    assert str(path) in str(error.value) and "line 2" in str(error.value) and "--max-line-kb" in str(error.value)


def test_a_quoted_csv_field_past_the_cap_is_the_same_error(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes(b'url,caption\nhttp://h/0.jpg,"' + b"x\n" * 2000 + b'"\n')
    with pytest.raises(VlprepError, match="--max-line-kb"):
        list(CsvList(Columns(), max_line=1024).iter_rows(path))


def test_parquet_reads_only_the_row_groups_it_needs(tmp_path):
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"url": [f"http://h/{n}.jpg" for n in range(100)], "caption": [f"c{n}" for n in range(100)],
                             "other": list(range(100))}), path, row_group_size=10)
    reader = ParquetList(Columns(), batch=3)
    assert [r.row for r in reader.iter_rows(path, 37, 42)] == [37, 38, 39, 40, 41]
    assert [r.caption for r in reader.select_rows(path, [99, 0, 55])] == ["c0", "c55", "c99"]
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_bytes(b"PAR1 no")
    with pytest.raises(VlprepError, match="not a readable parquet"):
        reader.count_rows(not_parquet)


def test_sbu_parallel_lists_become_one_row_a_line(tmp_path, rows):
    archive = write_sbu_archive(tmp_path / "sbu.tar.gz", rows)
    dest = tmp_path / "work" / "rows.jsonl"
    assert write_rows(archive, dest) == len(rows)
    found = list(JsonlList(Columns(extra=("user_id",))).iter_rows(dest))
    assert [(r.row, r.url, r.caption) for r in found] == [(n, u, c) for n, (u, c) in enumerate(rows)]
    assert found[3].extra == (("user_id", "10000003@N03"),)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rows.jsonl"]  # no part files left


def test_sbu_hostile_archives_are_clear_errors(tmp_path, rows):
    odd = {"image_urls": ["http://h/0.jpg", None, {"nested": [1]}], "captions": ["a", 7, "c"], "user_ids": [1, 2, 3]}
    archive = write_sbu_archive(tmp_path / "odd.tar.gz", rows, lists=odd)
    write_rows(archive, tmp_path / "odd.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "odd.jsonl").read_text().splitlines()]
    assert lines == [{"url": "http://h/0.jpg", "caption": "a", "user_id": "1"},
                     {"url": "", "caption": "7", "user_id": "2"}, {"url": "", "caption": "c", "user_id": "3"}]
    unequal = write_sbu_archive(tmp_path / "u.tar.gz", rows, lists={"image_urls": ["a", "b"], "captions": ["x"],
                                                                    "user_ids": ["1", "2"]})
    with pytest.raises(VlprepError, match="differ in length .*captions 1"):
        write_rows(unequal, tmp_path / "u.jsonl")
    assert not (tmp_path / "u.jsonl").exists()
    missing = write_sbu_archive(tmp_path / "m.tar.gz", rows, lists={"urls": [], "captions": []})
    with pytest.raises(VlprepError, match="no list image_urls, user_ids; its keys are 'urls', 'captions'"):
        write_rows(missing, tmp_path / "m.jsonl")
    other = write_sbu_archive(tmp_path / "o.tar.gz", rows, json_name="other.json")
    with pytest.raises(VlprepError, match="no member sbu-captions-all.json"):
        write_rows(other, tmp_path / "o.jsonl")
    broken = tmp_path / "b.tar.gz"
    broken.write_bytes(archive.read_bytes()[:60])
    with pytest.raises(VlprepError, match="not readable|no member"):
        write_rows(broken, tmp_path / "b.jsonl")


READ_ALL = """
import re, sys, time
from pathlib import Path
from vlprep.pipeline.records.listreaders import Columns, reader_for
reader = reader_for(sys.argv[2], Columns())
started = time.monotonic()
count = sum(1 for _ in reader.iter_rows(sys.argv[1]))
last = [r.row for r in reader.select_rows(sys.argv[1], [count - 1])]
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
print(count, time.monotonic() - started, peak, last[0])
"""


def test_a_million_rows_stream_in_bounded_memory(tmp_path):
    """1,000,000 rows in parquet and CSV, each read through in a fresh process (VmHWM: ru_maxrss would carry
    pytest's over exec): seconds, and a peak
    memory far below the file's size in Python objects (about 400 MB for a million rows held at once)."""
    import pyarrow.csv as pacsv

    n = 1_000_000
    table = pa.table({"url": [f"http://example.com/images/{i:07d}.jpg" for i in range(n)],
                      "caption": [f"a photo of thing number {i} on a table" for i in range(n)]})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=100_000)
    pacsv.write_csv(table, tmp_path / "big.csv")
    for name, fmt in (("big.parquet", "parquet"), ("big.csv", "csv")):
        done = subprocess.run([sys.executable, "-c", READ_ALL, str(tmp_path / name), fmt], capture_output=True,
                              text=True, check=True)
        count, seconds, peak, last = done.stdout.split()
        print(f"{name}: {int(count) / float(seconds):,.0f} rows/s (read + select the last), peak RSS "
              f"{int(peak) / 1e6:.0f} MB")
        assert int(count) == n and int(last) == n - 1 and int(peak) < 300e6


def test_a_csv_quote_left_open_is_an_error_naming_its_line_never_one_long_caption(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text('url,caption\nhttp://h/0.jpg,"never closed\nhttp://h/1.jpg,b\nhttp://h/2.jpg,c\n')
    with pytest.raises(VlprepError, match=r"line 2: a quoted field opened here is never closed"):
        list(CsvList(Columns()).iter_rows(path))
    path.write_text("url,caption\n" + 'http://h/0.jpg,"open\n' + "more text\n" * 150 + '"\nhttp://h/1.jpg,b\n')
    with pytest.raises(VlprepError, match=r"line 2: one record spans 1\d\d lines"):
        list(CsvList(Columns()).iter_rows(path))
    path.write_text('url,caption\nhttp://h/0.jpg,"ab"cd\nhttp://h/1.jpg,"two\nlines"\nhttp://h/2.jpg,c\n')
    rows = list(CsvList(Columns()).iter_rows(path))  # a record malformed after its closing quote keeps its row
    assert [(r.row, r.url, r.caption) for r in rows] == [(0, "", ""), (1, "http://h/1.jpg", "two\nlines"),
                                                          (2, "http://h/2.jpg", "c")]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, fmt):
    path = tmp_path / f"list.{fmt}"
    body = {"csv": "url,caption\nhttp://h/0.jpg,a\n", "tsv": "url\tcaption\nhttp://h/0.jpg\ta\n",
            "jsonl": '{"url": "http://h/0.jpg", "caption": "a"}\n'}[fmt]
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert [(r.url, r.caption) for r in reader_for(fmt, Columns()).iter_rows(path)] == [("http://h/0.jpg", "a")]


def test_a_jsonl_line_nested_past_the_parser_is_a_malformed_row(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_bytes(b'{"url": "http://h/0.jpg", "caption": "a"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    rows = list(JsonlList(Columns()).iter_rows(path))
    assert [(r.row, r.url) for r in rows] == [(0, "http://h/0.jpg"), (1, "")]
