# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
data_dir: str = ""  # dataset folder, default: $WORKBENCH_DATA or the project's data/
practice: str = ""  # a practice id (6 digits), default: the first practice
group: str = "opioids"  # a drug group id: opioids, sedatives, antidepressants, ...
year: str = ""  # a reporting year such as "2024", default: the newest complete year in the data

# %% [markdown]
# # Explore: a tour of the workbench
#
# Every kind of question the workbench answers, a few lines each, with the public API
# (`import workbench as wb`). Copy a cell, change a group, a level, a period or a filter, and you
# have your own indicator. Everything `session.…` returns is a *lazy* Ibis table: nothing runs
# until `.to_pandas()` (or a plot) asks for rows, so you can keep filtering and joining it first.
#
# The definitions behind every figure (attribution, listed persons, patients, consumption
# groups, new users) are in `DOMAIN.md`; drug groups, flags and age bands are data in
# `parameters/`. The notebook picks its units from the data, so it runs on any dataset.

# %%
# ruff: noqa: E402 (a notebook imports after its parameters cell)
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

import workbench as wb

session = wb.connect(wb.Dataset.at(data_dir or None).database)
registers = session.registers  # the six register tables, as Ibis tables

# Units and periods come from the data: the first practice, its cluster and region, and the
# newest year whose December has redemptions.
practice = practice or registers.practices.practice_id.min().execute()
context = dict(session.context_of(practice, "practice"))
cluster, region = context.get("cluster"), context["region"]
last_day = pd.Timestamp(registers.redemptions.dispensed_on.max().execute())
year = year or str(last_day.year if last_day.month == 12 else last_day.year - 1)
print(f"{session}: practice {practice}, cluster {cluster}, region {region}, year {year}")

# %% [markdown]
# ## Measures of one group at each level
# One row per unit: patients, the share, listed persons (*sikrede*, the mean list size), DDD,
# and the rates per 1,000 listed (and per day: the WHO "DID").

# %%
session.measures(group, "nation", year).to_pandas()

# %%
session.measures(group, "region", year).to_pandas()

# %%
session.measures(group, "cluster", year, units=cluster).to_pandas() if cluster else None

# %%
session.measures(group, "practice", year, measures=["patients", "patients_per_1000"]).to_pandas()

# %% [markdown]
# ## Periods: months, quarters, rolling 12 months, and series
# A period is `2024` (year), `2024Q1` (quarter), `2024-03` (month) or `R12-2024-06` (the 12
# months to June 2024). `FIRST..LAST` is a series; a list mixes kinds.

# %%
months = session.measures(group, "nation", f"{year}-01..{year}-12", measures="ddd_per_1000")
months.order_by("period").to_pandas()  # still Ibis until .to_pandas(): sort, filter, join

# %%
session.measures(
    group, "practice", f"{year}Q1..{year}Q4", units=practice, measures="patients_per_1000"
).order_by("period").to_pandas()

# %%
session.measures(
    group, "nation", [f"R12-{year}-06", f"R12-{year}-12"], measures="ddd_per_1000_per_day"
).to_pandas()

# %% [markdown]
# ## Several groups at once, and every group of a theme

# %%
session.measures(["opioids", "nsaids", "paracetamol"], "nation", year).to_pandas()

# %%
psychotropics = session.definitions.groups_of("psychotropics")
session.measures(psychotropics, "region", year, measures="patients_per_1000").to_pandas()

# %% [markdown]
# ## A drug (an ATC prefix) and a product (a varenummer)
# Anything that is not a group id is read as an ATC prefix (`N02AA`) or a 6-digit product id.
# Here: the group's most used substance and product.

# %%
by_drug = session.measures(group, "nation", year, by="drug", measures="patients").to_pandas()
top_drug = by_drug.sort_values("patients", ascending=False).drug.iloc[0]
by_product = session.measures(group, "nation", year, by="product", measures="ddd").to_pandas()
top_product = by_product.sort_values("ddd", ascending=False)["product"].iloc[0]
session.measures([top_drug[:5], top_product], "nation", year).to_pandas()

