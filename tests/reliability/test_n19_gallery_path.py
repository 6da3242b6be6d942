"""Issue 21, N19: `slice --gallery` to a missing folder is a usage error (exit 2) and a full
disk a clear error (exit 1); neither leaves a traceback or a half-written page."""
import errno
from pathlib import Path

import pytest

from featurekit.curation.gallery import write_page
from featurekit.errors import DiskFull

FEATURES = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
ROWS = [{"id": i, "question": f"q{i}"} for i in range(12)]


def test_n19_a_gallery_in_a_missing_folder_is_a_usage_error(proj):
    proj.write(FEATURES, ROWS)
    proj.spec_data["slices"] = {"some": {"where": "n > 2"}}
    import yaml
    proj.spec.write_text(yaml.safe_dump(proj.spec_data, sort_keys=False))
    assert proj.cli("apply", "-q", "spec.yaml").returncode == 0
    done = proj.cli("slice", "spec.yaml", "some", "--gallery", "nowhere/g.html")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the folder nowhere does not exist; create it first (mkdir -p nowhere)" in done.stderr
    ok = proj.cli("slice", "spec.yaml", "some", "--gallery", "g.html")
    assert ok.returncode == 0 and (proj.root / "g.html").read_text().startswith("<!doctype html>"), ok.stderr


def test_n19_a_full_disk_is_a_disk_full_error_and_leaves_no_page(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DiskFull, match="the disk is full .*nothing was written"):
        write_page(tmp_path / "g.html", "<html></html>")
    assert list(tmp_path.iterdir()) == []
