"""Starting or joining Ray, and a quiet console.

The console shows affalign's own lines, one progress display per pass (affalign.progress) and
real errors in full. Ray's own INFO lines (cluster start, dataset execution plans) go to Ray's
log files unless ``--verbose``; each noise line Ray would print is removed at its cause:

* the token-authentication warning: embedded Ray is started with ``RAY_AUTH_MODE=token`` set
  explicitly (the secure mode Ray picks anyway; Ray warns only when it picks it for you);
* "Progress bars disabled": affalign replaces Ray Data's bars with its own display, on purpose;
* library progress bars inside actors (weights loading, GGUF conversion): workers get
  ``TQDM_DISABLE``/``HF_HUB_DISABLE_PROGRESS_BARS`` (and actors switch transformers' bars off);
* "has constructor arguments in the object store and max_restarts > 0": Ray core (C++) logs it
  for every Ray Data actor whose restarts are enabled, because Ray Data itself passes the actor's
  map transformer by reference (an upstream bug, ray-project/ray#57733; Ray Data holds the
  reference, so restarts work). Its cause is not in affalign, and restarts must stay on, so the
  CLI drops exactly that line from the driver's stderr (``filter_core_stderr``), nothing else;
* "The Ray cluster currently does not have any available CPUs": it is logged by Ray Data's
  eager ``_execute`` (``to_arrow_refs``, ``write_parquet``) when actor pools hold every CPU; the
  passes now stream with ``iter_batches`` and their pools always leave a CPU free.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("affalign")

# set in every Ray worker of the job: no library progress bars from background processes
WORKER_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}

# lines Ray core writes to the driver's stderr that are known to be harmless (see module docstring)
DROPPED_CORE_LINES = (b"has constructor arguments in the object store and max_restarts > 0",)

_console: dict[str, Any] = {"verbose": False, "quiet": False, "filter": False}


def configure_console(verbose: bool = False, quiet: bool = False, filter_core: bool = False) -> None:
    """Console policy of this process: ``verbose`` shows Ray's own INFO logs; ``quiet`` shows only
    warnings and errors (no progress display); ``filter_core`` (the CLI) drops the known-harmless
    Ray core lines once Ray is started."""
    from affalign import progress

    _console.update(verbose=verbose, quiet=quiet, filter=filter_core and not verbose)
    progress.configure(quiet=quiet)
    quiet_libraries()  # first thing: tqdm reads its switch when it is imported


class _StderrFilter:
    """Forwards the process's fd 2 to the real stderr, line by line, minus DROPPED_CORE_LINES.

    Started after Ray's processes are spawned (they keep the real stderr); only this process's
    writes pass through it, including Ray core's C++ logging. Partial lines are forwarded as they
    come unless they could be the start of a dropped line, so nothing is held back for long.
    """

    def __init__(self) -> None:
        import sys
        import threading

        sys.stderr.flush()
        self.real = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.read_fd = r
        self.thread = threading.Thread(target=self._pump, name="affalign-stderr", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not any(p in line for p in DROPPED_CORE_LINES))
            if buf and not buf.startswith(b"["):  # Ray core lines start with "[": hold those only
                out, buf = out + buf, b""
            if out:
                self._write(out)
        if buf and not any(p in buf for p in DROPPED_CORE_LINES):
            self._write(buf)
        os.close(self.read_fd)

    def _write(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.real, data)
            except OSError:
                return
            data = data[n:]

    def stop(self) -> None:
        """Give fd 2 back to the real stderr and forward what is left."""
        import sys

        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.real, 2)  # closes the pipe's last write end: the pump drains and ends
        self.thread.join(timeout=5)
        os.close(self.real)


_filter: _StderrFilter | None = None


def filter_core_stderr() -> None:
    """Start dropping DROPPED_CORE_LINES from this process's stderr (once; stopped at exit)."""
    global _filter
    if _filter is not None or not _console["filter"]:
        return
    import atexit

    from affalign import progress

    # the progress display writes straight to the real stderr: a bar's partial line must not wait
    progress.configure(stream=os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace"))
    _filter = _StderrFilter()
    atexit.register(stop_filter)


def stop_filter() -> None:
    """Stop the stderr filter, if one runs (the CLI calls it before exiting)."""
    global _filter
    if _filter is not None:
        f, _filter = _filter, None
        f.stop()


def quiet_libraries() -> None:
    """No library progress bars in this process (and the local Ray workers it starts): tqdm, the
    Hugging Face hub and transformers (weights loading, GGUF conversion) read these switches."""
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    import sys

    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetics only
            pass


def _quiet_ray_data() -> None:
    """Ray Data's console handler at WARNING (its file log in the Ray session keeps everything)."""
    import ray.data  # noqa: F401 - configures the "ray.data" logger on import

    if _console["verbose"]:
        return
    for handler in logging.getLogger("ray.data").handlers:
        if getattr(handler, "name", None) == "console":
            handler.setLevel(logging.WARNING)
    # affalign shows its own progress instead of Ray Data's bars: mark Ray's one-time notice about
    # that as already given (ray.util.debug.log_once returns True once per key and process)
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")


def _choose_token_auth() -> None:
    """Token authentication for a new local Ray, set explicitly: the mode Ray 2.60 picks by default,
    minus its warning that it picked it. Ray reads the mode at import, so besides the environment
    (for the cluster's processes) the driver's cached config is refreshed, as Ray does itself."""
    if os.environ.get("RAY_AUTH_MODE"):
        return  # the user's choice
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # another Ray version: leave the mode to Ray
        return
    _enable_token_auth()


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> dict[str, float]:
    """Embedded local Ray by default (the machine's resources), or join ``address``; returns resources."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    quiet_libraries()  # the driver's own libraries too; a local Ray's workers inherit the environment
    import ray
    import ray.data

    _quiet_ray_data()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "ignore_reinit_error": True,
            "log_to_driver": True,  # worker errors and warnings reach the console in full
            "logging_level": logging.INFO if _console["verbose"] else logging.WARNING,
        }
        # inside `ray job submit` Ray sets RAY_ADDRESS for the driver: join that cluster
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            kwargs["address"] = address
            # a cluster's workers were not started from this process's environment
            kwargs["runtime_env"] = {"env_vars": dict(WORKER_ENV)}
        else:
            # "local": always a new embedded Ray; without it ray.init() would join whichever
            # cluster `ray start` last started on this machine, with that cluster's resources
            kwargs["address"] = "local"
            # a new local cluster: token authentication, chosen explicitly (no warning)
            _choose_token_auth()
            if num_cpus:
                kwargs["num_cpus"] = num_cpus
            if num_gpus is not None:
                kwargs["num_gpus"] = num_gpus
        ray.init(**kwargs)
        filter_core_stderr()
    ctx = ray.data.DataContext.get_current()
    # every pass shows affalign's own progress display (affalign.progress), counted on the driver
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    resources = dict(ray.cluster_resources())
    log.info("ray: %s CPU, %s GPU", resources.get("CPU", 0), resources.get("GPU", 0))
    return resources


def cluster_info() -> dict[str, Any]:
    """Where the job runs, for run.json: live nodes and the cluster's CPU/GPU totals."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    return {"nodes": len(nodes), "resources": {k: res.get(k, 0.0) for k in ("CPU", "GPU")}}
