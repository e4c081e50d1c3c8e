"""Cross-check: on a generated municipality (Samsø, the session fixture), the analysis methods
equal an independent pandas computation written here from the raw register tables.

What is recomputed from scratch: the age/sex strata (age on 1 January from the birth date,
listed person-days per stratum, distinct patients with net DDD > 0 per practice and per nation),
expected values, O/E with its exact interval (through the gamma distribution rather than
chi-squared), the DSR with Dobson's interval, the funnel's limits (by a search over the Poisson
distribution instead of its quantile function), the journeys of 2023's new users, and the
risks of 2024 (periods of use merged in a plain loop over each person's dispensings, with the
whole history rather than the engine's window).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import workbench as wb
from workbench.analysis import funnel_table, standardised
from workbench.paths import Dataset

YEAR_START, YEAR_END, YEAR_DAYS = pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"), 366


@dataclass
class Raw:
    red: pd.DataFrame  # redemptions with ddd, atc, group, gp practice (or None)
    persons: pd.DataFrame
    listings: pd.DataFrame
    practices: list[str]
    defs: wb.definitions.Definitions


@pytest.fixture(scope="module")
def session(municipality_dataset: Dataset) -> wb.Workbench:
    return wb.connect(municipality_dataset.database, use_marts=False)


@pytest.fixture(scope="module")
def raw(session: wb.Workbench) -> Raw:
    # The raw tables as they are stored, read through the session's connection (DuckDB refuses
    # a second connection to the file with other settings in one process).
    def table(name: str) -> pd.DataFrame:
        return session.con.table(name).to_pandas()

    red = table("redemptions")
    products = table("products")[["product_id", "atc_code", "ddd_per_pack"]]
    practices = table("practices")["practice_id"].tolist()
    persons = table("persons")
    listings = table("listings")
    defs = wb.load_definitions()
    products["group"] = products["atc_code"].map(defs.group_for_atc)
    red = red.merge(products, on="product_id")
    red["ddd"] = red["packs"] * red["ddd_per_pack"]
    red["dispensed_on"] = pd.to_datetime(red["dispensed_on"])
    gp = (red["prescriber_type"] == "gp") & red["prescriber_id"].isin(practices)
    red["practice"] = red["prescriber_id"].where(gp)
    persons["birth_date"] = pd.to_datetime(persons["birth_date"])
    persons["death_date"] = pd.to_datetime(persons["death_date"])
    listings["start_date"] = pd.to_datetime(listings["start_date"])
    listings["end_date"] = pd.to_datetime(listings["end_date"])
    return Raw(red, persons, listings, practices, defs)


# ---- standardisation ---------------------------------------------------------------------


def strata_of_persons(raw: Raw) -> pd.DataFrame:
    p = raw.persons.copy()
    born = p["birth_date"]
    before_birthday = (born.dt.month > 1) | ((born.dt.month == 1) & (born.dt.day > 1))
    p["age"] = (2024 - born.dt.year - before_birthday.astype(int)).clip(lower=0)
    p["band"] = p["age"].map(raw.defs.age_band)
    return p.set_index("person_id")[["band", "sex"]]


def expected_standardised(raw: Raw, measure: str) -> pd.DataFrame:
    strata = strata_of_persons(raw)
    lst = raw.listings
    days = (lst["end_date"].fillna(YEAR_END).clip(upper=YEAR_END)
            - lst["start_date"].clip(lower=YEAR_START)).dt.days.clip(lower=0)
    lst = lst.assign(days=days).join(strata, on="person_id", how="inner")
    listed = lst.groupby(["practice_id", "band", "sex"])["days"].sum() / YEAR_DAYS
    national_listed = listed.groupby(level=["band", "sex"]).sum()

    red = raw.red[(raw.red["dispensed_on"] >= YEAR_START) & (raw.red["dispensed_on"] < YEAR_END)]
    red = red[red["practice"].notna() & red["group"].notna()]
    red = red.join(strata, on="person_id", how="inner")
    net = red.groupby(["practice", "group", "person_id", "band", "sex"])["ddd"].sum().reset_index()
    nat = red.groupby(["group", "person_id", "band", "sex"])["ddd"].sum().reset_index()

    def per_stratum(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        frame = frame.assign(patient=frame["ddd"].round(9) > 0, sq=frame["ddd"] ** 2)
        return frame.groupby(keys).agg(patients=("patient", "sum"), ddd=("ddd", "sum"),
                                       sq=("sq", "sum"))

    unit = per_stratum(net, ["practice", "group", "band", "sex"])
    ref = per_stratum(nat, ["group", "band", "sex"])
    weights = national_listed / national_listed.sum()
    alpha = 0.05
    rows = []
    for practice in raw.practices:
        for group in raw.defs.groups:
            o = e = v = dsr = dsr_var = 0.0
            n_total = 0.0
            complete = True
            for band, sex in [(b.id, x) for b in raw.defs.age_bands for x in ("F", "M")]:
                w = float(weights.get((band, sex), 0.0))
                n = float(listed.get((practice, band, sex), 0.0))
                n_total += n
                ref_row = ref.loc[(group, band, sex)] if (group, band, sex) in ref.index else None
                ref_o = 0.0 if ref_row is None else float(ref_row[measure])
                ref_n = float(national_listed.get((band, sex), 0.0))
                rate = ref_o / ref_n if ref_n > 0 else 0.0
                key = (practice, group, band, sex)
                ok = float(unit.loc[key, measure]) if key in unit.index else 0.0
                vk = ok if measure == "patients" else (
                    float(unit.loc[key, "sq"]) if key in unit.index else 0.0)
                o, e, v = o + ok, e + rate * n, v + vk
                if n > 0:
                    dsr += w * ok / n
                    dsr_var += w * w * vk / n**2
                elif w > 0:
                    complete = False
            # gamma(k) quantiles are chi-squared(2k)/2: the same interval, another road
            scale = v / o if o > 0 else 1.0
            k = o / scale
            lo = scale * stats.gamma.ppf(alpha / 2, k) if o > 0 else 0.0
            hi = scale * stats.gamma.ppf(1 - alpha / 2, k + 1)
            spread = math.sqrt(dsr_var / v) if v > 0 else math.nan
            rows.append({
                "unit_id": practice, "group": group, "observed": o, "expected": e,
                "listed": n_total, "oe": o / e if e > 0 else math.nan,
                "oe_lower": lo / e if e > 0 else math.nan,
                "oe_upper": hi / e if e > 0 else math.nan,
                "dsr_per_1000": dsr * 1000 if complete else math.nan,
                "dsr_lower": (dsr + spread * (lo - o)) * 1000 if complete and o > 0 else math.nan,
                "dsr_upper": (dsr + spread * (hi - o)) * 1000 if complete and o > 0 else math.nan,
            })
    return pd.DataFrame(rows).sort_values(["unit_id", "group"], ignore_index=True)


COLUMNS = ["unit_id", "group", "observed", "expected", "listed", "oe", "oe_lower", "oe_upper",
           "dsr_per_1000", "dsr_lower", "dsr_upper"]


@pytest.fixture(scope="module")
def marts_session(pages_dataset: Dataset) -> wb.Workbench:
    """The same register with the engine's marts (the state the dashboards run on)."""
    session = wb.connect(pages_dataset.database)
    assert session.marts is not None
    return session


