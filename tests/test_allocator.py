"""The ``fusionrec`` program's allocator settings: fewer page faults while describing photos.

Each check runs in a child process, so that this process's allocator stays as
it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fusionrec.cli
from fusionrec._allocator import KEEP_FREED_MEMORY

DESCRIBE_KEEPING_RESULTS = """
import json, resource, sys
from fusionrec._allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else None
from fusionrec.datasets import load_demo_products
from fusionrec.images import load_image
from fusionrec.traditional.detectors import make_detector
images = [load_image(path) for path in load_demo_products().data[:30]]
detector = make_detector("opponent-rootsift")
kept = [detector.describe(image) for image in images[:5]]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
kept += [detector.describe(image) for image in images[5:]]
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(images[5:])
print(json.dumps({"applied": applied, "faults": faults}))
"""

SETTINGS = """
import json, os
from fusionrec._allocator import KEEP_FREED_MEMORY, keep_freed_memory
settings = {"applied": keep_freed_memory()}
print(json.dumps(settings | {name: os.environ.get(name) for name in KEEP_FREED_MEMORY}))
"""


def run_child(script: str, *arguments: str, **environment: str) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in KEEP_FREED_MEMORY}
    completed = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        env=env | environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_describing_with_results_kept_faults_far_fewer_pages():
    untouched = run_child(DESCRIBE_KEEPING_RESULTS, "off")
    tuned = run_child(DESCRIBE_KEEPING_RESULTS, "on")
    assert tuned["applied"] is True
    assert tuned["faults"] < untouched["faults"] / 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_settings_reach_child_processes_and_the_users_win():
    defaults = run_child(SETTINGS)
    assert defaults == {"applied": True, **{k: str(v) for k, v in KEEP_FREED_MEMORY.items()}}
    chosen = run_child(SETTINGS, MALLOC_TRIM_THRESHOLD_="1048576")
    assert chosen["MALLOC_TRIM_THRESHOLD_"] == "1048576"
    assert chosen["MALLOC_MMAP_THRESHOLD_"] == str(KEEP_FREED_MEMORY["MALLOC_MMAP_THRESHOLD_"])


def test_a_setting_that_is_not_a_number_leaves_the_allocator_alone():
    chosen = run_child(SETTINGS, MALLOC_TRIM_THRESHOLD_="lots")
    assert chosen == {
        "applied": False,
        "MALLOC_TRIM_THRESHOLD_": "lots",
        "MALLOC_MMAP_THRESHOLD_": None,
    }


def test_the_program_applies_the_settings_before_running_its_command(monkeypatch):
    calls = []
    monkeypatch.setattr(fusionrec.cli, "keep_freed_memory", lambda: calls.append("allocator"))
    monkeypatch.setattr(fusionrec.cli, "main", lambda: calls.append("command") or 3)
    with pytest.raises(SystemExit) as exited:
        fusionrec.cli.console()
    assert exited.value.code == 3
    assert calls == ["allocator", "command"]
