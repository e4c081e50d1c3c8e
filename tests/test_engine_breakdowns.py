"""Breakdowns and filters: started/continued, consumption group, age on the first day, sex, share,
and the drug properties. Each case is worked out by hand in its comments."""

from __future__ import annotations

import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, ZOPICLONE, one, rows, world

TRAMADOL_1DDD = "100003"  # N02AX02, 1 DDD a pack: lets a test redeem exactly 89, 90, 365, 366


def test_started_means_no_redemption_in_the_365_days_before_the_first_in_the_period() -> None:
    reg = world()
    reg.product(TRAMADOL_1DDD, "N02AX02", "tablet", 10, 1.0)
    for pid in ("a", "b", "c", "d", "e", "f"):
        reg.person(pid).listing(pid, "000001", "2020-01-01")
    # a: previous 2023-01-01, then 2024-01-01: exactly 365 days later (2023 is no leap year).
    reg.redeem("a", "2023-01-01").redeem("a", "2024-01-01")
    # b: previous 2023-01-01, then 2024-01-02: 366 days later.
    reg.redeem("b", "2023-01-01").redeem("b", "2024-01-02")
    # c: judged on the first redemption in the period (5 Jan, 2 years after the last), not
    # on the later one (20 Jan, which has 5 Jan before it).
    reg.redeem("c", "2022-01-01").redeem("c", "2024-01-05").redeem("c", "2024-01-20")
    # d: the redemption before was of another group (an NSAID): new to opioids.
    reg.redeem("d", "2023-12-01", IBUPROFEN).redeem("d", "2024-01-10")
    # e: the redemption before was from a hospital: any prescriber counts, so continued.
    reg.redeem("e", "2023-12-01", prescriber=None, prescriber_type="hospital")
    reg.redeem("e", "2024-01-10")
    # f: a return in the year before is no redemption (the purchase was 405 days before).
    reg.redeem("f", "2022-12-01").redeem("f", "2023-06-01", packs=-1)
    reg.redeem("f", "2024-01-10", TRAMADOL_1DDD)  # another opioid product: same group
    session = reg.session()
    table = session.measures("opioids", "practice", "2024-01", units="000001", by="started")
    assert rows(table).set_index("started").patients.to_dict() == {"continued": 2, "started": 4}
    # a and e continued; b, c, d, f started: check who is who with the started filter.
    started = session.measures(
        "opioids", "practice", "2024-01", units="000001", filters={"started": "started"}
    )
    assert one(started)["patients"] == 4


def test_consumption_group_boundaries_at_90_and_365_ddd() -> None:
    reg = world()
    reg.product(TRAMADOL_1DDD, "N02AX02", "tablet", 10, 1.0)
    # Each person's DDD in the 365 days ending 31 Dec 2024 (2 Jan - 31 Dec 2024), all redeemed
    # in December so everyone is a patient of 2024-12.
    amounts = {"u89": 89, "m90": 90, "m365": 365, "o366": 366}
    for pid, ddd in amounts.items():
        reg.person(pid).listing(pid, "000001", "2020-01-01")
        reg.redeem(pid, "2024-12-10", TRAMADOL_1DDD, packs=ddd)
    # w1: 100 DDD on 1 Jan 2024 are outside the window (366 days before the end): 10 DDD.
    reg.person("w1").listing("w1", "000001", "2020-01-01")
    reg.redeem("w1", "2024-01-01", TRAMADOL_1DDD, packs=100).redeem("w1", "2024-12-10")
    # w2: 100 DDD on 2 Jan 2024 are inside: 110 DDD.
    reg.person("w2").listing("w2", "000001", "2020-01-01")
    reg.redeem("w2", "2024-01-02", TRAMADOL_1DDD, packs=100).redeem("w2", "2024-12-10")
    # h: 100 DDD from a hospital count too (any prescriber): 110 DDD.
    reg.person("h").listing("h", "000001", "2020-01-01")
    reg.redeem(
        "h", "2024-06-01", TRAMADOL_1DDD, packs=100, prescriber=None, prescriber_type="hospital"
    )
    reg.redeem("h", "2024-12-10")
    session = reg.session()

    table = session.measures(
        "opioids", "practice", "2024-12", units="000001", by="consumption_group"
    )
    # under 3 months: u89 (89), w1 (10); 3 months to 1 year: m90 (90), m365 (365),
    # w2 (110), h (110); over 1 year: o366 (366).
    assert rows(table).set_index("consumption_group").patients.to_dict() == {
        "3 months to 1 year": 4,
        "over 1 year": 1,
        "under 3 months": 2,
    }