@pytest.mark.parametrize("marts", [False, True], ids=["raw", "marts"])
@pytest.mark.parametrize("measure", ["patients", "ddd"])
def test_standardised_equals_pandas(
    request: pytest.FixtureRequest, raw: Raw, measure: str, marts: bool
) -> None:
    session = request.getfixturevalue("marts_session" if marts else "session")
    want = expected_standardised(raw, measure)
    got = standardised(session, list(raw.defs.groups), "practice", "2024", measure=measure)
    got = got.to_pandas()[COLUMNS].sort_values(["unit_id", "group"], ignore_index=True)
    assert len(want) == len(raw.practices) * len(raw.defs.groups)
    assert want["observed"].sum() > 1000  # a real register
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9, atol=1e-9)


# ---- funnel limits -----------------------------------------------------------------------


def exact_limit_by_search(mu: float, p: float, scale: float) -> float:
    """Spiegelhalter's interpolated exact limit, the quantile found by walking up the pmf."""
    r, cdf, previous = 0, stats.poisson.pmf(0, mu), 0.0
    while cdf < p:
        r += 1
        previous, cdf = cdf, cdf + stats.poisson.pmf(r, mu)
    return (r - (cdf - p) / (cdf - previous)) / scale


def test_funnel_limits_equal_an_independent_computation(session) -> None:
    table = standardised(session, "opioids", "practice", "2024").to_pandas()
    # the units of Samsø plus invented ones, so the fit has something to estimate
    extra = pd.DataFrame({"unit_id": [f"x{i}" for i in range(10)], "period": "2024",
                          "group": "opioids",
                          "observed": [20, 35, 80, 41, 90, 5, 60, 30, 12, 70],
                          "expected": [25.0, 30, 55, 40, 50, 20, 58, 31, 24, 45]})
    both = pd.concat([table[extra.columns], extra], ignore_index=True)
    for method in ("additive", "none"):
        got = funnel_table(both, observed="observed", exposure="expected",
                           method=method).to_pandas()
        o, e = both["observed"].to_numpy(float), both["expected"].to_numpy(float)
        target = o.sum() / e.sum()
        z = (o / e - target) / np.sqrt(target / e)
        lo10, hi90 = np.percentile(z, [10, 90])
        phi = np.mean(np.minimum(np.maximum(z, lo10), hi90) ** 2)
        w = e / target
        tau2 = max(0.0, (len(o) * phi - (len(o) - 1)) / (w.sum() - (w**2).sum() / w.sum()))
        assert got["phi"].iloc[0] == pytest.approx(phi)
        if method == "additive":
            assert tau2 > 0 and got["tau2"].iloc[0] == pytest.approx(tau2)
            upper = target + 3.090232306 * np.sqrt(target / e + tau2)
        else:
            upper = np.array([exact_limit_by_search(target * ei, 0.999, ei) for ei in e])
        assert np.allclose(got["upper_998"], upper, rtol=1e-7)
        assert ((got["flag_998"] == "high") == (o / e > upper)).all()


