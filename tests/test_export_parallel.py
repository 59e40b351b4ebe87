"""Helper processes: the export runs ahead of a busy helper within a bound; a killed helper is a clear error."""
from __future__ import annotations

import signal

import pytest

from ml_backend.schema import parse_label_config
from server.errors import ExportError
from server.export import ExportOptions, ProjectInfo, export_dataset, list_versions
from server.export.parallel import TokenWorker
from tests.plugins.export import SIMPLE_XML, many_tasks


def test_export_runs_ahead_of_a_stopped_helper_within_a_bound(tmp_path):
    import os
    import threading

    spec = parse_label_config(SIMPLE_XML)
    worker = TokenWorker(tmp_path, spec, ("conll",), "text", ("train",))

    def rec(i: int) -> dict:  # distinct texts: a batch (256 x 2 KB) is larger than the pipe's own buffer
        return {"id": i, "text": f"Gout in the knee {i}. " * 100, "split": "train", "choices": {"sentiment": []},
                "spans": [{"start": 0, "end": 4, "label": "Disease", "text": "Gout", "from_name": "entities"}]}

    def feed(n: int) -> threading.Thread:
        th = threading.Thread(target=lambda: [worker.write(rec(i)) for i in range(n)], daemon=True)
        th.start()
        return th

    os.kill(worker.proc.pid, signal.SIGSTOP)  # a helper that reads nothing for a while
    try:
        ahead = feed(worker.QUEUE * worker.BATCH)
        ahead.join(timeout=30)
        assert not ahead.is_alive(), "the export waited for the helper instead of queueing"
        beyond = feed(3 * worker.BATCH)  # past the queue (and what the sender holds): waits, memory stays bounded
        beyond.join(timeout=2)
        assert beyond.is_alive()
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    beyond.join(timeout=60)
    assert not beyond.is_alive()
    worker.finish()
    result = worker.result()
    conll = (tmp_path / "conll" / "train.conll").read_text(encoding="utf-8")
    assert conll.count("-DOCSTART-") == (worker.QUEUE + 3) * worker.BATCH
    assert result["sizes"]["conll/train.conll"] == len(conll.encode("utf-8"))


def test_helper_process_killed_is_a_clear_error(tmp_path, fixture_xml, fixture_tasks):
    import multiprocessing

    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)

    def tasks():
        for i, t in enumerate(many_tasks(fixture_tasks, 20_000)):
            if i == 1500:
                helpers = [p for p in multiprocessing.active_children() if p.name == "goldloop-export-tokens"]
                assert helpers, "no helper process running"
                for p in helpers:
                    p.kill()
                    p.join()
            yield t

    with pytest.raises(ExportError, match="export helper process"):
        export_dataset(tasks(), spec, project, ExportOptions(tmp_path, parallel=True))
    assert list_versions(tmp_path / project.slug) == []
    assert not list((tmp_path / project.slug).glob(".tmp-*"))