def test_consumption_window_excludes_1_january_of_a_leap_year() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    # 2024 has 366 days and the window 365: a patient whose only redemption is on 1 January
    # (here 10 packs = 100 DDD) redeemed nothing in the window, so is under 3 months.
    reg.redeem("p1", "2024-01-01", MORPHINE, packs=10)
    table = reg.session().measures(
        "opioids", "practice", "2024", units="000001", by="consumption_group"
    )
    assert one(table)["consumption_group"] == "under 3 months"


def test_share_of_patients_in_a_category() -> None:
    reg = world()
    for pid in ("a", "b", "c", "d"):
        reg.person(pid).listing(pid, "000001", "2020-01-01")
    reg.redeem("a", "2024-06-01", OXYCODONE_DEPOT, packs=13)  # 390 DDD: over 1 year
    for pid in ("b", "c", "d"):
        reg.redeem(pid, "2024-06-01", MORPHINE)  # 10 DDD: under 3 months
    table = reg.session().measures(
        "opioids", "practice", "2024", units="000001", by="consumption_group"
    )
    assert rows(table).set_index("consumption_group").share.to_dict() == {
        "over 1 year": 0.25,  # 1 of 4 opioid patients
        "under 3 months": 0.75,
    }


def test_share_within_keeps_a_breakdown_in_the_denominator() -> None:
    reg = world()
    reg.person("w1", sex="F").person("w2", sex="F").person("m1", sex="M")
    for pid in ("w1", "w2", "m1"):
        reg.listing(pid, "000001", "2020-01-01")
    reg.redeem("w1", "2024-03-01", OXYCODONE_DEPOT)  # depot
    reg.redeem("w2", "2024-03-01", MORPHINE)
    reg.redeem("m1", "2024-03-01", OXYCODONE_DEPOT)  # depot
    session = reg.session()
    args = dict(units="000001", by=["sex", "depot"], measures="share")
    of_all = rows(session.measures("opioids", "practice", "2024", **args))
    of_sex = rows(session.measures("opioids", "practice", "2024", share_within="sex", **args))
    women_depot = (of_all.sex == "F") & of_all.depot
    assert of_all[women_depot].share.item() == pytest.approx(1 / 3)  # 1 of 3 patients
    assert of_sex[(of_sex.sex == "F") & of_sex.depot].share.item() == 0.5  # 1 of 2 women


def test_age_is_on_the_first_day_of_the_period() -> None:
    reg = world()
    # Turns 65 on 15 June 2024: 64 on 1 January 2024, 65 on 1 August 2024.
    reg.person("p1", born="1959-06-15").listing("p1", "000001", "2020-01-01")
    # Turns 18 on the first day of 2024: 18 for all of 2024.
    reg.person("p2", born="2006-01-01").listing("p2", "000001", "2020-01-01")
    reg.redeem("p1", "2024-08-01", MORPHINE).redeem("p2", "2024-08-01", MORPHINE)
    session = reg.session()
    year = session.measures("opioids", "practice", "2024", units="000001", by="age")
    assert rows(year).set_index("age").patients.to_dict() == {18: 1, 64: 1}
    bands = session.measures(
        "opioids", "practice", ["2024", "2024-08"], units="000001", by="age_group"
    )
    got = rows(bands)[["period", "age_group", "patients", "listed"]].to_dict("records")
    assert got == [
        {"period": "2024", "age_group": "18-24", "patients": 1, "listed": 1.0},
        {"period": "2024", "age_group": "45-64", "patients": 1, "listed": 1.0},
        {"period": "2024-08", "age_group": "18-24", "patients": 1, "listed": 1.0},
        {"period": "2024-08", "age_group": "65-79", "patients": 1, "listed": 1.0},
    ]


