"""`workbench export`: one indicator table on stdout, suppressed unless in analyst mode."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, world
from typer.testing import CliRunner

from workbench.disclosure import PUBLISHING_ENV, DisclosureError
from workbench.paths import Dataset
from workbench.publish.cli import app

runner = CliRunner()
MEASURES = ["patients", "listed", "ddd", "patients_per_1000", "ddd_per_1000"]


def run(dataset: Dataset, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["export", *args, "--data", str(dataset.root)])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stdout if code == 0 else result.output


def table(text: str, sep: str = ",") -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=sep, dtype={"unit_id": str, "period": str})


@pytest.fixture(scope="module")
def practices(municipality_dataset: Dataset) -> list[str]:
    import duckdb

    with duckdb.connect(str(municipality_dataset.database), read_only=True) as con:
        rows = con.execute("select practice_id from practices order by 1").fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Practice 000001: 3 women on morphine; 000002: 5 women and 2 men; 10 listed each. The
    data cover 2024 (an NSAID in January and December)."""
    reg = world()
    for i in range(20):
        practice = "000001" if i < 10 else "000002"
        reg.person(f"p{i}", sex="F" if i % 10 < 6 else "M")
        reg.listing(f"p{i}", practice, "2023-01-01")
    for i in (0, 1, 2, 10, 11, 12, 13, 14, 16, 17):
        reg.redeem(f"p{i}", "2024-03-01", MORPHINE, packs=1,
                   prescriber="000001" if i < 10 else "000002")
    reg.redeem("p5", "2024-01-02", IBUPROFEN).redeem("p5", "2024-12-30", IBUPROFEN)
    dataset = Dataset.at(tmp_path_factory.mktemp("tiny"))
    reg.backend(dataset.database).disconnect()
    return dataset


def test_columns_and_one_row_per_unit(municipality_dataset: Dataset, practices: list[str]
                                      ) -> None:
    out = table(run(municipality_dataset, "--group", "opioids", "--level", "practice",
                    "--period", "2024", "--measures", ",".join(MEASURES)))
    assert list(out.columns) == ["unit_id", "period", *MEASURES]
    assert list(out["unit_id"]) == practices  # one row per practice, in order
    assert set(out["period"]) == {"2024"}
    assert (out["patients"] >= 5).all()  # opioids in a year: nothing to hide here


def test_by_sex_has_an_all_row_per_unit(municipality_dataset: Dataset, practices: list[str]
                                        ) -> None:
    plain = table(run(municipality_dataset, "--group", "opioids", "--period", "2024"))
    out = table(run(municipality_dataset, "--group", "opioids", "--period", "2024",
                    "--by", "sex", "--measures", "patients,ddd_per_1000"))
    assert list(out.columns) == ["unit_id", "period", "sex", "patients", "ddd_per_1000"]
    assert list(out["unit_id"]) == [u for u in practices for _ in range(3)]
    assert list(out["sex"]) == ["F", "M", "all"] * len(practices)
    total = out[out["sex"] == "all"].set_index("unit_id")
    assert total["patients"].to_dict() == plain.set_index("unit_id")["patients"].to_dict()


def test_groups_series_units_and_formats(municipality_dataset: Dataset, practices: list[str]
                                         ) -> None:
    unit = practices[0]
    args = ["--group", "opioids,stimulants", "--period", "2024-01..2024-03", "--units", unit,
            "--measures", "patients,ddd"]
    out = table(run(municipality_dataset, *args))
    assert list(out.columns) == ["unit_id", "period", "group", "patients", "ddd"]
    assert list(zip(out["period"], out["group"], strict=True)) == [
        (p, g) for p in ("2024-01", "2024-02", "2024-03") for g in ("opioids", "stimulants")
    ]
    assert set(out["unit_id"]) == {unit}
    tsv = table(run(municipality_dataset, *args, "--format", "tsv"), sep="\t")
    pd.testing.assert_frame_equal(tsv, out)
    records = json.loads(run(municipality_dataset, *args, "--format", "json"))
    assert list(records[0]) == list(out.columns) and len(records) == len(out)


