"""The audit log: who was shown what, one line per render run and per served page view.

Each line is a JSON object: ``time`` (UTC, ISO 8601), ``event`` (``render``, ``view``,
``filter``, ``refused``), ``profile`` (``public``, ``practice:ID``, ``analyst``), ``page``,
``unit`` and ``parameters`` (the page's choices, or what a refused request asked for), plus a
few event details. It never holds a person key: a value that looks like one (or like a CPR
number) is replaced before writing, and values are cut to a short length, so a forged URL can't
smuggle data into the log either.

The log is a file (``$WORKBENCH_AUDIT_LOG``, set by ``workbench serve`` and ``workbench render``
for every process they start; else ``audit.log`` in the dataset folder). Lines are appended with
one ``write`` under an exclusive lock, so the Voilà server, its kernels and the render workers
can write to one log at once without interleaving.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from workbench.paths import default_data_dir

AUDIT_ENV = "WORKBENCH_AUDIT_LOG"
EVENTS = ("render", "view", "filter", "refused")
MAX_VALUE = 80
REMOVED = "[removed]"
# Anything like a person key (P + 9 digits, any case) or a CPR number (10 digits, dash optional),
# wherever it stands: inside a word, beside letters or other digits. The log is read by people,
# not parsed, so a false alarm costs a value and a miss costs a person.
PERSON_LIKE = re.compile(r"[Pp]\d{9}|\d{6}-?\d{4}")


def audit_path() -> Path:
    """Where this process appends its audit lines."""
    configured = os.environ.get(AUDIT_ENV, "").strip()
    return Path(configured) if configured else default_data_dir() / "audit.log"


def clean(value: object) -> object:
    """A value fit for the log: short, and never anything that looks like a person key.

    >>> clean("K025"), clean("p123456789x"), clean("id0102031234"), clean("x" * 100)[-3:]
    ('K025', '[removed]', '[removed]', '...')
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return REMOVED if PERSON_LIKE.search(str(value)) else value
    if isinstance(value, Mapping):
        return {str(clean(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    text = str(value)
    if PERSON_LIKE.search(text):
        return REMOVED
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def record(event: str, *, profile: str, page: str = "", unit: str = "",
           parameters: Mapping[str, object] | None = None, path: Path | None = None,
           **details: object) -> dict:
    """Append one audit line and return it (as written)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; use one of {list(EVENTS)}")
    line = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "profile": clean(profile),
        "page": clean(page),
        "unit": clean(unit),
        "parameters": clean(dict(parameters or {})),
        **{str(k): clean(v) for k, v in details.items()},
    }
    text = (json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    target = path or audit_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, text)
    finally:
        os.close(fd)  # closing releases the lock
    return line


def read(path: Path | None = None) -> list[dict]:
    """Every line of an audit log (for tests and for whoever reviews the log)."""
    target = path or audit_path()
    if not target.exists():
        return []
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line]