def test_breakdown_by_sex_splits_the_listed_persons_too() -> None:
    reg = world()
    reg.person("w", sex="F").person("m1", sex="M").person("m2", sex="M")
    for pid in ("w", "m1", "m2"):
        reg.listing(pid, "000001", "2020-01-01")
    reg.redeem("w", "2024-03-01", MORPHINE)  # one woman of one listed
    table = reg.session().measures("opioids", "practice", "2024Q1", units="000001", by="sex")
    got = rows(table).set_index("sex")
    assert got.listed.to_dict() == {"F": 1.0, "M": 2.0}
    assert got.patients_per_1000.to_dict() == {"F": 1000.0, "M": 0.0}


def test_person_filters_restrict_listed_and_drug_filters_do_not() -> None:
    reg = world()
    reg.person("w", sex="F").person("m", sex="M")
    reg.listing("w", "000001", "2020-01-01").listing("m", "000001", "2020-01-01")
    reg.redeem("w", "2024-03-01", OXYCODONE_DEPOT)  # depot, 30 DDD
    reg.redeem("m", "2024-03-01", MORPHINE)  # not depot, 10 DDD
    session = reg.session()
    women = one(
        session.measures("opioids", "practice", "2024", units="000001", filters={"sex": "F"})
    )
    assert (women["patients"], women["listed"], women["ddd"]) == (1, 1.0, 30)
    depot = one(
        session.measures("opioids", "practice", "2024", units="000001", filters={"depot": True})
    )
    assert (depot["patients"], depot["listed"], depot["ddd"]) == (1, 2.0, 30)


def test_drug_product_pack_size_and_addictive_breakdowns() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-03-01", MORPHINE, packs=2)  # N02AA01, pack of 20, addictive
    reg.redeem("p1", "2024-03-02", ZOPICLONE)  # N05CF01, pack of 30, addictive (Z-drug)
    reg.redeem("p1", "2024-03-03", IBUPROFEN)  # M01AE01, pack of 50, not addictive
    session = reg.session()

    def ddd_by(dim: str) -> dict:
        table = session.measures(None, "nation", "2024", by=dim, measures="ddd")
        return rows(table).set_index(dim).ddd.to_dict()

    assert ddd_by("drug") == {"M01AE01": 25, "N02AA01": 20, "N05CF01": 30}
    assert ddd_by("product") == {MORPHINE: 20, IBUPROFEN: 25, ZOPICLONE: 30}
    assert ddd_by("pack_size") == {20: 20, 30: 30, 50: 25}
    assert ddd_by("addictive") == {False: 25, True: 50}


def test_bad_questions_say_what_is_wrong() -> None:
    reg = world()
    session = reg.session()
    with pytest.raises(ValueError, match="unknown level"):
        session.measures("opioids", "county", "2024")
    with pytest.raises(ValueError, match="not a drug group"):
        session.measures("opiods", "nation", "2024")
    with pytest.raises(ValueError, match="unknown dimension"):
        session.measures("opioids", "nation", "2024", by="colour")
    with pytest.raises(ValueError, match="unknown measure"):
        session.measures("opioids", "nation", "2024", measures="mean")
    with pytest.raises(ValueError, match="outside"):
        session.measures("opioids", "nation", "2024", filters={"sex": "X"})
    with pytest.raises(ValueError, match="not a period label"):
        session.measures("opioids", "nation", "2024Q5")
    with pytest.raises(ValueError, match="which period"):
        session.measures("opioids", "nation")
