"""The output scanner (:mod:`workbench.publish.scan`), and a rendered batch read by it.

First the scanner on hand-made files, each with the answer worked out by hand, so it is known
to see what it must (and to leave alone what is fine: a true zero, a period, a timestamp, a DDD
sum of ten digits). Then ``workbench render`` on a generated municipality with several clusters
(Odense, in region 1083; a slice of the region's batch for CI — the whole region is ``make
bench``), once under each viewing profile, and every file it wrote read back: no count of 1–4
persons, no value built on one, nothing recoverable, no person key, CPR number or birth date,
and no practice a profile may not see.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from workbench.paths import Dataset
from workbench.profiles import Profile
from workbench.publish.scan import Practice, register_practices, scan

PRACTICES = {"172409": Practice("Lægehuset Engvej", "K025"),
             "236372": Practice("Lægecentret Skovvej", "K025"),
             "500001": Practice("Lægerne Torvet", "K030")}


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return tmp_path


def _kinds(report) -> list[str]:
    return sorted(f.kind for f in report.findings)


# --- tables -----------------------------------------------------------------------------------


def test_small_counts_and_values_built_on_hidden_ones(tmp_path) -> None:
    # row a: 3 patients published (1-4: a finding); row b: 0 (a true zero, fine); row c: 5
    # (fine); row d: patients hidden but its rate shown (a finding); row e: hidden, rate hidden.
    csv = ("unit_id,period,patients,listed,patients_per_1000,patients_suppressed\n"
           "a,2025,3,100,30.0,False\nb,2025,0,100,0.0,False\nc,2025,5,100,50.0,False\n"
           "d,2025,,100,20.0,True\ne,2025,,100,,True\n")
    report = scan(_folder(tmp_path, {"t.csv": csv}), Profile("analyst"))
    assert _kinds(report) == ["built_on_hidden", "small_count"]
    assert "patients = 3" in next(f.detail for f in report.findings if f.kind == "small_count")
    assert "patients_per_1000 = 20.0" in next(
        f.detail for f in report.findings if f.kind == "built_on_hidden")


def test_a_hidden_cell_the_total_gives_back_is_found(tmp_path) -> None:
    # sex F 10, M hidden, all 17: M = 17 - 10 = 7, solved (and its DDD with it: 70 - 40 = 30).
    leaky = ("group,sex,patients,ddd,patients_suppressed\n"
             "opioids,F,10,40.0,False\nopioids,M,,,True\nopioids,all,17,70.0,False\n")
    # both hidden: F + M = 17 with F, M >= 0 leaves each anywhere in [0, 17]: nothing found.
    safe = ("group,sex,patients,ddd,patients_suppressed\n"
            "opioids,F,,,True\nopioids,M,,,True\nopioids,all,17,70.0,False\n")
    report = scan(_folder(tmp_path, {"leaky.csv": leaky, "safe.csv": safe}), Profile("analyst"))
    assert {(f.file, f.kind) for f in report.findings} == {("leaky.csv", "recoverable")}
    assert any("patients determined in [7, 7]" in f.detail for f in report.findings)


def test_a_rank_given_on_published_values_is_not_a_leak(tmp_path) -> None:
    last = ("item,patients,rate,rank,patients_suppressed\n"
            "a,10,1.0,1,False\nb,8,0.8,2,False\nc,,,3,True\n")
    first = ("item,patients,rate,rank,patients_suppressed\n"
             "a,10,1.0,2,False\nb,8,0.8,3,False\nc,,,1,True\n")  # the hidden row ranked first
    report = scan(_folder(tmp_path, {"last.csv": last, "first.csv": first}),
                  Profile("analyst"))
    assert [(f.file, f.kind) for f in report.findings] == [("first.csv", "built_on_hidden")]


# --- text: person keys, CPR numbers, dates ---------------------------------------------


def test_person_keys_cpr_numbers_and_birth_dates_anywhere(tmp_path) -> None:
    files = {
        "a.html": "<p>P123456789 was listed</p><p>born 14.03.1957</p>",
        "b.json": json.dumps({"note": "010203-1234", "born": "1957-03-14",
                              "generated_at": "2026-11-26T12:00:00", "period": "R12-2025-06",
                              "provenance": {"atc_ddd_index": "2026-04-25"}}),  # a release
        "c.txt": "0102031234 and 1234567890 (no date: month 34) and 2025Q1; a kernel id "
                 "3c053097-7928-4abc-9def-001122334455 is no CPR number",
        "d.csv": "unit_id,period,ddd\nx,2025,1203456789.5\n",  # a national DDD sum: fine
    }
    report = scan(_folder(tmp_path, files), Profile("analyst"))
    found = sorted((f.file, f.kind) for f in report.findings)
    assert found == [("a.html", "birth_date"), ("a.html", "person_key"),
                     ("b.json", "birth_date"), ("b.json", "cpr_number"),
                     ("c.txt", "cpr_number")]


def test_tables_inside_pages_and_notebooks_are_read(tmp_path) -> None:
    table = "unit_id,patients,patients_suppressed\nK025,2,False\n"
    link = base64.b64encode(table.encode()).decode()
    page = f'<a download="x.csv" href="data:text/csv;charset=utf-8;base64,{link}">CSV</a>'
    notebook = {"cells": [{"cell_type": "code", "source": ["view.header()"], "outputs": [
        {"output_type": "display_data", "data": {"text/html": [page]}},
        {"output_type": "stream", "name": "stdout", "text": ["P987654321\n"]}]}]}
    report = scan(_folder(tmp_path, {"p.html": page, "n.ipynb": json.dumps(notebook)}),
                  Profile("analyst"))
    assert sorted((f.file, f.kind) for f in report.findings) == [
        ("n.ipynb", "person_key"), ("n.ipynb", "small_count"), ("p.html", "small_count")]
    assert report.tables == 2


def test_the_words_of_a_figure_are_read(tmp_path) -> None:
    # an SVG figure as a page embeds it: a practice's name (with an entity) and id as labels
    figure = ('<svg xmlns="http://www.w3.org/2000/svg"><g><text x="1" y="2">Lægehuset'
              ' Engvej (172409)</text><text style="font-size: 10px">Lægerne &amp; Torvet'
              '</text><text>K025</text></g></svg>')
    data = base64.b64encode(figure.encode()).decode()
    page = f'<figure><img alt="Praksis" src="data:image/svg+xml;base64,{data}"></figure>'
    icon = base64.b64encode(b'<svg><path d="M0 0" /></svg>').decode().rstrip("=")  # unpadded,
    assert len(icon) % 4  # as a stylesheet's icon may be: a browser reads it, and so do we
    page += f'<style>.x{{background:url(data:image/svg+xml;base64,{icon})}}</style>'
    broken = base64.b64encode(b"\xff\xfe<svg/>").decode()  # not UTF-8: can't be read
    folder = _folder(tmp_path, {"p.html": page, "q.html": page.replace(data, broken)})
    found = sorted((f.file, f.kind, f.detail) for f in scan(folder, Profile("public"),
                                                             PRACTICES).findings)
    # the base64 itself holds none of the words: only reading the figure finds them
    assert found == [("p.html", "practice", "practice id 172409"),
                     ("p.html", "practice", "practice name 'Lægehuset Engvej'"),
                     ("q.html", "unreadable", found[-1][2])]
    assert found[-1][2].startswith("embedded figure 0:")
    assert scan(folder, Profile("analyst"), PRACTICES).findings[0].kind == "unreadable"


def test_a_file_the_scanner_cannot_read_is_reported(tmp_path) -> None:
    files = {"site/.cache/results.duckdb": b"DUCK\0\1", "site/figure.png": b"\x89PNG\r\n",
             "site/data.parquet": b"PAR1\0"}
    report = scan(_folder(tmp_path, files), Profile("analyst"))
    assert sorted((f.file, f.kind) for f in report.findings) == [
        ("site/.cache/results.duckdb", "unreadable"), ("site/data.parquet", "unreadable")]


# --- practices under each profile -------------------------------------------------------------


def test_practices_a_profile_may_not_see(tmp_path) -> None:
    page = ("<p>Lægehuset Engvej (172409)</p><p><b>Lægerne</b> Torvet</p>"
            '<a href="practice_insight.ipynb?unit=500001">x</a><p>K025 product 1724090</p>')
    folder = _folder(tmp_path, {"p.html": page})
    public = scan(folder, Profile("public"), PRACTICES)
    found = sorted(f.detail for f in public.findings)
    # 172409 and 500001 by id (1724090 is another number), both names (one split by markup)
    assert found == ["practice id 172409", "practice id 500001",
                     "practice name 'Lægehuset Engvej'", "practice name 'Lægerne Torvet'"]
    mine = scan(folder, Profile("practice", "236372"), PRACTICES)  # cluster K025
    assert sorted(f.detail for f in mine.findings) == [
        "practice id 500001", "practice name 'Lægerne Torvet'"]
    assert scan(folder, Profile("analyst"), PRACTICES).ok


def test_a_decimal_that_holds_an_id_is_not_the_practice(tmp_path) -> None:
    # Seen on a generated region: a cluster's DDD 360425.9723 flagged as practice 360425.
    table = "unit_id,ddd,share\nK025,172409.9722999996,0.172409\nK025,5.172409,1\n"
    text = "<p>DDD 172409,97 og 0,172409</p><p>Ydernummer 500001.</p>"
    folder = _folder(tmp_path, {"t.csv": table, "p.html": text})
    found = [(f.file, f.detail) for f in scan(folder, Profile("public"), PRACTICES).findings]
    # the decimals (English and Danish) are numbers; the id ending a sentence is the practice
    assert found == [("p.html", "practice id 500001")]


# --- a rendered batch, under each profile ----------------------------------------------------


@pytest.fixture(scope="module")
def region_slice(clusters_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
                 ) -> Dataset:
    """A private copy of the generated municipality (a batch opens its data writable)."""
    copy = Dataset.at(tmp_path_factory.mktemp("scan-data"))
    shutil.copy2(clusters_dataset.database, copy.database)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("name", ["public", "practice", "analyst"])
def test_a_rendered_batch_discloses_nothing_its_profile_may_not_show(
        name, region_slice, tmp_path) -> None:
    from workbench.publish.batch import BatchOptions, run_batch

    practices = register_practices(region_slice.database)
    practice = sorted(practices)[len(practices) // 2]
    profile = Profile("practice", practice) if name == "practice" else Profile(name)
    out = tmp_path / "site"
    result = run_batch(BatchOptions(
        themes=("analgesics",), area="1083", out=out, data=region_slice.root, workers=2,
        profile=profile.spec(), limit=None if name == "practice" else 8, progress=False))
    assert result.ok, result.summary()
    kinds = {e["page"] for e in result.entries.values()}
    units = {e["unit"] for e in result.entries.values()}
    if name == "public":
        assert kinds == {"overview", "cluster_insight", "cluster_intervention"}
    elif name == "practice":
        own = practices[practice].cluster
        assert units <= {"DK", own, practice} and practice in units
        assert kinds >= {"practice_insight", "practice_intervention"}
    else:
        assert "practice_insight" in kinds or len(result.entries) == 8
    report = scan(out, profile, practices)
    assert report.findings == [], report.summary()
    # the unsuppressed answer store stays beside the register, never in the published site
    assert region_slice.answers.is_file()
    assert not [p for p in out.rglob("*") if p.suffix in (".duckdb", ".wal")]
    assert report.files[".html"] >= len(result.entries) and report.files[".ipynb"] >= len(
        result.entries)
    assert report.tables >= 3 * len(result.entries)


def test_the_scan_command(tmp_path) -> None:
    """``workbench scan``: status 0 on a clean folder, 1 and the finding on a leaky one."""
    import subprocess
    import sys

    clean = _folder(tmp_path / "clean", {"t.csv": "unit_id,patients\nK025,12\n"})
    leaky = _folder(tmp_path / "leaky", {"t.csv": "unit_id,patients\nK025,2\n"})
    command = [sys.executable, "-m", "workbench.publish.cli", "scan", "--profile", "public",
               "--data", str(tmp_path / "no-data")]
    ok = subprocess.run([*command, str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0 and "nothing found" in ok.stdout
    bad = subprocess.run([*command, str(leaky)], capture_output=True, text=True)
    assert bad.returncode == 1 and "small_count" in bad.stdout and "patients = 2" in bad.stdout
