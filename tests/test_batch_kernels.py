"""A batch worker lends its kernel from page to page: each page runs on a new thread (and a Dask
worker may run several at once), so a kernel must not be tied to a thread's identity, or a page
on a thread with a new ident would start (and leak) a kernel of its own."""

from __future__ import annotations

import threading

import pytest

from workbench.publish.batch import executors
from workbench.publish.batch.plan import PageTask


class FakeClient:
    """A kernel's client: records what it is asked to run; ``status`` is the kernel's answer."""

    status = "ok"

    def __init__(self) -> None:
        self.ran: list[str] = []

    def execute_interactive(self, code: str, **kwargs: object) -> dict:
        self.ran.append(code)
        return {"content": {"status": FakeClient.status}}


class FakeKernel:
    """Stands in for a Jupyter kernel: records starts, resets and kills."""

    started: list[FakeKernel] = []

    worn = executors.Kernel.worn  # the real rule, on the fake's pages and memory
    memory: int | None = None  # the resident bytes its rss() reports

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        self.key = (tuple(sorted(env.items())), cwd)
        self.pages = 0
        self.first_rss: int | None = None
        self.resets = 0
        self.killed = False
        FakeKernel.started.append(self)

        self.client = FakeClient()

    def reset(self) -> None:
        self.resets += 1

    def rss(self) -> int | None:
        return self.memory

    def kill(self) -> None:
        self.killed = True

    def kill_process(self) -> None:
        self.killed = True


@pytest.fixture
def fake_kernels(monkeypatch: pytest.MonkeyPatch) -> list[FakeKernel]:
    FakeKernel.started = []
    monkeypatch.setattr(executors, "Kernel", FakeKernel)
    monkeypatch.setattr(executors, "_idle", [])
    monkeypatch.setattr(executors, "_busy", {})
    monkeypatch.setattr(executors, "_starting", [])
    monkeypatch.setattr(executors, "_warming", None)
    monkeypatch.setattr(FakeClient, "status", "ok")
    return FakeKernel.started


def job(env: str = "a", fresh: bool = False) -> executors.Job:
    task = PageTask("analgesics", "practice_insight", "172409", "opioids", {})
    return executors.Job(task=task, notebook="/pages/practice_insight.ipynb", out="/site",
                         env=(("WORKBENCH_DATA", env),), digest="d", provenance={},
                         fresh_kernel=fresh)


def on_new_thread(fn, *args):  # noqa: ANN001, ANN201  (as _render_in_worker runs a page)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", fn(*args)))
    thread.start()
    thread.join()
    return result.get("r")


def page(j: executors.Job, fails: bool = False) -> FakeKernel:
    """What render() does with the kernel: take it, use it, then release or discard it."""
    kernel = executors._kernel_for(j)
    kernel.pages += 1
    if fails or j.fresh_kernel:
        executors._discard_kernel()
    else:
        executors._release_kernel()
    return kernel


def test_pages_on_new_threads_share_one_kernel(fake_kernels: list[FakeKernel]) -> None:
    kernels = [on_new_thread(page, job()) for _ in range(5)]
    assert len(fake_kernels) == 1 and all(k is fake_kernels[0] for k in kernels)
    assert fake_kernels[0].pages == 5 and fake_kernels[0].resets == 5
    assert executors._idle == [fake_kernels[0]] and executors._busy == {}


def test_pages_at_once_get_a_kernel_each(fake_kernels: list[FakeKernel]) -> None:
    first = executors._kernel_for(job())  # this thread's page is still rendering...
    second = on_new_thread(page, job())  # ...so another thread's page can't have its kernel
    assert first is not second and len(fake_kernels) == 2


def test_a_failed_page_loses_its_kernel_and_the_next_starts_one(
        fake_kernels: list[FakeKernel]) -> None:
    failed = on_new_thread(page, job(), True)
    after = on_new_thread(page, job())
    assert failed.killed and after is not failed and not after.killed
    assert executors._idle == [after]


def test_fresh_kernels_and_other_batches_do_not_reuse(fake_kernels: list[FakeKernel]) -> None:
    kept = on_new_thread(page, job())
    fresh = on_new_thread(page, job(fresh=True))
    assert fresh is not kept and fresh.killed and kept.killed  # a fresh page kills the idle one
    first = on_new_thread(page, job("a"))
    other = on_new_thread(page, job("b"))  # another batch's environment
    assert other is not first and first.killed and executors._idle == [other]


def test_a_worn_kernel_is_replaced(fake_kernels: list[FakeKernel],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "PAGES_PER_KERNEL", 2)
    kernels = [on_new_thread(page, job()) for _ in range(3)]
    assert kernels[0] is kernels[1] is not kernels[2] and kernels[0].killed


def test_a_kernel_grown_past_its_memory_bound_is_replaced(fake_kernels: list[FakeKernel]) -> None:
    first = on_new_thread(page, job())
    first.memory = 900 * 2**20  # after its first page: the baseline, however big
    assert on_new_thread(page, job()) is first and first.first_rss == 900 * 2**20
    first.memory += executors.KERNEL_GROWTH  # grown by exactly the bound: kept
    assert on_new_thread(page, job()) is first and not first.killed
    first.memory += 1
    second = on_new_thread(page, job())
    assert second is not first and first.killed


