"""Who may see what: the viewing profile a dashboard server or a batch render runs under.

Three profiles, fixed when ``workbench serve`` or ``workbench render`` starts:

``public`` (decision-makers)
    nation, region, municipality and cluster figures. No practice is identifiable: no practice
    id or name, no practice-level table or point that could be matched to one; the practice
    pages are not served or rendered at all.
``practice`` (``--practice ID``)
    one practice's own pages, its cluster's practices beside it for comparison, nothing of a
    practice outside its cluster; the overview and its own cluster's pages.
``analyst``
    everything, inside the secure environment only; every page says so.

Disclosure control (:mod:`workbench.disclosure`) applies under every profile: a profile decides
which units and rows a page may show, suppression decides which values.

The profile reaches a page through the environment variable :data:`PROFILE_ENV`, set by the
command for the processes it starts (Voilà and its kernels, Papermill's kernels). Nothing a
viewer sends (a URL, a widget value) can set or widen it. A publishing process without a profile
is ``public`` (fail closed); an interactive session without one is the analyst's own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from workbench.disclosure import publishing_active

PROFILE_ENV = "WORKBENCH_PROFILE"
PROFILES = ("public", "practice", "analyst")
PRACTICE_PAGES = frozenset({"practice_insight", "practice_intervention"})
PAGES = ("overview", "cluster_insight", "cluster_intervention", "practice_insight",
         "practice_intervention")
_PRACTICE_ID = re.compile(r"^\d{6}$")


class ProfileError(ValueError):
    """A page, unit or row the profile does not allow, or a profile that does not parse."""


@dataclass(frozen=True)
class Profile:
    """A viewing profile; ``practice`` is the practice id of a ``practice`` profile.

    ``own_cluster`` is that practice's cluster: a fact of the register, not of the profile, so
    the catalogue that knows it fills it in (:meth:`bind`); until then no cluster is allowed.
    """

    name: str
    practice: str = ""
    own_cluster: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ProfileError(f"unknown profile {self.name!r}; use one of {list(PROFILES)}")
        if self.name == "practice" and not _PRACTICE_ID.match(self.practice):
            raise ProfileError("the practice profile needs --practice ID (a 6-digit ydernummer), "
                               f"not {self.practice!r}")
        if self.name != "practice" and self.practice:
            raise ProfileError(f"--practice goes with the practice profile, not {self.name!r}")

    @classmethod
    def parse(cls, text: str) -> Profile:
        """``public``, ``analyst`` or ``practice:123456`` (the form :meth:`spec` writes).

        >>> Profile.parse("practice:012345"), Profile.parse(" public ").spec()
        (Profile(name='practice', practice='012345'), 'public')
        """
        name, _, practice = text.strip().partition(":")
        return cls(name, practice)

    def spec(self) -> str:
        return f"practice:{self.practice}" if self.name == "practice" else self.name

    # --- what the profile allows --------------------------------------------------------------
    @property
    def pages(self) -> tuple[str, ...]:
        """The page kinds served or rendered under this profile."""
        if self.name == "public":
            return tuple(p for p in PAGES if p not in PRACTICE_PAGES)
        return PAGES

    @property
    def identifies_practices(self) -> bool:
        """Whether a page may name practices and show their rows (own cluster only, for a
        practice); ``False`` means no practice id, name or practice-level row at all."""
        return self.name != "public"

    @property
    def shows_other_practices_raw(self) -> bool:
        """Whether practice-level values outside the viewer's cluster may be shown even
        without names (the national distribution as points); only the analyst's."""
        return self.name == "analyst"

    def allows_page(self, kind: str, unit: str, cluster: str = "") -> bool:
        """May this profile see page ``kind`` for ``unit``? ``cluster`` is the unit's cluster
        (for a practice page) or the unit itself (for a cluster page)."""
        if kind not in self.pages:
            return False
        if self.name != "practice" or kind == "overview":
            return True
        if kind in PRACTICE_PAGES:
            return unit == self.practice
        return bool(self.own_cluster) and cluster == self.own_cluster

    def allows_practice(self, practice: str, cluster: str) -> bool:
        """May a page name practice ``practice`` (of cluster ``cluster``) or show its row?"""
        if self.name == "analyst":
            return True
        if self.name == "public":
            return False
        return bool(self.own_cluster) and cluster == self.own_cluster

    def bind(self, own_cluster: str) -> Profile:
        """The profile with its practice's cluster filled in from the register."""
        return Profile(self.name, self.practice, own_cluster)

    def banner(self) -> str:
        """The glossary key of the line every page shows under this profile ('' for none)."""
        return {"analyst": "profile_analyst", "practice": "profile_practice"}.get(self.name, "")


def current_profile() -> Profile:
    """The profile of this process: :data:`PROFILE_ENV` when set; otherwise ``public`` in a
    publishing process (fail closed) and ``analyst`` in an interactive session."""
    text = os.environ.get(PROFILE_ENV, "").strip()
    if text:
        return Profile.parse(text)
    return Profile("public") if publishing_active() else Profile("analyst")


def profile_environment(profile: Profile) -> dict[str, str]:
    """The environment entries a command sets for the processes it starts."""
    return {PROFILE_ENV: profile.spec()}