# ---- journeys ----------------------------------------------------------------------------


def expected_journeys(raw: Raw, group: str) -> dict[tuple[str, str], int]:
    red = raw.red[raw.red["group"] == group]
    end = raw.red["dispensed_on"].max() + pd.Timedelta(days=1)
    counts: dict[tuple[str, str], int] = {}
    deaths = raw.persons.set_index("person_id")["death_date"]
    for person, rows in red.groupby("person_id"):
        given = rows[rows["packs"] > 0]
        days = sorted(given["dispensed_on"].unique())
        in_2023 = [d for d in days if pd.Timestamp("2023-01-01") <= d < pd.Timestamp("2024-01-01")]
        if not in_2023:
            continue
        index = in_2023[0]
        before = [d for d in days if index - pd.Timedelta(days=365) <= d < index]
        if before:
            continue  # continued, not started
        on_day = given[(given["dispensed_on"] == index) & given["practice"].notna()]
        if on_day.empty:
            continue  # started by a non-GP prescriber: no practice
        by_practice = on_day.groupby("practice")["ddd"].sum().reset_index()
        by_practice = by_practice.sort_values(["ddd", "practice"], ascending=[False, True])
        practice = by_practice["practice"].iloc[0]
        offset = (rows["dispensed_on"] - index).dt.days
        ddd6 = rows.loc[(offset >= 0) & (offset < 183), "ddd"].sum()
        ddd12 = rows.loc[(offset >= 0) & (offset < 365), "ddd"].sum()
        late = ((offset >= 274) & (offset < 365) & (rows["packs"] > 0)).any()
        death = deaths.get(person)
        died = pd.notna(death) and (death - index).days < 365
        f6 = index + pd.Timedelta(days=183) <= end
        f12 = index + pd.Timedelta(days=365) <= end
        outcome = {
            "started": True,
            "reached_90_ddd_6m": f6 and round(ddd6, 9) >= 90,
            "reached_365_ddd_6m": f6 and round(ddd6, 9) > 365,
            "reached_90_ddd_12m": f12 and round(ddd12, 9) >= 90,
            "reached_365_ddd_12m": f12 and round(ddd12, 9) > 365,
            "stopped_12m": f12 and not died and not late,
            "died_12m": f12 and died,
        }
        for name, hit in outcome.items():
            counts[(practice, name)] = counts.get((practice, name), 0) + int(bool(hit))
    return counts


@pytest.mark.parametrize("group", ["opioids", "sedatives"])
def test_journeys_equal_pandas(session, raw: Raw, group: str) -> None:
    want = expected_journeys(raw, group)
    got = session.journeys(group, "practice", "2023").to_pandas()
    got = {(r.unit_id, r.outcome): r.persons for r in got.itertuples()}
    assert sum(v for (_, o), v in want.items() if o == "started") > 20
    assert set(want) <= set(got)
    assert got == {k: want.get(k, 0) for k in got}
    # asked for one practice (its patients' histories only), the same answer
    one = raw.practices[0]
    alone = session.journeys(group, "practice", "2023", units=one).to_pandas()
    assert {(r.unit_id, r.outcome): r.persons for r in alone.itertuples()} == {
        k: v for k, v in got.items() if k[0] == one
    }


# ---- risks -------------------------------------------------------------------------------


