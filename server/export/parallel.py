"""Helper processes for large exports: CoNLL and Parquet built by TokenOutputs in spawned processes.

The export feeds each helper pickled batches of records over a pipe; each helper owns whole files (the
splits of HELPER_SPLITS), so every file keeps the record order without merging, and the files are
byte-identical to an in-process export.
"""
from __future__ import annotations

import pickle
import queue
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_backend.schema import TaskSpec
from ml_backend.splits import SPLITS

from ..errors import ExportError
from .hf import hf_layout
from .tokens import TokenOutputs, bio_controls, tag_names


def token_worker(conn: Any, root: str, spec: TaskSpec, formats: Sequence[str], primary: str,
                 splits: Sequence[str], hf_schema: Any) -> None:
    """Helper process body: build token outputs from record batches until None, then report (or the error)."""
    outputs = None
    try:
        outputs = TokenOutputs(Path(root), spec, formats, primary, splits, hf_schema)
        conn.send(("ready", None))
        while True:
            batch = conn.recv()
            if batch is None:
                break
            for rec in batch:
                outputs.write(rec)
        conn.send(("done", outputs.close()))
    except EOFError:  # the export went away (aborted or killed): stop writing
        if outputs is not None:
            outputs.abort()
    except Exception as exc:  # noqa: BLE001 - reported to the export process, which raises it
        if outputs is not None:
            outputs.abort()
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        conn.close()


TOKEN_OUTPUT_KEYS = ("id", "text", "split", "spans", "choices")  # the record fields TokenOutputs reads
_END = pickle.dumps(None)  # the end mark a helper receives after the last batch


class TokenWorker:
    """TokenOutputs in a helper process (spawned), fed batches of records over a pipe.

    A sender thread writes pickled batches to the pipe from a queue of at most QUEUE batches, so the export
    runs ahead of a busy helper instead of waiting for it at every batch (waiting would starve the other
    helper meanwhile). The bounded queue keeps memory flat: a full one blocks the export
    until the helper catches up.
    """

    BATCH = 256
    QUEUE = 16  # batches the export may run ahead of its helper (16 x 256 abstracts: about 6 MB)

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str, splits: Sequence[str],
                 hf_schema: Any = None):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=token_worker, args=(child, str(root), spec, tuple(formats), primary, tuple(splits), hf_schema),
            daemon=True,
            name="goldloop-export-tokens",
        )
        self.proc.start()
        child.close()
        self.batch: list[dict] = []
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.pipe_broken = threading.Event()
        self.sender = threading.Thread(target=self._pump, name="goldloop-export-send", daemon=True)
        self.sender.start()

    def _pump(self) -> None:
        """Sender thread: pipe queued batches to the helper until the end mark or a broken pipe."""
        while True:
            buf = self.queue.get()
            try:
                self.conn.send_bytes(buf)
            except OSError:  # the helper stopped: the export's next send reports why
                self.pipe_broken.set()
                return
            if buf is _END:
                return

    def _recv(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise ExportError(f"export helper process exited (code {self.proc.exitcode}) before finishing") from None

    def _reply(self, expect: str) -> Any:
        kind, payload = self._recv()
        if kind == "error":
            raise ExportError(f"export helper process failed: {payload}")
        if kind != expect:
            raise ExportError(f"export helper process answered {kind!r}, expected {expect!r}")
        return payload

    def _send(self, obj: Any) -> None:
        buf = _END if obj is None else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        while not self.pipe_broken.is_set():
            try:
                self.queue.put(buf, timeout=0.5)
                return
            except queue.Full:
                continue
        self._helper_stopped()

    def _helper_stopped(self) -> None:
        """The pipe broke: the helper stopped; its last message (if any) says why."""
        while True:
            kind, payload = self._recv()  # raises "exited" once the pipe is drained
            if kind == "error":
                raise ExportError(f"export helper process failed: {payload}") from None

    def write(self, rec: dict) -> None:
        # only what CoNLL and Parquet read crosses the pipe (pickling is the helper's overhead)
        self.batch.append({k: rec[k] for k in TOKEN_OUTPUT_KEYS})
        if len(self.batch) >= self.BATCH:
            self._send(self.batch)
            self.batch = []

    def finish(self) -> None:
        """Send what is buffered and the end mark (the helper then closes its files)."""
        if self.batch:
            self._send(self.batch)
            self.batch = []
        self._send(None)
        self.sender.join()
        if self.pipe_broken.is_set():
            self._helper_stopped()

    def result(self) -> dict:
        """Wait for the helper's report (after finish)."""
        self._reply("ready")
        result = self._reply("done")
        self.conn.close()
        self.proc.join(timeout=60)
        return result

    def abort(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        try:  # let the sender thread end (if it is sending, the dead helper's pipe ends it)
            self.queue.put_nowait(_END)
        except queue.Full:
            pass


# helper processes by split: each owns whole files, so every file keeps the record order without merging;
# train is ~70% of documents, dev + test ~30%, and the export process itself takes the remaining load
HELPER_SPLITS = (("train",), ("dev", "test"))


class TokenWorkers:
    """One TokenWorker per group of splits (HELPER_SPLITS); records go to the helper owning their split."""

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str):
        self.workers: list[TokenWorker] = []
        hf_schema = None
        if "hf" in formats:
            bio = bio_controls(spec, primary)
            hf_schema = hf_layout(spec, bio, tag_names(bio))
        try:
            for group in HELPER_SPLITS:
                self.workers.append(TokenWorker(root, spec, formats, primary, group, hf_schema))
        except BaseException:
            self.abort()
            raise
        self.route = {sp: w for w, group in zip(self.workers, HELPER_SPLITS) for sp in group}

    def write(self, rec: dict) -> None:
        self.route[rec["split"]].write(rec)

    def close(self) -> dict:
        for w in self.workers:
            w.finish()
        merged: dict = {"hashes": {}, "sizes": {}, "overlaps_dropped": Counter(), "hf": None}
        for w in self.workers:
            r = w.result()
            merged["hashes"].update(r["hashes"])
            merged["sizes"].update(r["sizes"])
            merged["overlaps_dropped"].update(r["overlaps_dropped"])
            if r["hf"] is not None:
                hf = merged["hf"] or {"rows": {}, "columns": r["hf"]["columns"]}
                hf["rows"].update(r["hf"]["rows"])
                merged["hf"] = hf
        if merged["hf"] is not None:
            merged["hf"]["rows"] = {sp: merged["hf"]["rows"][sp] for sp in SPLITS}
        merged["overlaps_dropped"] = dict(merged["overlaps_dropped"])
        return merged

    def abort(self) -> None:
        for w in self.workers:
            w.abort()
