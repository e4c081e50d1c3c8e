"""The project's promises about itself: two commands on README's first screen, CI calls the
test command, and Binder installs the same pins as the package."""

from __future__ import annotations

import tomllib

from workbench.paths import PROJECT_ROOT


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join((PROJECT_ROOT / "README.md").read_text().splitlines()[:15])
    assert "make run" in first_screen and "make test" in first_screen


def test_ci_runs_make_test() -> None:
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_binder_requirements_match_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    deps = set(pyproject["project"]["dependencies"])
    lines = (PROJECT_ROOT / "binder" / "requirements.txt").read_text().splitlines()
    binder = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
    assert binder == deps


def test_binder_postbuild_builds_the_demo_register() -> None:
    post = (PROJECT_ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post
    assert "workbench data generate" in post
    # the pages read the answer store: Binder's dashboards need it built
    assert post.index("workbench data generate") < post.index("workbench data build")
