# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
theme: str = "psychotropics"  # Theme: psychotropics or analgesics
unit: str = ""  # Practice id (ydernummer, 6 digits); empty: the data's first practice
period: str = ""  # Period: 2024, 2024Q1 or R12-2025-06; empty: the newest complete year
group: str = ""  # Drug group of the theme (e.g. opioids); empty: the first group
drug: str = ""  # ATC code of one drug in the group (e.g. N02AX02); empty: the whole group
measure: str = "patients_per_1000"  # or ddd_per_1000_per_day, ddd_per_1000, patients
breakdown: str = "consumption_group"  # or started/sex/age_group/depot/addictive/pack_size/product
language: str = "da"  # da (Danish) or en (English)
data: str = ""  # Dataset folder; empty: $WORKBENCH_DATA or the project's data/

# %%
import workbench.pages  # noqa: E402  (after the parameters cell, by design)

view = workbench.pages.open_page(
    "practice_insight", theme=theme, unit=unit, period=period, group=group, drug=drug,
    measure=measure, breakdown=breakdown, language=language, data=data,
)
view.header()
view.controls()

# %%
view.key_figures()

# %%
view.section("groups")

# %%
view.section("ranking")

# %%
view.section("trend")

# %%
view.section("risks")
