"""Hostile images through the real CLI and model (tests/hostile_images.py): malformed headers and truncations of
every allowed format, DDS/EPS/PDF (some named .png), bombs, empty and text files, between good pictures. Each is
answered quickly, none kills or stops the run, every good picture is analyzed, and a resumed batch finishes."""

from __future__ import annotations

import io
import json
import sqlite3
import time

from loupe.cli import main
from loupe.core.errors import ImageError
from loupe.core.images.files import IMAGE_EXTENSIONS
from loupe.core.images.load import load_image

from tests.hostile_images import corpus


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_every_hostile_file_is_an_image_error_or_a_picture_within_two_seconds(tmp_path):
    good, bad = corpus(tmp_path)
    refused = 0
    for path in good + bad:
        t0 = time.monotonic()
        try:
            load_image(path)
        except ImageError as exc:  # anything else fails the test
            assert "\n" not in str(exc) and str(path) in str(exc)
            refused += 1
        assert time.monotonic() - t0 < 2.0, path
    assert refused >= len(bad) - 8  # a few bit flips land on bytes no decoder checks: those still decode
    for name in ("eps-as-png.png", "pdf-as-png.png", "dds-as-png.png", "tiff-no-dimensions.tif", "png-bomb.png"):
        (path,) = [p for p in bad if p.name.endswith(name)]
        try:
            load_image(path)
        except ImageError as exc:
            assert "Traceback" not in str(exc)
        else:
            raise AssertionError(f"{name} was decoded")


def test_analyze_with_hostile_files_among_good_ones_answers_each(tmp_path, model_args, digit_task):
    good, bad = corpus(tmp_path)
    paths = [str(p) for p in sorted(good + bad)]
    code, out, err = run("analyze", *paths, "--task-file", str(digit_task), *model_args, "--json")
    assert "Traceback" not in err and code in (0, 1)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(paths)
    by_path = {line["images"][0]["path"]: line for line in lines}
    assert all(by_path[str(p)]["status"] != "error" for p in good)
    assert by_path[str(next(p for p in bad if p.name.endswith("eps-as-png.png")))]["status"] == "error"


def test_batch_over_a_hostile_folder_finishes_and_resumes(tmp_path, model_args, digit_task):
    good, bad = corpus(tmp_path / "imgs")
    bad = [p for p in bad if p.suffix in IMAGE_EXTENSIONS]  # a folder's .dds and .eps files are not picked up
    db = tmp_path / "s.db"
    argv = ("batch", str(tmp_path / "imgs"), "--task-file", str(digit_task), *model_args, "--db", str(db), "--json")
    code, out, err = run(*argv)
    assert "Traceback" not in err and code in (0, 1)
    summary = json.loads(out.splitlines()[-1])
    assert summary["items"] == summary["done"] == len(good) + len(bad)
    assert summary["errors"] >= len(bad) - 8
    rows = (
        sqlite3.connect(db)
        .execute("SELECT i.path, r.status FROM items i JOIN results r ON r.item_id = i.id")
        .fetchall()
    )
    assert all(status != "error" for path, status in rows if path in {str(p) for p in good})
    code, out, err = run("batch", "--resume", "1", "--db", str(db), "--json")
    assert "Traceback" not in err and json.loads(out.splitlines()[-1])["done"] == len(good) + len(bad)
