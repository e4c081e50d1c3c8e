"""What was rendered, from what, and how to render exactly that page again.

``DIR/manifest.json`` holds one entry per page of the batch: theme, page, unit, parameters,
status, seconds, the files written, and the provenance that pins the page down — the data
fingerprint, the code version (package version and git commit), the ATC/DDD index version, the
disclosure settings and viewing profile — plus the command that regenerates it.

Each page folder also holds ``page.json``, its own entry, written *last* (after the notebook,
the HTML and the CSVs): it is the page's completion mark. A re-run skips a page whose
``page.json`` says ``ok`` for the same inputs digest (notebook, parameters, data fingerprint,
definitions, disclosure settings) while its files are all there, so a killed batch resumes
where it stopped. The manifest is rebuilt from the entries and written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shlex
import subprocess
from dataclasses import asdict
from functools import cache
from pathlib import Path

import workbench
from workbench.answers.local import code_digest
from workbench.data.reference import atc_ddd_index_version
from workbench.disclosure import DEFAULT_POLICY
from workbench.engine import Workbench
from workbench.engine.marts import data_fingerprint, definitions_digest
from workbench.paths import PROJECT_ROOT, shown
from workbench.profiles import Profile
from workbench.publish.batch import atomic
from workbench.publish.batch.plan import PageTask, Plan

MANIFEST = "manifest.json"
PAGE_ENTRY = "page.json"
KERNEL = "python3"


@cache
def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The checkout's commit, with ``+dirty`` when files differ from it; None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(session: Workbench, data: Path, profile: Profile) -> dict:
    """What every page of this batch was computed from (the same for all its pages)."""
    meta = {}
    try:
        meta = dict(session.con.raw_sql("SELECT key, value FROM metadata").fetchall())
    except Exception:  # a register without a metadata table: no fingerprint either
        meta = {}
    import papermill

    return {
        "data_fingerprint": data_fingerprint(session.con),
        "dataset": shown(data),
        "code_version": {
            "workbench": workbench.__version__,
            "git_commit": git_commit(),
            "answers_digest": code_digest(),
            "papermill": papermill.__version__,
            "python": platform.python_version(),
            "kernel": KERNEL,
        },
        "atc_ddd_index_version": {
            "data": meta.get("atc_ddd_index_version"),
            "reference": atc_ddd_index_version(),
        },
        "definitions_digest": definitions_digest(session.definitions),
        "disclosure": {**asdict(DEFAULT_POLICY), "publishing": True},
        "profile": profile.spec(),
    }


def inputs_digest(task: PageTask, notebook_sha256: str, prov: dict) -> str:
    """What decides a page's content: if none of it changed, the page needn't be rendered."""
    content = {
        "notebook": notebook_sha256,
        "parameters": {k: v for k, v in sorted(task.parameters.items()) if k != "data"},
        "data_fingerprint": prov["data_fingerprint"],
        "definitions": prov["definitions_digest"],
        "disclosure": prov["disclosure"],
        "profile": prov["profile"],
        "workbench": prov["code_version"]["workbench"],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def regenerate_command(task: PageTask, plan: Plan, notebooks: Path, interventions: Path,
                       profile: Profile) -> str:
    """The command that renders this page alone, through the same path (the dataset's answer
    store, then Papermill), into ``regenerated/``."""
    words = ["workbench", "render", "--theme", task.theme, "--area", plan.area,
             "--period", task.parameters["period"], "--pages", task.kind, "--units", task.unit,
             "--language", task.parameters.get("language", "da"), "--profile", profile.spec(),
             "--data", shown(task.parameters["data"]), "--out", "regenerated"]
    if notebooks.resolve() != (PROJECT_ROOT / "notebooks").resolve():
        words += ["--notebooks", shown(notebooks)]
    if interventions.resolve() != (PROJECT_ROOT / "parameters" / "interventions").resolve():
        words += ["--interventions", shown(interventions)]
    return shlex.join(words)


def page_folder(out: Path, task: PageTask) -> Path:
    return out.joinpath(*task.id.split("/"))


def read_entry(out: Path, task: PageTask) -> dict | None:
    """The page's completion mark, if a run wrote one (and it parses)."""
    path = page_folder(out, task) / PAGE_ENTRY
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def up_to_date(out: Path, task: PageTask, digest: str) -> dict | None:
    """The finished entry of this page if it needs no re-rendering, else None."""
    entry = read_entry(out, task)
    if not entry or entry.get("status") != "ok" or entry.get("inputs_digest") != digest:
        return None
    files = entry.get("files", {})
    paths = [files.get("notebook"), files.get("html"), *files.get("csv", [])]
    if not all(p and (out / p).is_file() for p in paths):
        return None
    return entry


def pending_entry(task: PageTask, digest: str) -> dict:
    return {"id": task.id, "theme": task.theme, "page": task.kind, "unit": task.unit,
            "group": task.group, "parameters": task.parameters, "status": "pending",
            "inputs_digest": digest}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_manifest(out: Path, plan: Plan, entries: dict[str, dict], prov: dict,
                   run: dict) -> dict:
    """``DIR/manifest.json``, atomically: the batch, then one entry per planned page."""
    pages = [entries[t.id] for t in plan.tasks]
    counts: dict[str, int] = {}
    for entry in pages:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    manifest = {
        "batch": {
            "themes": list(plan.themes),
            "area": plan.area,
            "period": plan.period,
            "pages": len(pages),
            "status": counts,
            "notes": plan.notes,
            "intervention_areas": {
                f"{theme}/{cluster}": {"groups": list(groups), "source": why}
                for (theme, cluster), (groups, why) in sorted(plan.areas.items())
            },
            "provenance": prov,
            "run": run,
        },
        "pages": pages,
    }
    atomic.write_text(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest
