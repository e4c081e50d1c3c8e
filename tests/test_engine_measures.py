"""The measures on tiny registers, one rule of the contract (DOMAIN.md "Exact definitions") each.

Fixture facts used throughout (see engine_fixtures.world): MORPHINE has 10 DDD a pack,
OXYCODONE_DEPOT 30, IBUPROFEN 25 (an NSAID); practices 000001 and 000002 make cluster K1,
000003 is cluster K2 (same region 1081), 000004 is cluster K3 in region 1084.
"""

from __future__ import annotations

import math

import ibis.expr.types as ir
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, one, rows, world


def test_ddd_is_packs_times_ddd_per_pack_and_rates_are_ratios_of_sums() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.person("p2").listing("p2", "000001", "2020-01-01")
    reg.redeem("p1", "2024-04-03", MORPHINE, packs=3)  # 3 x 10 = 30 DDD
    reg.redeem("p1", "2024-04-20", OXYCODONE_DEPOT, packs=2)  # 2 x 30 = 60 DDD
    got = one(reg.session().measures("opioids", "practice", "2024-04"), unit_id="000001")
    # 1 patient, 90 DDD, 2 listed, April has 30 days.
    assert got["patients"] == 1
    assert got["ddd"] == 90
    assert got["listed"] == 2
    assert got["patients_per_1000"] == 1 / 2 * 1000  # 500
    assert got["ddd_per_1000"] == 90 / 2 * 1000  # 45 000
    assert got["ddd_per_1000_per_day"] == pytest.approx(90 / 2 * 1000 / 30)  # 1 500


def test_a_return_that_nets_a_person_to_zero_makes_no_patient() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.person("p2").listing("p2", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE, packs=2)  # +20 DDD
    reg.redeem("p1", "2024-02-01", MORPHINE, packs=-2)  # -20 DDD: returned
    reg.redeem("p2", "2024-03-01", MORPHINE, packs=1)  # +10 DDD
    table = reg.session().measures("opioids", "practice", ["2024Q1", "2024-01", "2024-02"])
    # Q1: p1 nets 0 (no patient), p2 nets 10: 1 patient, 10 DDD.
    q1 = one(table, unit_id="000001", period="2024Q1")
    assert (q1["patients"], q1["ddd"]) == (1, 10)
    # January alone: p1 has +20: a patient.
    jan = one(table, unit_id="000001", period="2024-01")
    assert (jan["patients"], jan["ddd"]) == (1, 20)
    # February alone: p1 has only the return, -20 DDD: no patient, negative DDD.
    feb = one(table, unit_id="000001", period="2024-02")
    assert (feb["patients"], feb["ddd"]) == (0, -20)


def test_a_person_listed_for_half_the_period_counts_half() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2024-04-16")  # 16-30 April: 15 of 30 days
    reg.person("p2").listing("p2", "000001", "2020-01-01")  # all 30 days
    reg.redeem("p1", "2024-04-20", MORPHINE, packs=3)  # 30 DDD
    got = one(reg.session().measures("opioids", "practice", "2024-04"), unit_id="000001")
    assert got["listed"] == 1.5  # (15 + 30) / 30
    assert got["patients_per_1000"] == pytest.approx(1 / 1.5 * 1000)  # 666.7
    assert got["ddd_per_1000_per_day"] == pytest.approx(30 / 1.5 * 1000 / 30)  # 666.7


def test_a_person_changing_practice_mid_period_is_split_by_person_days() -> None:
    reg = world()
    # Listed with 000001 on 1-10 January (end is exclusive), then with 000002 from the 11th.
    reg.person("p1").listing("p1", "000001", "2023-06-01", "2024-01-11")
    reg.listing("p1", "000002", "2024-01-11")
    session = reg.session()
    practices = session.measures(None, "practice", "2024-01", measures="listed")
    assert one(practices, unit_id="000001")["listed"] == pytest.approx(10 / 31)
    assert one(practices, unit_id="000002")["listed"] == pytest.approx(21 / 31)
    # Both practices are in cluster K1: the person is there all 31 days, so exactly 1.
    clusters = session.measures(None, "cluster", "2024-01", measures="listed")
    assert one(clusters, unit_id="K1")["listed"] == pytest.approx(1.0)


