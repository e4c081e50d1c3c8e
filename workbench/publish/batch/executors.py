"""Running pages: Papermill in worker processes on this machine, or on a Dask cluster.

A worker renders one page at a time: Papermill executes the page notebook in a Jupyter kernel,
the worker turns the executed notebook into the page's CSVs and HTML, and writes the page's
files atomically, its ``page.json`` last. A failing page is recorded with its error (and its
executed notebook, traceback included, as ``failed.ipynb``); the worker goes on.

Kernels. Starting a kernel and importing the stack (pandas, Ibis, matplotlib) costs seconds, more
than most pages take to build from the precomputed results. So by default a worker keeps one
kernel and runs its pages in it one after another, resetting the kernel's namespace (IPython's
``reset(new_session=True)``) before each page, exactly like Voilà's preheated kernels; the
kernel is replaced after a failure and once it has grown by :data:`KERNEL_GROWTH` (or after
:data:`PAGES_PER_KERNEL` pages). ``fresh_kernels``
gives every page a kernel of its own (Papermill's default; slower, for the sceptical). A
worker also keeps its kernel's client (a new one waits 0.2 s to be sure the kernel is ready)
and lends it to Papermill; and the batch starts its workers before the precompute, each
starting its kernel and importing the stack while the precompute runs (:func:`start_local`).

Robustness. A worker dies with the batch (``PR_SET_PDEATHSIG`` on Linux) and takes its kernel
with it; a kernel whose worker is gone exits by itself (ipykernel watches its parent).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from workbench.paths import shown
from workbench.profiles import Profile, profile_environment
from workbench.publish.batch import atomic
from workbench.publish.batch.manifest import KERNEL, PAGE_ENTRY, now, page_folder
from workbench.publish.batch.plan import PageTask
from workbench.publish.batch.site import (
    FAILED_NOTEBOOK_NAME,
    HTML_NAME,
    NOTEBOOK_NAME,
    extract_csvs,
    page_html,
)

# A kernel is replaced once it has grown by KERNEL_GROWTH bytes since its first page, or after
# PAGES_PER_KERNEL pages whatever it holds. Its memory levels off: a kernel of Region 1081's
# batch held 0.37 GiB after 50 pages and 0.43 GiB after 800 (the pages' answers are kept in
# bounded memos), and a replacement costs its next page some 3 s of starting and importing.
# Measured from the first page, which reads the level's tables: a national kernel starts bigger.
KERNEL_GROWTH = 3 * 2**29  # 1.5 GiB
PAGES_PER_KERNEL = 2000
KERNEL_START_TIMEOUT = 120


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to render one page (picklable: it travels to the worker)."""

    task: PageTask
    notebook: str
    out: str
    env: tuple[tuple[str, str], ...]
    digest: str
    provenance: dict = field(hash=False)
    regenerate: str = ""
    language: str = "da"
    fresh_kernel: bool = False
    timeout: int | None = None


class UnpublishedOutput(RuntimeError):
    """The executed notebook holds an output other than the page's published HTML."""


# --- kernels ------------------------------------------------------------------------------------


class Kernel:
    """A started kernel that runs pages one after another."""

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        from jupyter_client.manager import KernelManager

        self.key = (tuple(sorted(env.items())), cwd)
        # IPC sockets (absolute paths: the kernel runs in the notebooks' folder): no TCP ports
        # to collide between many kernels, nothing on the network.
        sockets = Path(tempfile.gettempdir()) / f"wb-kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sockets = sockets
        self.km = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(sockets))
        self.km.start_kernel(env={**os.environ, **env}, cwd=cwd)
        self.pages = 0
        self.first_rss: int | None = None  # its memory after its first page (Kernel.worn)
        self._client: object | None = None

    @property
    def client(self) -> object:
        """The kernel's one client, kept from page to page.

        A new client must wait until the kernel answers and then drain the kernel's broadcast
        channel: jupyter_client waits 0.2 s for a message that isn't coming, every time. A
        client made per page (for the reset, and again inside Papermill) paid that twice per
        page, 0.4 s of a practice page's 1.3 s. Replies and outputs carry the id of their
        request, so whatever an earlier page left unread is skipped, not mistaken for this
        page's."""
        if self._client is None:
            client = self.km.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=KERNEL_START_TIMEOUT)
            except BaseException:
                client.stop_channels()
                raise
            self._client = client
        return self._client

    def reset(self) -> None:
        """Forget the previous page's variables (imported modules stay: that's the point).

        IPython's reset ends with a full garbage collection, which walks every object the
        kernel tracks: about 250,000 once the stack is imported, 0.5–1 s per page, more than
        a page's own queries. So after the reset the survivors (modules, caches, the session)
        are frozen (:func:`gc.freeze`): the next reset walks only what the page since created,
        about 0.02 s.

        The page's variables are dropped before the reset: IPython collects before it clears
        the namespace, and a page's objects still named there would survive that collection,
        become garbage a moment later and be frozen with the survivors, out of the collector's
        reach (some 15,000 objects a page). What is frozen that later becomes garbage (an
        answer a bounded memo lets go) stays small: over Region 1081's batch the frozen objects
        grew by about 75 a page once the memos had filled (0.31 million after 400 pages, 0.34
        million after 800), and :meth:`worn` bounds the kernel whatever it holds.
        """
        if self.pages == 0:
            return
        code = ("(lambda ip: [ip.user_ns.pop(n) for n in set(ip.user_ns) - set(ip.user_ns_hidden)])"
                "(get_ipython())\n"
                "get_ipython().reset(new_session=True)\n"
                "import gc; gc.freeze(); del gc")
        reply = self.client.execute_interactive(  # type: ignore[attr-defined]
            code, store_history=False, timeout=60, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("the kernel could not be reset")

    def rss(self) -> int | None:
        """The kernel process' resident memory in bytes (None where ``/proc`` can't tell)."""
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        try:
            with open(f"/proc/{int(pid)}/statm") as statm:  # type: ignore[arg-type]
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, TypeError, ValueError, IndexError):
            return None

    def worn(self) -> bool:
        """Time for a fresh kernel: it has grown by :data:`KERNEL_GROWTH` since its first page,
        or run its pages."""
        if self.pages >= PAGES_PER_KERNEL:
            return True
        rss = self.rss() if self.pages else None
        if rss is None:
            return False
        if self.first_rss is None:
            self.first_rss = rss
        return rss - self.first_rss > KERNEL_GROWTH

    def kill_process(self) -> None:
        """Kill the kernel's process group, and nothing else: safe on the way out of a dying
        worker, whatever its other threads are doing."""
        provisioner = getattr(self.km, "provisioner", None)
        pgid = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
        if pgid:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)

    def kill(self) -> None:
        """Stop the kernel now and free what this process holds of it."""
        self.kill_process()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop_channels()  # type: ignore[attr-defined]
            self._client = None
        with contextlib.suppress(Exception):
            self.km.cleanup_resources()
        for socket in self.sockets.parent.glob(f"{self.sockets.name}-*"):
            socket.unlink(missing_ok=True)


# This process's kernels: idle ones wait for the next page; a busy one belongs to the thread
# rendering a page with it. Pages come on a new thread each (see _render_in_worker), and a Dask
# worker may render several at once, so a kernel is lent per page, not tied to a thread.
_idle: list[Kernel] = []
_busy: dict[int, Kernel] = {}  # by thread ident, while its page renders
_starting: list[Kernel] = []  # the one the warm-up is starting, until it is idle
_lock = threading.Lock()


# What a worker's kernel runs before its first page: the imports every page makes (with the
# DuckDB backend and SQL dialects Ibis imports on first use), the definitions and glossary
# read, a figure drawn in the house style (fonts found and loaded), and the pages' session
# opened on the register with its answer store and its catalogue of choices.
WARM_UP = """\
import io
import ibis
import workbench.pages
from workbench.definitions import load_definitions
from workbench.glossary import glossary
ibis.duckdb, load_definitions(), glossary()
from workbench.pages import charts, render
render.svg(charts.grouped_bars(
    __import__("pandas").DataFrame({"c": ["a"], "s": ["b"], "v": [1.0]}), category="c",
    value="v", series="s", colours={}, title="t", ylabel="y"))
try:
    workbench.pages.catalog_for(workbench.pages.session_for())
except Exception:  # the first page opens it, and reports what goes wrong
    pass
get_ipython().reset(new_session=True)
import gc; gc.freeze(); del gc
"""
_warming: threading.Thread | None = None  # this worker's first kernel, while it starts


def _warm_process() -> None:
    """What this worker's first page would otherwise pay in this process, done while the batch
    precomputes: Papermill's engine registered (importing papermill and nbclient, 0.2 s) and
    an HTML exporter's templates compiled (0.25 s)."""
    from workbench.publish.batch.site import warm_exporter

    with contextlib.suppress(Exception):  # the first page does it again (and reports)
        _register_engine()
        warm_exporter()


def _warm_kernel(env: dict[str, str], cwd: str) -> None:
    """Start a kernel and import the stack in it, so the worker's first page finds it ready;
    warm this process while the kernel starts."""
    try:
        kernel = Kernel(env, cwd)
    except Exception:  # the first page starts one itself (and reports what goes wrong)
        _warm_process()
        return
    _starting.append(kernel)
    _warm_process()
    try:
        reply = kernel.client.execute_interactive(  # type: ignore[attr-defined]
            WARM_UP, store_history=False, timeout=KERNEL_START_TIMEOUT,
            output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("the kernel's warm-up failed")
    except Exception:
        kernel.kill()
        _starting.remove(kernel)
        return
    with _lock:
        _idle.append(kernel)
        _starting.remove(kernel)


def _kernel_for(job: Job) -> Kernel:
    """An idle kernel of this process with the job's environment (reset), or a new one."""
    if _warming is not None:
        _warming.join()
    env = dict(job.env)
    key = (tuple(sorted(env.items())), str(Path(job.notebook).parent))
    with _lock:
        kernel = next((k for k in _idle if k.key == key), None)
        others = [k for k in _idle if k.key != key]  # another batch's: not needed again
        _idle[:] = [k for k in _idle if k.key == key and k is not kernel]
    for other in others:
        other.kill()
    if kernel is not None and (job.fresh_kernel or kernel.worn()):
        kernel.kill()
        kernel = None
    if kernel is None:
        kernel = Kernel(env, key[1])
    with _lock:
        _busy[threading.get_ident()] = kernel
    kernel.reset()
    return kernel


def _release_kernel() -> None:
    """The page went well: its kernel waits for the next page."""
    with _lock:
        kernel = _busy.pop(threading.get_ident(), None)
        if kernel is not None:
            _idle.append(kernel)


def _discard_kernel() -> None:
    """The page failed (its kernel's state is unknown) or wanted a kernel of its own."""
    with _lock:
        kernel = _busy.pop(threading.get_ident(), None)
    if kernel is not None:
        kernel.kill()


def kill_kernels() -> None:
    """Stop every kernel of this process (at exit, on SIGTERM)."""
    with _lock:
        kernels = [*_idle, *_busy.values()]
        _idle.clear()
        _busy.clear()
    for kernel in kernels:
        kernel.kill()


atexit.register(kill_kernels)


# --- one page -----------------------------------------------------------------------------------

ENGINE = "workbench"  # Papermill's engine, with the kernel's client lent to it


def _register_engine() -> None:
    """Papermill's nbclient engine, except that it runs the page with the kernel's own client
    (:attr:`Kernel.client`) instead of starting, readying and stopping one per page."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class LentClientEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: object, kernel_name: str, *,
                                     kc: object = None, km: object = None,
                                     log_output: bool = False, stdout_file: object = None,
                                     stderr_file: object = None, start_timeout: int = 60,
                                     execution_timeout: int | None = None,
                                     **kwargs: object) -> object:
            kwargs.pop("input_path", None)
            client = PapermillNotebookClient(
                nb_man, km=km, timeout=execution_timeout, startup_timeout=start_timeout,
                kernel_name=kernel_name, log=logging.getLogger("papermill"),
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
                **kwargs)
            client.kc = kc  # not stopped afterwards: the client isn't the kernel's owner
            return client.execute()

    papermill_engines.register(ENGINE, LentClientEngine)



def check_published_only(nb: object) -> None:
    """Every output of a page notebook is the HTML of its published page: no printed frames,
    no return values, no errors. Anything else could hold an unsuppressed intermediate."""
    for index, cell in enumerate(nb.cells):  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            data = output.get("data", {})
            if kind != "display_data" or "text/html" not in data or not (
                set(data) <= {"text/html", "text/plain"}
            ):
                raise UnpublishedOutput(
                    f"cell {index} has a {kind} output ({', '.join(data) or output.get('name')})"
                    "; a page notebook may only display its published HTML")


def unplace(nb: object, data: str, notebook: str) -> None:
    """Papermill's record of a page without this machine's folders: the dataset and the
    notebook named as :func:`~workbench.paths.shown` names them (in its metadata and in the
    injected parameters), the output as the page's own file; and its cell a stable id (Papermill
    gives it a random one)."""
    record = nb.metadata.get("papermill", {})  # type: ignore[attr-defined]
    record["input_path"] = shown(notebook)
    record["output_path"] = NOTEBOOK_NAME
    if "data" in record.get("parameters", {}):
        record["parameters"]["data"] = shown(data)
    for cell in nb.cells:  # type: ignore[attr-defined]
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
            cell.source = re.sub(r"(?m)^data = .*$", lambda _: f"data = {json.dumps(shown(data))}",
                                 cell.source)


def render(job: Job, planned: frozenset[str]) -> dict:
    """Execute one page notebook and write its files; returns its manifest entry."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _register_engine()
    task = job.task
    out = Path(job.out)
    folder = page_folder(out, task)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PAGE_ENTRY).unlink(missing_ok=True)  # no completion mark while files change
    entry = {
        "id": task.id, "theme": task.theme, "page": task.kind, "unit": task.unit,
        "group": task.group, "parameters": {**task.parameters, "data": shown(task.parameters[
            "data"])}, "notebook": shown(job.notebook),
        "inputs_digest": job.digest, "provenance": job.provenance,
        "regenerate": job.regenerate, "worker": f"{os.uname().nodename}:{os.getpid()}",
        "started_at": now(),
    }
    started = time.perf_counter()
    temp = atomic.temp_path(folder / NOTEBOOK_NAME)
    rel = folder.relative_to(out).as_posix()
    try:
        kernel = _kernel_for(job)
        kernel.pages += 1
        papermill.execute_notebook(
            job.notebook, str(temp), parameters=task.parameters, kernel_name=KERNEL,
            engine_name=ENGINE, km=kernel.km, kc=kernel.client, progress_bar=False,
            request_save_on_cell_execute=False, execution_timeout=job.timeout,
        )
        nb = nbformat.read(temp, as_version=4)
        unplace(nb, task.parameters["data"], job.notebook)
        nbformat.write(nb, temp)
        check_published_only(nb)
        csvs = extract_csvs(nb)
        page = page_html(nb, task, planned, job.language)
        for stale in folder.glob("*.csv"):
            if stale.name not in csvs:
                stale.unlink()
        for name, data in csvs.items():
            atomic.write_bytes(folder / name, data)
        atomic.write_text(folder / HTML_NAME, page)
        os.replace(temp, folder / NOTEBOOK_NAME)
        (folder / FAILED_NOTEBOOK_NAME).unlink(missing_ok=True)
        entry.update(status="ok", files={
            "notebook": f"{rel}/{NOTEBOOK_NAME}", "html": f"{rel}/{HTML_NAME}",
            "csv": [f"{rel}/{name}" for name in sorted(csvs)],
        })
        if job.fresh_kernel:
            _discard_kernel()
        else:
            _release_kernel()
    except Exception as exc:  # a failing page is recorded, the batch goes on
        _discard_kernel()  # its state is unknown now
        if isinstance(exc, PapermillExecutionError):
            error = f"{exc.ename}: {exc.evalue}"
        else:
            error = f"{type(exc).__name__}: {exc}"
        files: dict = {}
        for stale in [folder / NOTEBOOK_NAME, folder / HTML_NAME, *folder.glob("*.csv")]:
            stale.unlink(missing_ok=True)
        if temp.exists():
            os.replace(temp, folder / FAILED_NOTEBOOK_NAME)
            files["failed_notebook"] = f"{rel}/{FAILED_NOTEBOOK_NAME}"
        entry.update(status="failed", error=error[:2000], files=files)
    finally:
        temp.unlink(missing_ok=True)
    entry["seconds"] = round(time.perf_counter() - started, 3)
    entry["finished_at"] = now()
    atomic.write_text(folder / PAGE_ENTRY, json.dumps(entry, indent=1, ensure_ascii=False))
    return entry


def failed_entry(job: Job, error: str) -> dict:
    """The entry of a page whose worker died before it could write one."""
    task = job.task
    return {"id": task.id, "theme": task.theme, "page": task.kind, "unit": task.unit,
            "group": task.group, "parameters": {**task.parameters, "data": shown(task.parameters[
            "data"])}, "notebook": shown(job.notebook),
            "inputs_digest": job.digest, "provenance": job.provenance,
            "regenerate": job.regenerate, "status": "failed", "error": error[:2000],
            "files": {}, "seconds": None, "finished_at": now()}


# --- local process pool -------------------------------------------------------------------------

_planned: frozenset[str] = frozenset()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a SIGKILLed batch)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill_kernels_now() -> None:
    """Kill every kernel of this dying worker: no lock (a page's thread may hold it), no client
    shut down (a page's thread may be using its sockets; the exit closes them), nothing that
    can wait. A kernel the warm-up is still starting is killed too."""
    for kernel in [*_starting, *_idle, *_busy.values()]:
        kernel.kill_process()


def _on_sigterm(signum: int, frame: object) -> None:
    _kill_kernels_now()
    os._exit(128 + signum)


PARENT_POLL_SECONDS = 0.5


def _watch_parent(parent: int) -> None:
    """Leave with the batch, whatever happens to signals: poll the parent's pid.

    A SIGKILLed batch's workers get SIGTERM from Linux (:func:`_die_with_parent`), but that
    handler is Python's and runs only when the main thread gets to run Python; a CI run once
    found a worker and its kernel still alive 30 s after the batch was killed. This thread
    sees the worker reparented within half a second and takes its kernels with it."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    _kill_kernels_now()
    os._exit(128 + signal.SIGTERM)


def _init_worker(planned: frozenset[str], warm: tuple[dict[str, str], str] | None) -> None:
    import multiprocessing.util

    global _planned, _warming
    _planned = planned
    if warm is not None:
        _warming = threading.Thread(target=_warm_kernel, args=warm, name="warm kernel",
                                    daemon=True)
    else:  # fresh kernels: nothing to start ahead, the process still warms
        _warming = threading.Thread(target=_warm_process, name="warm worker", daemon=True)
    _warming.start()
    _die_with_parent()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="watch the batch",
                     daemon=True).start()
    # a pool's worker leaves through os._exit: atexit never runs, its finalizers do
    multiprocessing.util.Finalize(None, kill_kernels, exitpriority=100)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch's to handle


def _render_in_worker(job: Job) -> dict:
    """Render on a helper thread: nbclient installs its own SIGTERM handler (which only tidies
    up its kernel) when it runs on a process's main thread, and would swallow the batch's
    SIGTERM; off the main thread it can't, and this thread's handler stops the worker."""
    result: dict = {}

    def work() -> None:
        try:
            result["entry"] = render(job, _planned)
        except BaseException as exc:  # handed to the pool as the page's failure
            result["error"] = exc

    thread = threading.Thread(target=work, name=f"render {job.task.id}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["entry"]


class Interrupted(BaseException):
    """The batch was asked to stop (SIGTERM). A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way (a page's failure handling) can swallow it."""


def _started() -> None:
    """A task that does nothing: submitting it makes the pool start a worker."""


def start_local(workers: int, planned: frozenset[str],
                warm: tuple[tuple[tuple[str, str], ...], str] | None) -> ProcessPoolExecutor:
    """Start ``workers`` worker processes now, each starting its kernel in the background.

    A kernel takes seconds to start and import the stack. The batch starts its workers before
    the precompute, so the kernels get ready while the precompute runs instead of in each
    worker's first page. ``warm``: the pages' kernel environment and folder (``None``: no
    kernel ahead, as with fresh kernels per page)."""
    import multiprocessing

    pool = ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(planned, None if warm is None else (dict(warm[0]), warm[1])))
    for _ in range(max(1, workers)):  # a pool starts a process per task while none is idle
        pool.submit(_started)
    return pool


def run_local(jobs: list[Job], planned: frozenset[str], workers: int,
              done: Callable[[Job, dict], None],
              pool: ProcessPoolExecutor | None = None) -> None:
    """Render ``jobs`` on ``workers`` processes of this machine (those of ``pool``, from
    :func:`start_local`, if given); ``done`` gets each entry."""
    if not jobs:
        if pool is not None:
            terminate_local(pool)
        return
    if pool is None:
        pool = start_local(min(workers, len(jobs)), planned, None)
    try:
        futures: dict[Future, Job] = {pool.submit(_render_in_worker, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                entry = future.result()
            except Exception as exc:  # the worker died (killed, out of memory)
                entry = failed_entry(job, f"worker died: {type(exc).__name__}: {exc}")
            done(job, entry)
    except BaseException:
        terminate_local(pool)
        raise
    pool.shutdown(wait=True)


def terminate_local(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: SIGTERM the workers (they stop their kernels), cancel what hasn't
    started, and don't wait for pages in flight. (The processes are taken before
    ``shutdown``, which forgets them; left alone they would finish the whole queue.)"""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


# --- Dask ---------------------------------------------------------------------------------------


def _render_on_dask(job: Job, planned: frozenset[str]) -> dict:
    return render(job, planned)


def run_dask(jobs: list[Job], planned: frozenset[str], scheduler: str,
             done: Callable[[Job, dict], None]) -> None:
    """Render ``jobs`` on an existing Dask distributed cluster (``scheduler``: its address).

    The workers must see the same paths as this machine (dataset and its answer store,
    notebooks, output folder): a shared file system, as national batches on a cluster have.
    """
    from distributed import Client
    from distributed import as_completed as dask_completed

    if not jobs:
        return
    with Client(scheduler) as client:
        # in a list: scatter() would send a set's elements one by one
        (shared,) = client.scatter([planned], broadcast=True)
        futures = {
            client.submit(_render_on_dask, job, shared, pure=False,
                          key=f"workbench-page-{job.digest[:12]}-{i}"): job
            for i, job in enumerate(jobs)
        }
        try:
            for future in dask_completed(list(futures)):
                job = futures[future]
                try:
                    entry = future.result()
                except Exception as exc:  # the task itself failed (a worker died)
                    entry = failed_entry(job, f"worker died: {type(exc).__name__}: {exc}")
                done(job, entry)
        except BaseException:
            client.cancel(list(futures))
            raise


def environment(data: Path, profile: Profile) -> tuple[tuple[str, str], ...]:
    """What every page kernel runs with: the dataset (whose answer store its pages read),
    publishing mode and the viewing profile (which nothing inside a page can widen)."""
    from workbench.disclosure import PUBLISHING_ENV

    env = {"WORKBENCH_DATA": str(data), PUBLISHING_ENV: "1", "MPLBACKEND": "Agg",
           **profile_environment(profile)}
    return tuple(sorted(env.items()))