def merged_periods(rows: pd.DataFrame, gap: int) -> list[tuple[int, int]]:
    """A person's periods of use of one class or substance, merged in a plain loop."""
    given = rows[rows["packs"] > 0]
    daily = given.groupby("dispensed_on")["ddd"].sum().sort_index()
    out: list[list[int]] = []
    for on, supply in daily.items():
        start = (on - pd.Timestamp("1970-01-01")).days
        end = start + max(math.ceil(supply), 1)
        if out and start <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def expected_risks(raw: Raw) -> dict[tuple[str, str], tuple[int, int]]:
    """``(risk, practice) -> (patients, population)`` for 2024, straight from the definitions."""
    p0 = (YEAR_START - pd.Timestamp("1970-01-01")).days
    p1 = p0 + YEAR_DAYS
    red = raw.red.copy()
    classes = {cid: red["atc_code"].map(rule.matches) for cid, rule in
               raw.defs.risk_classes.items()}
    ages = strata_of_persons(raw)
    born = raw.persons.set_index("person_id")["birth_date"]
    in_year = (red["dispensed_on"] >= YEAR_START) & (red["dispensed_on"] < YEAR_END)
    result = {}
    for rid, risk in raw.defs.risks.items():
        mine = red[pd.concat([classes[c] for c in risk.classes], axis=1).any(axis=1)]
        mine = mine.assign(cls=np.select([classes[c][mine.index] for c in risk.classes],
                                         risk.classes, default=""))
        if risk.kind == "large_start":
            population: dict[str, set] = {}
            flagged = set()
            for (person, _cls), rows in mine.groupby(["person_id", "cls"]):
                given = rows[rows["packs"] > 0]
                days = sorted(given["dispensed_on"].unique())
                first = [d for d in days if YEAR_START <= d < YEAR_END]
                if not first or any(first[0] - pd.Timedelta(days=365) <= d < first[0]
                                    for d in days):
                    continue
                on_day = given[given["dispensed_on"] == first[0]]
                gp = on_day[on_day["practice"].notna()].groupby("practice")["ddd"].sum()
                if gp.empty:
                    continue
                practice = sorted(gp.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
                population.setdefault(practice, set()).add(person)
                if round(on_day["ddd"].sum(), 9) >= risk.min_start_ddd:
                    flagged.add((practice, person))
            for practice in raw.practices:
                pop = population.get(practice, set())
                hits = sum((practice, p) in flagged for p in pop)
                result[(rid, practice)] = (hits, len(pop))
            continue
        attributed = mine[in_year[mine.index] & mine["practice"].notna()]
        net = attributed.groupby(["practice", "cls", "person_id"])["ddd"].sum()
        patients = net[net.round(9) > 0].reset_index()
        population = patients.groupby("practice")["person_id"].apply(set).to_dict()
        flagged = set()
        for person, rows in mine.groupby("person_id"):
            if risk.kind == "age_on_class":
                if person in ages.index and pd.notna(born.get(person)):
                    age = 2024 - born[person].year - int((born[person].month, born[person].day)
                                                          > (1, 1))
                    if age >= risk.min_age:
                        flagged.add(person)
                continue
            key = "atc_code" if risk.kind == "multiple_substances" else "cls"
            gap = risk.max_gap_days if risk.kind == "long_term_use" else 0
            spans = {k: merged_periods(r, gap) for k, r in rows.groupby(key)}
            if risk.kind == "long_term_use":
                if any(max(s + risk.min_days + 1, p0) < min(e, p1)
                       for periods in spans.values() for s, e in periods):
                    flagged.add(person)
                continue
            keys = sorted(spans)
            pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
            for a, b in pairs:
                for s1, e1 in spans[a]:
                    for s2, e2 in spans[b]:
                        s, e = max(s1, s2), min(e1, e2)
                        if e - s >= risk.min_overlap_days and s < p1 and e > p0:
                            flagged.add(person)
        for practice in raw.practices:
            pop = population.get(practice, set())
            result[(rid, practice)] = (len(pop & flagged), len(pop))
    return result


def test_risks_equal_pandas(session, raw: Raw) -> None:
    # Two antipsychotics for 90 days in a row never happen on Samsø: check that rule with a
    # one-week overlap instead (a copy of the definitions; the shipped ones stay as they are).
    defs = copy.copy(raw.defs)
    rule = defs.risks["antipsychotic_polypharmacy"]
    defs.risks = {**defs.risks, rule.id: rule.model_copy(update={"min_overlap_days": 7})}
    session = wb.connect(session.con, use_marts=False, definitions=defs)
    want = expected_risks(dataclasses.replace(raw, defs=defs))
    got = session.risks(None, "practice", "2024").to_pandas()
    got = {(r.risk, r.unit_id): (r.patients, r.population) for r in got.itertuples()}
    assert got == want
    one = raw.practices[0]
    alone = session.risks(None, "practice", "2024", units=one).to_pandas()
    assert {(r.risk, r.unit_id): (r.patients, r.population) for r in alone.itertuples()} == {
        k: v for k, v in want.items() if k[1] == one
    }
    # every risk is seen at least once on a real register
    assert all(sum(v[0] for (rid, _), v in want.items() if rid == risk) > 0
               for risk in defs.risks)