# %% [markdown]
# ## Breakdowns (`by=`) and filters (`filters=`) on every dimension
# Redemption dimensions (`drug`, `product`, `pack_size`, `addictive`, `depot`) split the
# numerator; person dimensions (`sex`, `age`, `age_group`, age on the period's first day) split
# the listed persons too; patient dimensions (`consumption_group`, `started`) describe a
# person's use of the whole group.

# %%
for dimension in ["consumption_group", "started", "sex", "age_group", "addictive", "depot"]:
    display(
        session.measures(
            group, "nation", year, by=dimension, measures=["patients", "patients_per_1000"]
        ).to_pandas()
    )

# %%
session.measures(group, "nation", year, by="pack_size", measures=["patients", "ddd"]).to_pandas()

# %%
ages = session.measures(group, "nation", year, by="age", measures="patients_per_1000")
ages.to_pandas().sort_values("age").head(10)

# %%
session.measures(group, "practice", year, units=practice, by=["sex", "age_group"]).to_pandas()

# %%
older_women = {"sex": "F", "age_group": ["65-79", "80+"]}
session.measures(group, "practice", year, filters=older_women).to_pandas()

# %%
session.measures(
    group, "cluster", year, filters={"depot": True, "started": "started"}, measures="patients"
).to_pandas()

# %%
session.measures(
    group, "nation", year, filters={"drug": top_drug, "addictive": [True, False]}
).to_pandas()

# %% [markdown]
# ## Share of patients
# The share of the group's patients in each category: e.g. how many of the opioid users are
# long-term users (over 1 year of daily doses). `share_within` keeps a breakdown in the
# denominator: the share of women's patients, not of all patients.

# %%
session.measures(
    group, "practice", year, by="consumption_group", measures=["patients", "share"]
).to_pandas()

# %%
session.measures(
    group,
    "nation",
    year,
    by=["sex", "consumption_group"],
    share_within="sex",
    measures=["patients", "share"],
).to_pandas()

# %% [markdown]
# ## The comparison frame: a practice beside its cluster, region and nation

# %%
compared = session.compare(practice, "practice", group, year)
compared.to_pandas()

# %%
session.compare(
    practice, "practice", group, year, by="started", measures=["patients", "share"]
).to_pandas()

# %% [markdown]
# ## Peers: percentile ranks and deciles
# A unit's national percentile (0 lowest, 100 highest) among the units of its level, and the
# 10th…90th percentiles OpenPrescribing draws as deciles.

# %%
ranks = session.percentiles("ddd_per_1000", "practice", groups=group, periods=year)
ranks.order_by("percentile").to_pandas()

# %%
quarters = f"{year}Q1..{year}Q4"
deciles = session.deciles("ddd_per_1000", "practice", groups=group, periods=quarters)
deciles.order_by(["period", "decile"]).to_pandas()

# %% [markdown]
# ## One plot: the practice against the practices' deciles, quarter by quarter

# %%
lines = deciles.to_pandas().pivot(index="period", columns="decile", values="ddd_per_1000")
mine = session.measures(group, "practice", quarters, units=practice, measures="ddd_per_1000")
mine = mine.to_pandas().set_index("period").ddd_per_1000.sort_index()

fig, ax = plt.subplots(figsize=(7, 3.5))
for decile in lines.columns:
    ax.plot(lines.index, lines[decile], color="tab:blue", linestyle=":" if decile != 50 else "--")
ax.plot(mine.index, mine.values, color="tab:red", marker="o", label=f"practice {practice}")
ax.set_ylabel("DDD per 1,000 listed")
ax.set_title(f"{group}: practice {practice} and the deciles of all practices")
ax.legend()
plt.show()
