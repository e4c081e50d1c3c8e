"""Redemptions as facts: each dispensing with its DDD, drug properties and attributed practice.

This is the one place that applies three rules of the contract:

* **DDD** of a redemption = packs × DDD per pack (a return has negative packs, so negative DDD);
* **attribution**: a redemption counts for the practice whose ydernummer is its prescriber, so
  ``practice_id`` is the prescriber's id when the prescriber is a GP of a known practice and null
  otherwise (non-GP prescribers count for no practice);
* **drug properties** come from ``parameters/`` (group, addictive by ATC; depot by product form),
  so editing the definitions changes every figure consistently.

Everything here is plain Ibis (prefix tests are ``startswith``), so it runs on any backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import AtcRule, Definitions
from workbench.engine.query import selection_kind

GP = "gp"
# A redemption whose prescriber says 'gp' but whose id is no known practice.
GP_UNKNOWN_PRACTICE = "gp_unknown_practice"
# The ``group`` value when no groups were asked: one selection of every redemption.
ALL_DRUGS = "all"


def _starts_with_any(column: ir.StringValue, prefixes: Sequence[str]) -> ir.BooleanValue:
    return ibis.or_(ibis.literal(False), *(column.startswith(p) for p in prefixes))


def matches_rule(atc_code: ir.StringValue, rule: AtcRule) -> ir.BooleanValue:
    """The Ibis form of :meth:`AtcRule.matches`: an include or legacy prefix, and no exclude."""
    included = _starts_with_any(atc_code, [*rule.atc_include, *rule.atc_legacy])
    return included & ~_starts_with_any(atc_code, rule.atc_exclude)


def classified_products(products: ir.Table, definitions: Definitions) -> ir.Table:
    """Products with the properties breakdowns use: ``drug`` (ATC), ``product_group``,
    ``addictive``, ``depot``, ``pack_size`` and ``ddd_per_pack``."""
    atc = products.atc_code
    group = ibis.cases(
        *((matches_rule(atc, rule), gid) for gid, rule in definitions.groups.items()),
        else_=ibis.null("string"),
    )
    return products.select(
        "product_id",
        "pack_size",
        "ddd_per_pack",
        drug=atc,
        product_group=group,
        addictive=matches_rule(atc, definitions.addictive),
        depot=products.form.isin(list(definitions.depot.forms)),
    )


def redemption_facts(
    redemptions: ir.Table,
    products: ir.Table,
    practices: ir.Table,
    definitions: Definitions,
) -> ir.Table:
    """One row per redemption with ``ddd``, drug properties (``drug`` is the ATC code,
    ``product`` the product id), ``practice_id`` and ``prescriber``.

    ``practice_id`` is the practice the redemption counts for (null: none); ``prescriber`` labels
    it: ``'gp'`` when attributed, else the prescriber type (``'specialist'``, ``'hospital'``,
    ``'other'``) or ``'gp_unknown_practice'``.
    """
    known = practices.select(known_practice="practice_id")
    product = classified_products(products, definitions)
    joined = redemptions.join(product, "product_id").left_join(
        known, redemptions.prescriber_id == known.known_practice
    )
    attributed = (joined.prescriber_type == GP) & joined.known_practice.notnull()
    label = ibis.cases(
        (attributed, GP),
        (joined.prescriber_type == GP, GP_UNKNOWN_PRACTICE),
        else_=joined.prescriber_type.fill_null("other"),
    )
    return joined.select(
        "person_id",
        "dispensed_on",
        "drug",
        "product_group",
        "addictive",
        "depot",
        "pack_size",
        "packs",
        product=joined.product_id,
        ddd=joined.packs * joined.ddd_per_pack,
        practice_id=ibis.ifelse(attributed, joined.prescriber_id, ibis.null("string")),
        prescriber=label,
    )


def select_groups(
    facts: ir.Table, groups: Sequence[str] | None, definitions: Definitions
) -> ir.Table:
    """The facts of each asked selection, with its name in ``group``.

    A redemption in two selections (``"opioids"`` and ``"N02AA"``) appears once in each, so
    every selection is counted on its own. ``None`` selects every redemption as ``'all'``.
    """
    if groups is None:
        return facts.mutate(group=ibis.literal(ALL_DRUGS))
    parts = []
    for item in groups:
        kind = selection_kind(item, definitions)
        column = {"group": facts.product_group, "atc": facts.drug, "product": facts.product}[kind]
        condition = column == item if kind != "atc" else column.startswith(item)
        parts.append(facts.filter(condition).mutate(group=ibis.literal(item)))
    return ibis.union(*parts) if len(parts) > 1 else parts[0]
