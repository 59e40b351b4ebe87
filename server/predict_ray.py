"""The Ray engine of bulk pre-annotation: Ray Data ``map_batches`` over an actor pool of ``BatchPredictor``s.

Ray is an optional extra (``pip install 'goldloop[ray]'``): it is imported here only, when a run asks for it.
Each actor loads the project's pinned version once (1 CPU and one inference thread each, one actor per CPU of
the cluster); the driver (this process) keeps Label Studio to itself: it scans, sends the rows, and writes the
predictions each finished batch brings back, so the API token never leaves it. On a cluster every node needs
goldloop installed and the data dir's models/ at the same path (a shared file system).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Iterator

from .predict_batch import BatchPredictor, Job, PredictError, decode

log = logging.getLogger(__name__)

LOCAL = "local"
CONNECT_TIMEOUT_S = 5.0


def import_ray():
    """The ray module, or PredictError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra, not only the core
    except ImportError:
        raise PredictError("--ray needs Ray Data: pip install 'goldloop[ray]' (or: pip install 'ray[data]')") from None
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address ("HOST:PORT", "ray://HOST:PORT"); None for "auto" (Ray finds it)."""
    if address == "auto":
        return None
    bare = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise PredictError(f"--ray expects 'local', 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_ray(address: str) -> None:
    """Fail fast: Ray is installed, and a cluster address answers (Ray itself waits minutes on a dead one)."""
    import_ray()
    if address == LOCAL:
        return
    hp = host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise PredictError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                           "`ray start --head`, or use --ray local") from None


def start_ray(ray, address: str, num_cpus: int | None) -> bool:
    """Connect to the cluster, or start a local instance; True when this process started Ray (and stops it)."""
    if ray.is_initialized():
        return False
    # errors reach the caller as exceptions: Ray's own notices (token auth, progress bars) would bury goldloop's bar
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address == LOCAL:
            ray.init(num_cpus=num_cpus or len(os.sched_getaffinity(0)), **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PredictError(f"cannot start Ray ({address}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def root_cause(exc: BaseException) -> BaseException:
    """The exception an actor raised, out of Ray's wrappers."""
    seen = 0
    while getattr(exc, "cause", None) is not None and seen < 10:
        exc, seen = exc.cause, seen + 1
    return exc


def ray_batches(job: Job, rows: list[dict], batch_size: int, address: str, num_cpus: int | None,
                stats: dict) -> Iterator[list[dict]]:
    """Finished batches as Label Studio prediction imports, in the order they finish; puts startup_s and actors in stats."""
    ray = import_ray()
    t0 = time.perf_counter()
    started = start_ray(ray, address, num_cpus)
    stats["startup_s"] = round(time.perf_counter() - t0, 2)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # goldloop's own bar counts what reached Label Studio
        ctx.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(cpus, -(-len(rows) // batch_size)))
        stats["actors"] = actors
        one_thread = Job(job.project_key, job.label_config, job.version, job.settings.with_overrides(threads=1))
        ds = ray.data.from_items(rows, override_num_blocks=max(actors, min(len(rows) // batch_size, 4 * actors)))
        out = ds.map_batches(BatchPredictor, fn_constructor_args=(one_thread,), batch_size=batch_size, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        try:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                yield decode(batch)
        except PredictError:
            raise
        except Exception as exc:  # an actor's error arrives wrapped in Ray's exception types: show the actor's own
            cause = root_cause(exc)
            if isinstance(cause, PredictError):
                raise PredictError(str(cause)) from None
            first = (str(cause).strip().splitlines() or [""])[-1][:300]
            raise PredictError(f"the Ray run failed: {type(cause).__name__}: {first}") from None
    finally:
        if started:
            ray.shutdown()