def test_a_kernel_knows_its_memory() -> None:
    """Read from /proc for the kernel's process (here: this process, as a stand-in)."""
    import os
    from types import SimpleNamespace

    kernel = executors.Kernel.__new__(executors.Kernel)
    kernel.km = SimpleNamespace(provisioner=SimpleNamespace(pid=os.getpid()))
    assert 10 * 2**20 < kernel.rss() < 16 * 2**30
    kernel.km = SimpleNamespace(provisioner=SimpleNamespace(pid=None))  # not started
    assert kernel.rss() is None


def warm_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker does when it starts (_init_worker): a kernel for the batch's pages starts
    on a thread of its own while the worker waits for its first page."""
    thread = threading.Thread(target=executors._warm_kernel,
                              args=({"WORKBENCH_DATA": "a"}, "/pages"))
    monkeypatch.setattr(executors, "_warming", thread)
    thread.start()


def test_the_first_page_gets_the_kernel_started_ahead(fake_kernels: list[FakeKernel],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    warm_ahead(monkeypatch)
    first = on_new_thread(page, job())  # waits for the warm-up if it hasn't finished
    assert len(fake_kernels) == 1 and first is fake_kernels[0] and not first.killed
    (code,) = first.client.ran
    assert "import workbench.pages" in code and "reset(new_session=True)" in code
    assert on_new_thread(page, job()) is first


def test_a_failed_warm_up_leaves_the_first_page_its_own_kernel(
        fake_kernels: list[FakeKernel], monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClient.status = "error"
    warm_ahead(monkeypatch)
    first = on_new_thread(page, job())
    assert len(fake_kernels) == 2 and fake_kernels[0].killed and first is fake_kernels[1]


def test_the_worker_process_is_warmed_too(fake_kernels: list[FakeKernel],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """While its kernel starts, the worker registers Papermill's engine and compiles an HTML
    exporter: the first page finds both ready instead of paying about half a second."""
    from papermill.engines import papermill_engines

    from workbench.publish.batch import site

    monkeypatch.setattr(site, "_exporters", [])
    monkeypatch.setattr(papermill_engines, "_engines",
                        {k: v for k, v in papermill_engines._engines.items()
                         if k != executors.ENGINE})
    warm_ahead(monkeypatch)
    executors._warming.join()
    assert len(site._exporters) == 1
    assert executors.ENGINE in papermill_engines._engines
    (warmed,) = site._exporters
    with site._exporter() as exporter:  # the page borrows that one, not a new one
        assert exporter is warmed


def test_a_dying_worker_kills_every_kernel_without_waiting(fake_kernels: list[FakeKernel]) -> None:
    """On the way out (SIGTERM, or the batch gone) the idle, the busy and a starting kernel are
    killed even while a page's thread holds the kernels' lock."""
    idle, busy, starting = (FakeKernel({"WORKBENCH_DATA": x}, "/pages") for x in "abc")
    executors._idle.append(idle)
    executors._busy[1] = busy
    executors._starting.append(starting)
    with executors._lock:  # as if a page were taking a kernel right now
        executors._kill_kernels_now()
    assert idle.killed and busy.killed and starting.killed


def test_a_worker_leaves_when_its_batch_is_gone(fake_kernels: list[FakeKernel],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent watch: once the worker is reparented (the batch was SIGKILLed), its kernels
    are killed and it exits, without any signal reaching Python."""
    parents = iter([100, 100, 1])
    monkeypatch.setattr(executors.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(executors, "PARENT_POLL_SECONDS", 0.0)
    kernel = FakeKernel({"WORKBENCH_DATA": "a"}, "/pages")
    executors._idle.append(kernel)

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(executors.os, "_exit", exit_)
    with pytest.raises(SystemExit) as left:
        executors._watch_parent(100)
    assert left.value.code == 143 and kernel.killed



def test_a_reset_frees_the_pages_cycles_and_freezes_only_survivors(tmp_path) -> None:  # noqa: ANN001
    """A real kernel: a page's objects in a reference cycle must be collected by the reset, not
    frozen with the survivors (where no later collection would see them)."""
    kernel = executors.Kernel({}, str(tmp_path))
    try:
        def run(code: str) -> str:
            out: list[str] = []
            reply = kernel.client.execute_interactive(  # type: ignore[attr-defined]
                code, store_history=False, timeout=60,
                output_hook=lambda m: out.append(m["content"].get("text", ""))
                if m["msg_type"] == "stream" else None)
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(out).strip()

        run("import builtins, weakref\n"
            "class Node: pass\n"
            "page = Node(); page.me = page  # a cycle, named by the page\n"
            "builtins.kept = Node()  # a survivor\n"
            "builtins.watch = weakref.ref(page), weakref.ref(builtins.kept)")
        kernel.pages = 1
        kernel.reset()
        assert run("import gc\n"
                   "print(watch[0]() is None, watch[1]() is not None, 'page' in globals(),\n"
                   "      gc.get_freeze_count() > 0)") == "True True False True"
    finally:
        kernel.kill()
