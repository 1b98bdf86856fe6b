"""The real optuna-dashboard, started by our command, serves the study over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hpsearch.config import TrainConfig
from hpsearch.data import Data
from hpsearch.search.runner import run_study
from hpsearch.spec import StudySpec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, deadline: float) -> object:
    """GET ``url`` until the server answers or the deadline passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_dashboard_serves_the_study_api_on_loopback(tmp_path: Path, digits: Data) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    run_study(StudySpec(name="shown", strategy="random", n_trials=2, train=TrainConfig(epochs=1, hidden=(8,))),
              storage, data=digits)
    port = free_port()
    command = [sys.executable, "-m", "hpsearch", "dashboard", "--storage", storage, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", time.monotonic() + 60)
        assert isinstance(studies, dict)
        names = [study["study_name"] for study in studies["study_summaries"]]
        assert names == ["shown"]
        study_id = studies["study_summaries"][0]["study_id"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{study_id}", time.monotonic() + 10)
        assert isinstance(detail, dict) and len(detail["trials"]) == 2
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in output


def test_notes_written_without_importing_the_dashboard_read_back_through_its_api(tmp_path: Path, digits: Data) -> None:
    from hpsearch.dashboard import write_notes
    from hpsearch.storage import open_storage
    from hpsearch.study_notes import study_note

    storage = open_storage(f"sqlite:///{tmp_path / 'notes.db'}")
    run_study(StudySpec(name="noted", strategy="random", n_trials=1, train=TrainConfig(epochs=1, hidden=(8,))),
              storage, data=digits)
    write_notes("noted", storage)
    write_notes("noted", storage)  # a second version replaces the first

    import optuna
    from optuna_dashboard import get_note

    assert get_note(optuna.load_study(study_name="noted", storage=storage)) == study_note("noted", storage)