def test_a_unit_without_redemptions_shows_zero_not_missing() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.person("p3").listing("p3", "000003", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE)
    table = reg.session().measures("opioids", "practice", "2024-01")
    assert sorted(rows(table).unit_id) == ["000001", "000002", "000003", "000004"]
    quiet = one(table, unit_id="000003")  # one listed person, no redemptions
    assert (quiet["patients"], quiet["ddd"], quiet["listed"]) == (0, 0, 1)
    assert quiet["patients_per_1000"] == 0
    # 000004 has nobody listed: 0 patients, and no rate (nothing to divide by).
    empty = one(table, unit_id="000004")
    assert (empty["patients"], empty["listed"]) == (0, 0)
    assert math.isnan(empty["patients_per_1000"])


def test_attribution_is_by_prescriber_not_by_listing() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE, prescriber="000003")  # a GP of another practice
    table = reg.session().measures("opioids", "practice", "2024-01", measures=["patients"])
    assert one(table, unit_id="000001")["patients"] == 0
    assert one(table, unit_id="000003")["patients"] == 1


def test_patients_are_counted_once_at_every_grain_never_summed() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE, prescriber="000001")  # 10 DDD
    reg.redeem("p1", "2024-02-10", MORPHINE, packs=2, prescriber="000002")  # 20 DDD
    reg.redeem("p1", "2024-02-11", IBUPROFEN, prescriber="000001")  # 25 DDD NSAID
    session = reg.session()
    practice = session.measures("opioids", "practice", "2024Q1", measures=["patients", "ddd"])
    assert one(practice, unit_id="000001")["patients"] == 1
    assert one(practice, unit_id="000002")["patients"] == 1
    # One person in two practices of K1 is one patient of K1 (not 1 + 1); DDD do add up.
    cluster = one(session.measures("opioids", "cluster", "2024Q1"), unit_id="K1")
    assert (cluster["patients"], cluster["ddd"]) == (1, 30)
    # Across periods: a patient in January and in February is one patient of Q1.
    months = session.measures("opioids", "cluster", "2024-01..2024-03", measures="patients")
    assert rows(months, unit_id="K1").patients.tolist() == [1, 1, 0]
    # Across groups: one patient of opioids, one of NSAIDs, one of both together.
    both = session.measures(None, "cluster", "2024Q1", measures=["patients", "ddd"])
    assert (one(both, unit_id="K1")["patients"], one(both, unit_id="K1")["ddd"]) == (1, 55)
    by_group = session.measures(None, "cluster", "2024Q1", by="group", measures="patients")
    assert rows(by_group, unit_id="K1").set_index("group").patients.to_dict() == {
        "sedatives": 0,
        "antipsychotics": 0,
        "stimulants": 0,
        "antidepressants": 0,
        "opioids": 1,
        "paracetamol": 0,
        "nsaids": 1,
        "gabapentinoids": 0,
    }


def test_net_ddd_is_recomputed_at_the_grain_asked() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE, packs=1, prescriber="000001")  # +10 at 000001
    reg.redeem("p1", "2024-01-20", MORPHINE, packs=-1, prescriber="000002")  # -10 at 000002
    session = reg.session()
    practice = session.measures("opioids", "practice", "2024-01", measures="patients")
    assert one(practice, unit_id="000001")["patients"] == 1  # +10 there
    assert one(practice, unit_id="000002")["patients"] == 0  # -10 there
    # In cluster K1 the person nets 0 DDD: no patient of the cluster.
    cluster = session.measures("opioids", "cluster", "2024-01", measures=["patients", "ddd"])
    assert (one(cluster, unit_id="K1")["patients"], one(cluster, unit_id="K1")["ddd"]) == (0, 0)


