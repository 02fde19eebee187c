"""Flat memory on the import path (issue 12): the client streams the CSV and its Base64 body from
disk, and the simulator streams the body to disk and keeps the rows there."""

from __future__ import annotations

import io
import sqlite3
import tempfile
import tracemalloc

from cheetah_assets.cheetah.client import B64_BLOCK, write_import_body
from cheetah_assets.simulator.streambody import read_import_body
from cheetah_assets.sending.importing import ImportPart, import_parts, row_chunks

from .conftest import cheetah_resource

ROWS, WIDTH = 2500, 4000  # a 10 MB CSV: 13 MB of Base64 in the body


def _csv_file() -> tempfile.TemporaryFile:
    f = tempfile.TemporaryFile()
    f.write(b"EMAIL_ADDR,FNAME\r\n")
    for i in range(ROWS):
        f.write(b"user%d@example.com,%s\r\n" % (i, b"x" * WIDTH))
    return f


def test_an_import_of_10_mb_goes_through_client_and_simulator_in_bounded_memory(sim):
    """Fails on an in-memory body: the client alone would hold the CSV, its Base64 and the JSON
    (30+ MB), and a simulator reading ``request.json()`` as much again."""
    with _csv_file() as f, cheetah_resource(sim).get_client() as client:
        client.get_data_map()  # token and connection first: not what is measured
        tracemalloc.start()
        try:
            import_id = client.start_import(list_name="big-list", csv_file=f, file_name="big.csv")
            status = client.wait_for_import(import_id)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status.rows_accepted == ROWS and not status.rejected
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {ROWS * WIDTH / 1e6:.0f} MB import"
    (listed,) = sim.admin.lists(rows=False)
    assert listed["rowCount"] == ROWS
    # The simulator keeps the rows on disk, in its row store's file.
    with sqlite3.connect(sim.state.rows.path) as db:
        assert db.execute("SELECT COUNT(*) FROM list_rows WHERE list_id = ?", (listed["listId"],)).fetchone()[0] == ROWS


def test_the_body_is_written_in_blocks_and_reads_back_exactly():
    csv_data = b"EMAIL_ADDR\r\n" + b"".join(b"u%d@x.io\r\n" % i for i in range(50_000))
    out = io.BytesIO()
    written = write_import_body(out, io.BytesIO(csv_data), {"fileName": "a.csv", "fileData": "\x00file data\x00",
                                                            "propMapId": 7, "listName": "L \"1\""})
    assert written == len(out.getvalue()) and len(csv_data) > 2 * B64_BLOCK
    small, data = read_import_body(io.BytesIO(out.getvalue()))
    assert small == {"fileName": "a.csv", "fileData": "", "propMapId": 7, "listName": 'L "1"'}
    data.csv.seek(0)
    assert data.csv.read() == csv_data and data.failure is None


def test_import_parts_stream_rows_to_disk_within_the_limits():
    rows = ((f"user{i}@example.com", {"FNAME": "é" * (i % 5)}) for i in range(1000))
    parts = []
    header = ["EMAIL_ADDR", "FNAME"]
    for part in import_parts(row_chunks(rows, header, size=128), header, max_rows=300, max_bytes=10**9):
        part.file.seek(0)
        parts.append((len(part), part.file.read().decode("utf-8")))
    assert [n for n, _ in parts] == [300, 300, 300, 100]
    assert parts[0][1].startswith("EMAIL_ADDR,FNAME\r\nuser0@example.com,\r\nuser1@example.com,é\r\n")
    with ImportPart(["EMAIL_ADDR", "FNAME"]) as whole:
        for i in range(5):
            whole.add(f"u{i}@x.io", [f"n{i}"])
        a, b = whole.halves()
        with a, b:
            assert (a.identifiers, b.identifiers) == (["u0@x.io", "u1@x.io"], ["u2@x.io", "u3@x.io", "u4@x.io"])
            b.file.seek(0)
            assert b.file.read() == b"EMAIL_ADDR,FNAME\r\nu2@x.io,n2\r\nu3@x.io,n3\r\nu4@x.io,n4\r\n"


def test_a_world_saved_with_rows_in_memory_comes_back_with_them_on_disk(tmp_path):
    """A state file written before rows lived on disk (a list's rows in the pickled world)."""
    from cheetah_assets.simulator.imports import RecipientList
    from cheetah_assets.simulator.server import SimulatorServer

    path = tmp_path / "nested" / "sim.db"
    old = SimulatorServer(seed="demo", state_path=path)
    legacy = RecipientList(9001, 1, "old-list", 77)
    del vars(legacy)["count"]
    vars(legacy)["rows"] = {"a@x.io": {"FNAME": "A"}, "b@x.io": {"FNAME": "B"}}
    old.state.imports.lists[9001] = legacy
    old.store.save(old.state)
    restored = SimulatorServer(seed="demo", state_path=path)
    assert restored.restored
    assert restored.state.imports.lists[9001].count == 2
    assert [r["identifier"] for r in restored.state.rows.list_rows(9001)] == ["a@x.io", "b@x.io"]
