"""Issue 12, item 4: `files:` loads only regular files inside the files root, no larger
than source.max_file_bytes; every other path a row names is a per-row error."""
import os

from .conftest import TALLY

FEATURES = {"bsum": {"extractor": "faults.byte_sum", "inputs": {"data": "image"}}}


def test_hostile_paths_are_row_errors_and_the_good_rows_go_in(proj, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.bin").write_bytes(b"secret")
    (proj.root / "img").mkdir()
    (proj.root / "img" / "ok.bin").write_bytes(b"\x01\x02")
    os.symlink(outside / "secret.bin", proj.root / "img" / "link.bin")
    os.mkfifo(proj.root / "img" / "fifo.bin")
    paths = ["img/ok.bin", "/etc/passwd", "../" * 12 + "etc/passwd", "img/link.bin", "/proc/self/environ",
             "img/fifo.bin", str(outside / "secret.bin"), "img/", "img/../img/ok.bin"]
    proj.write(FEATURES, [{"id": i, "image_path": p} for i, p in enumerate(paths)],
               source={"files": {"image": "image_path"}})
    TALLY["bad_inputs"] += len(paths) - 2
    result = proj.apply()  # the FIFO must not block it
    assert result.ok and result.run.ingested == 2
    assert result.run.skipped_rows == {"file outside the files root": 5, "not a regular file": 2}
    assert [(r["id"], r["image"]) for r in proj.rows("id", "image")] == [(0, b"\x01\x02"), (8, b"\x01\x02")]
    text = proj.plan().render()
    assert "skip 5 row(s): file outside the files root (keys 1, 2, 3, 4, 6)" in text


def test_a_file_above_max_file_bytes_is_a_row_error(proj):
    (proj.root / "big.bin").write_bytes(b"\x00" * 2048)
    (proj.root / "small.bin").write_bytes(b"\x07")
    proj.write(FEATURES, [{"id": 0, "image_path": "big.bin"}, {"id": 1, "image_path": "small.bin"}],
               source={"files": {"image": "image_path"}, "max_file_bytes": 1024})
    TALLY["bad_inputs"] += 1
    result = proj.apply()
    assert result.run.ingested == 1 and result.run.skipped_rows == {"file too large": 1}
    assert "skip 1 row(s): file too large (keys 0)" in proj.plan().render()


def test_files_root_allows_a_folder_outside_the_spec(proj, tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    (shared / "a.bin").write_bytes(b"\x05")
    proj.write(FEATURES, [{"id": 0, "image_path": str(shared / "a.bin")}, {"id": 1, "image_path": "rows.jsonl"}],
               source={"files": {"image": "image_path"}, "files_root": str(shared)})
    result = proj.apply()
    assert result.run.ingested == 1 and result.run.skipped_rows == {"file outside the files root": 1}
    assert proj.rows("id", "bsum") == [{"id": 0, "bsum": 5}]


def test_a_file_growing_past_the_limit_is_not_read_whole(proj):
    from featurekit.ingest.files import FileProblem, FileRoot
    (proj.root / "f.bin").write_bytes(b"x" * 100)
    root = FileRoot(proj.root, proj.root, max_bytes=10)
    try:
        root.read("f.bin")
        raise AssertionError("read a file above the limit")
    except FileProblem as exc:
        assert str(exc).startswith("file too large:") and "above source.max_file_bytes (10)" in str(exc)