def test_levels_sum_their_practices() -> None:
    reg = world()
    for pid, practice in [("p1", "000001"), ("p2", "000002"), ("p3", "000003"), ("p4", "000004")]:
        reg.person(pid).listing(pid, practice, "2020-01-01")
        reg.redeem(pid, "2024-01-10", MORPHINE, prescriber=practice)
    session = reg.session()

    def patients(level: str) -> dict:
        table = session.measures("opioids", level, "2024-01", measures="patients")
        return rows(table).set_index("unit_id").patients.to_dict()

    assert patients("cluster") == {"K1": 2, "K2": 1, "K3": 1}
    assert patients("municipality") == {"851": 2, "860": 1, "101": 1}
    assert patients("region") == {"1081": 3, "1084": 1}
    assert patients("nation") == {"DK": 4}


def test_non_gp_prescribers_count_for_no_practice_and_are_shown_labelled_at_nation() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.person("p2").listing("p2", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-05", MORPHINE, prescriber="000001")  # GP: 10 DDD
    reg.redeem("p1", "2024-01-06", MORPHINE, packs=2, prescriber=None, prescriber_type="hospital")
    # A specialist whose id happens to equal a practice id is still not that practice.
    reg.redeem("p2", "2024-01-07", MORPHINE, prescriber="000001", prescriber_type="specialist")
    # A 'gp' prescriber whose id is no known practice counts for no practice either.
    reg.redeem("p2", "2024-01-08", MORPHINE, prescriber="999999", prescriber_type="gp")
    session = reg.session()
    practice = session.measures("opioids", "practice", "2024-01", measures=["patients", "ddd"])
    assert (
        one(practice, unit_id="000001")["patients"],
        one(practice, unit_id="000001")["ddd"],
    ) == (
        1,
        10,
    )
    # The nation is the sum of its practices: GP figures only, by default.
    nation = one(session.measures("opioids", "nation", "2024-01", measures=["patients", "ddd"]))
    assert (nation["patients"], nation["ddd"]) == (1, 10)
    # Asked for, the non-GP redemptions appear beside them, labelled, over the same listed.
    shown = session.measures("opioids", "nation", "2024-01", non_gp=True)
    table = rows(shown).set_index("prescriber")
    assert table.patients.to_dict() == {
        "gp": 1,
        "gp_unknown_practice": 1,
        "hospital": 1,
        "specialist": 1,
    }
    assert table.ddd.to_dict() == {
        "gp": 10,
        "gp_unknown_practice": 10,
        "hospital": 20,
        "specialist": 10,
    }
    assert set(table.listed) == {2.0}
    with pytest.raises(ValueError, match="nation"):
        session.measures("opioids", "practice", "2024-01", non_gp=True)


def test_result_is_lazy_with_columns_in_contract_order() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    table = reg.session().measures(
        ["opioids", "nsaids"], "practice", "2024", by=["sex", "depot"], measures=["ddd", "patients"]
    )
    assert isinstance(table, ir.Table)
    assert table.columns == (
        "level",
        "unit_id",
        "period",
        "group",
        "sex",
        "depot",
        "ddd",
        "patients",
    )
    # No groups: no group column.
    assert "group" not in reg.session().measures(None, "nation", "2024").columns


def test_units_restricts_to_the_units_asked() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE)
    table = reg.session().measures("opioids", "practice", "2024-01", units=["000001", "000003"])
    assert rows(table).unit_id.tolist() == ["000001", "000003"]
    assert rows(table).patients.tolist() == [1, 0]


def test_selections_by_group_atc_prefix_and_product_id() -> None:
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2024-01-10", MORPHINE)  # N02AA01, 10 DDD
    reg.redeem("p1", "2024-01-11", OXYCODONE_DEPOT)  # N02AA05, 30 DDD
    reg.redeem("p1", "2024-01-12", IBUPROFEN)  # M01AE01, 25 DDD
    table = reg.session().measures(
        ["opioids", "N02AA05", MORPHINE, "M01"], "nation", "2024-01", measures="ddd"
    )
    assert rows(table).set_index("group").ddd.to_dict() == {
        "opioids": 40,
        "N02AA05": 30,
        MORPHINE: 10,
        "M01": 25,
    }