def test_small_cells_hidden_by_default_shown_unsuppressed(municipality_dataset: Dataset) -> None:
    args = ["--group", "antipsychotics", "--period", "2024-01..2024-12", "--by", "sex"]
    raw = table(run(municipality_dataset, *args, "--unsuppressed"))
    assert {"patients_suppression", "listed_suppression"} <= set(raw.columns)
    small = raw[raw["patients"].between(1, 4)]
    assert len(small) > 0, "the generated municipality should have small cells"
    assert (small["patients_suppression"] == "primary").all()

    out = table(run(municipality_dataset, *args))
    assert list(out.columns) == list(raw.columns[: len(out.columns)])
    assert not out["patients"].between(1, 4).any()
    keys = ["unit_id", "period", "sex"]
    hidden = small[keys].merge(out, on=keys)
    assert len(hidden) == len(small)
    assert hidden[["patients", "ddd", "patients_per_1000", "ddd_per_1000"]].isna().all().all()
    assert (raw["patients_suppression"].notna() == out["patients"].isna()).all()


def test_tiny_register_exact_suppression(tiny: Dataset) -> None:
    args = ["--group", "opioids", "--period", "2024", "--by", "sex", "--measures", "patients"]
    raw = table(run(tiny, *args, "--unsuppressed"))
    assert raw[raw["unit_id"].isin(["000001", "000002"])]["patients"].tolist() == [3, 0, 3,
                                                                                   5, 2, 7]
    out = table(run(tiny, *args)).set_index(["unit_id", "sex"])["patients"]
    # 000001: 3 women hidden, so is their total; 0 men is a true zero and stays.
    assert out["000001"].isna().tolist() == [True, False, True]
    # 000002: 2 men hidden, and the women too, or 7 - 5 would give them away.
    assert out["000002"].isna().tolist() == [True, True, False]
    assert out[("000002", "all")] == 7


def test_unsuppressed_refused_while_publishing(
    tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PUBLISHING_ENV, "1")
    message = run(tiny, "--group", "opioids", "--period", "2024", "--unsuppressed", code=2)
    assert "refused while publishing" in message
    out = table(run(tiny, "--group", "opioids", "--period", "2024"))  # suppressed is fine
    assert out.set_index("unit_id")["patients"].isna()["000001"]


def test_person_keys_never_leave(tiny: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(df: pd.DataFrame) -> None:
        raise DisclosureError("person keys must never be published: test")

    monkeypatch.setattr("workbench.publish.export.scan_for_person_keys", refuse)
    message = run(tiny, "--group", "opioids", "--period", "2024", code=2)
    assert "person keys must never be published" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--group", "opiods", "--period", "2024"], "not a drug group"),
        (["--group", "opioids", "--period", "2024-13"], "not a period label"),
        (["--group", "opioids", "--period", "2024-03..2024-01"], "before its start"),
        (["--group", "opioids", "--period", "2030"], "not covered by the data"),
        (["--group", "opioids", "--period", "2024", "--measures", "patients,dd"],
         "unknown measure"),
        (["--group", "opioids", "--period", "2024", "--measures", "share"], "needs --by"),
        (["--group", "opioids", "--period", "2024", "--level", "county"], "unknown level"),
        (["--group", "opioids", "--period", "2024", "--units", "999999"], "no practice"),
        (["--group", "opioids", "--period", "2024", "--by", "colour"], "unknown dimension"),
        (["--group", "opioids", "--period", "2024", "--by", "sex", "--by", "sex"], "twice"),
        (["--group", "opioids", "--period", "2024", "--format", "xml"], "unknown format"),
    ],
)
def test_errors_are_one_clear_line(tiny: Dataset, args: list[str], expected: str) -> None:
    message = run(tiny, *args, code=2)
    assert message.startswith("error: ") and expected in message
    assert message.count("\n") == 1


def test_missing_database(tmp_path) -> None:
    message = run(Dataset.at(tmp_path / "nothing"), "--group", "opioids", "--period", "2024",
                  code=2)
    assert message.startswith("error: ") and "does not exist" in message
