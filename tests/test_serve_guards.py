"""The dashboards server's guards on their own (the running server is attacked in
test_attacks.py): the kernel limits' bookkeeping and which kernel messages a viewer never reads."""

from __future__ import annotations

import pytest

from workbench.publish.serve import Limits, ServeError, voila_command
from workbench.publish.voila.guards import Capacity, hidden


def test_views_are_admitted_up_to_the_limits_per_client_and_overall() -> None:
    capacity = Capacity(total=3, per_client=2)
    a1 = capacity.admit("a", [])
    a2 = capacity.admit("a", [])
    assert a1 and a2
    assert capacity.admit("a", []) is None  # a's third view
    b1 = capacity.admit("b", [])
    assert b1
    assert capacity.admit("c", []) is None  # a fourth view overall
    assert capacity.in_use() == 3 and capacity.in_use("a") == 2


def test_a_slot_ends_with_its_kernel_or_with_a_view_that_got_none() -> None:
    capacity = Capacity(total=2, per_client=2)
    first, second = capacity.admit("a", []), capacity.admit("a", [])
    capacity.bind(first, "k1")
    capacity.release(first)  # the view is drawn; its kernel still serves the viewer
    assert capacity.admit("a", ["k1"]) is None
    capacity.release(second)  # the view failed before it got a kernel
    third = capacity.admit("a", ["k1"])
    assert third is not None
    capacity.bind(third, "k2")
    assert capacity.admit("a", ["k1", "k2"]) is None
    assert capacity.admit("a", ["k2"]) is not None  # k1 ended (the viewer left, or culled)


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Capacity(total=0, per_client=1)
    with pytest.raises(ServeError, match="--max-kernels"):
        Limits(total=4, per_client=0)


def test_the_voila_command_carries_the_limits() -> None:
    command = voila_command(8866, limits=Limits(total=5, per_client=2))
    assert "--WorkbenchVoila.max_kernels=5" in command
    assert "--WorkbenchVoila.max_kernels_per_client=2" in command


@pytest.mark.parametrize(("msg_type", "content", "withheld"), [
    ("error", {"ename": "ValueError", "evalue": "x", "traceback": ["/work/a.py"]}, True),
    ("stream", {"name": "stderr", "text": "Traceback ..."}, True),
    ("stream", {"name": "stdout", "text": "hello"}, False),
    ("comm_msg", {"data": {}}, False),
    ("display_data", {"data": {"text/plain": "x"}}, False),
])
def test_errors_and_stderr_are_withheld_from_viewers(msg_type, content, withheld) -> None:
    assert hidden(msg_type, content) is withheld
