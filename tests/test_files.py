"""Files written whole or not at all (charlm/files.py)."""

import os

from charlm import files


def test_a_write_works_where_a_folder_cannot_be_opened_to_sync_it(tmp_path, monkeypatch):
    """Windows refuses os.open on a folder (PermissionError): the folder sync after the renames made
    every checkpoint, export and page write there fail, though the files were already in place."""
    real_open = os.open

    def open_as_windows_does(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", open_as_windows_does)
    target = tmp_path / "run" / "latest.pt"
    files.write_files({target: b"weights"})
    assert target.read_bytes() == b"weights"
    assert sorted(p.name for p in target.parent.iterdir()) == ["latest.pt"]
