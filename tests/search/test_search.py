"""Search over a hand-made store: --where and --text return exactly the expected rows, --dupes groups a JPEG with
its resized and re-compressed copies and keeps other pictures apart, --like puts the query first and its copies
before unrelated images; the CLI says the same, and `loupe index` back-fills older results."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from loupe.cli.main import main
from loupe.search import Filters, backfill, dupes, like, text, where
from loupe.search.filters import WhereError
from loupe.search.find import SearchError
from loupe.store import Store

from tests.search.conftest import Made, make_store


def names(made: Made, hits) -> list[str]:
    back = {v: k for k, v in made.ids.items()}
    return [back[h.result_id] for h in hits]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("/defects/*/label = crack", ["a", "b"]),
        ("/total > 100", ["a", "b"]),
        ("/defects/*/label = crack AND /total > 200", ["b"]),
        ("/merchant ~ acme", ["a", "a_small"]),
        ("/merchant != Acme Hardware", ["a_q30", "b", "c"]),
        ("/total <= 100", ["a_small", "a_q30", "c"]),
        ("/defects/*/severity >= 4", ["a"]),
        ('/merchant = "Bolt & Nut"', ["b"]),
        ("/defects/0/label = scratch", ["a_small"]),
        ("/nothing = 1", []),
    ],
)
def test_where_returns_exactly_the_matching_rows(made: Made, expr: str, expected: list[str]) -> None:
    with Store(made.db) as store:
        assert names(made, where(store, expr)) == expected


def test_where_combines_with_job_status_and_confidence(made: Made) -> None:
    with Store(made.db) as store:
        assert names(made, where(store, "/total < 200", filters=Filters(job=2))) == ["c"]
        assert names(made, where(store, "/total < 200", filters=Filters(status=("error",)))) == []
        assert names(made, where(store, filters=Filters(job=1, min_confidence=0.0))) == ["a", "a_small", "a_q30", "b"]
        assert names(made, where(store, filters=Filters(since="2000-01-01", until="2000-12-31"))) == []
        with pytest.raises(WhereError, match="POINTER OP VALUE"):
            where(store, "merchant acme")


def test_a_persons_edit_is_what_where_and_text_find(made: Made) -> None:
    with Store(made.db) as store:
        store.add_review(made.ids["c"], "edit", data={"merchant": "Quux", "total": 500, "defects": []}, who="t")
        assert names(made, where(store, "/total > 300")) == ["c"]
        assert names(made, text(store, "quux")) == ["c"] and names(made, text(store, "zed")) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("acme", {"a", "a_small"}),
        ("crack", {"a", "b"}),
        ("cafe", {"a_q30"}),
        ("café", {"a_q30"}),
        ("hard*", {"a", "a_small"}),
        ("acme scratch", {"a_small"}),
        ('"bolt"', {"b"}),
        ("nowhere", set()),
    ],
)
def test_text_returns_exactly_the_matching_rows(made: Made, query: str, expected: set[str]) -> None:
    with Store(made.db) as store:
        assert set(names(made, text(store, query))) == expected
        assert text(store, query, filters=Filters(where="/total > 1000")) == []


def test_dupes_groups_a_jpeg_with_its_resized_and_recompressed_copies(made: Made) -> None:
    with Store(made.db) as store:
        hits = dupes(store)
    assert names(made, hits) == ["a", "a_small", "a_q30"]
    assert {h.group for h in hits} == {1} and hits[0].distance == 0
    assert all(h.distance is not None and h.distance <= 8 for h in hits)


def test_like_puts_the_query_first_and_its_copies_before_other_images(made: Made) -> None:
    with Store(made.db) as store:
        by_id = like(store, made.ids["a"])
        by_file = like(store, str(made.images["a"]))
        by_copy = like(store, made.ids["a_q30"], k=3)
    assert by_id.measure == "cosine" and names(made, by_id)[0] == "a" and by_id[0].score == pytest.approx(1.0)
    assert set(names(made, by_id)[1:3]) == {"a_small", "a_q30"} and set(names(made, by_id)[3:]) == {"b", "c"}
    assert names(made, by_file) == names(made, by_id)
    assert names(made, by_copy)[0] == "a_q30" and set(names(made, by_copy)) == {"a", "a_small", "a_q30"}


def test_like_an_image_not_in_the_store_ranks_by_perceptual_hash_and_says_so(made: Made, tmp_path: Path) -> None:
    from PIL import Image

    copy = tmp_path / "new-copy.png"
    with Image.open(made.images["a"]) as a:
        a.resize((200, 150)).save(copy)
    with Store(made.db) as store:
        hits = like(store, str(copy))
        with pytest.raises(SearchError, match="no result 999"):
            like(store, 999)
    assert hits.measure == "hamming" and "analyse it first" in hits.note
    assert set(names(made, hits)[:3]) == {"a", "a_small", "a_q30"}


def test_without_vectors_like_falls_back_to_perceptual_hashes(tmp_path: Path) -> None:
    made = make_store(tmp_path, vectors=False)
    with Store(made.db) as store:
        hits = like(store, made.ids["a"])
    assert hits.measure == "hamming" and "no image vector" in hits.note
    assert names(made, hits)[0] == "a" and set(names(made, hits)[1:3]) == {"a_small", "a_q30"}


def test_index_backfills_results_stored_before_search(made: Made) -> None:
    conn = sqlite3.connect(made.db)
    conn.execute("DELETE FROM image_hashes")
    conn.execute("DELETE FROM result_text")
    conn.commit()
    conn.close()
    with Store(made.db) as store:
        assert dupes(store) == [] and text(store, "acme") == []
        seen: list[tuple[int, int]] = []
        summary = backfill(store, lambda done, total: seen.append((done, total)))
        assert summary.indexed == 5 and summary.unreadable == 0 and summary.vectors == 5
        assert seen[-1] == (5, 5) and store.unindexed() == []
        assert names(made, dupes(store)) == ["a", "a_small", "a_q30"]
        assert set(names(made, text(store, "acme"))) == {"a", "a_small"}
    out = io.StringIO()
    assert main(["index", "--db", str(made.db), "--json"], out=out, err=io.StringIO()) == 0
    assert json.loads(out.getvalue())["indexed"] == 0  # nothing left to do


def cli_rows(db: Path, *args: str) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    assert main(["search", *args, "--db", str(db), "--json"], out=out, err=err) == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_cli_prints_the_same_rows(made: Made) -> None:
    with Store(made.db) as store:
        expected = {
            "where": [h.to_dict() for h in where(store, "/total > 100")],
            "text": [h.to_dict() for h in text(store, "acme")],
            "dupes": [h.to_dict() for h in dupes(store)],
            "like": [h.to_dict() for h in like(store, made.ids["a"])],
        }
    assert cli_rows(made.db, "--where", "/total > 100") == expected["where"]
    assert cli_rows(made.db, "--text", "acme") == expected["text"]
    assert cli_rows(made.db, "--dupes") == expected["dupes"]
    assert cli_rows(made.db, "--like", str(made.ids["a"])) == expected["like"]
    assert [r["result_id"] for r in cli_rows(made.db, "--like", str(made.images["a"]), "--limit", "2")] == [
        made.ids["a"],
        expected["like"][1]["result_id"],
    ]
    assert [r["result_id"] for r in cli_rows(made.db, "--dupes", "--text", "acme")] == [
        made.ids["a"],
        made.ids["a_small"],
    ]
    out = io.StringIO()
    assert main(["search", "--where", "/total > 100", "--db", str(made.db)], out=out, err=io.StringIO()) == 0
    assert out.getvalue().splitlines()[0].split()[:3] == ["result", "job", "status"]
    assert len(out.getvalue().splitlines()) == 3


def test_a_search_exports_exactly_the_rows_it_found(made: Made, tmp_path: Path) -> None:
    with Store(made.db) as store:
        found = [h.result_id for h in text(store, "acme")]
        dupe_ids = list(dict.fromkeys(h.result_id for h in dupes(store)))
    assert found and dupe_ids  # the hand-made store has both
    out, err = io.StringIO(), io.StringIO()
    jsonl = tmp_path / "acme.jsonl"
    assert main(["search", "--text", "acme", "--db", str(made.db), "--out", str(jsonl)], out=out, err=err) == 0
    assert [json.loads(line)["result"] for line in jsonl.read_text().splitlines()] == found  # best first, each once
    assert f"exported {len(found)} result(s) as jsonl" in err.getvalue()
    csv_out = tmp_path / "dupes.csv"
    assert main(["search", "--dupes", "--db", str(made.db), "--out", str(csv_out)], out=out, err=err) == 0
    assert len(csv_out.read_text().splitlines()) == 1 + len(dupe_ids)  # a header, then one row per result
    err = io.StringIO()
    code = main(["search", "--dupes", "--db", str(made.db), "--out", str(tmp_path / "x.xlsx")], out=out, err=err)
    assert code == 2 and err.getvalue().count("\n") == 1 and not (tmp_path / "x.xlsx").exists()
