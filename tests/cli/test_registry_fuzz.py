"""The fuzz test of issue 11: 10,000 generated and mutated user registry files through ``zoo list``,
``zoo info`` and ``zoo download`` (``registry_fuzz.py`` says how they are made), the last 1,000 offline.

Only the project's own errors come out, never a traceback; no file outside the allowed folders is opened
(an audit hook on ``open``, with a canary folder the hostile paths point at); no request reaches the
loopback origin while offline. It runs in a subprocess because an audit hook cannot be removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parent / "registry_fuzz.py"


@pytest.mark.slow
def test_registry_fuzz(tmp_path):
    result = subprocess.run([sys.executable, str(DRIVER), str(tmp_path), "--cases", "10000", "--offline", "1000",
                             "--seed", "0"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["audit_sees_reads"], "the audit hook did not see a read of the canary: the check below is void"
    assert report["failure_count"] == 0, json.dumps(report["failures"], indent=1)[:6000]
    assert report["violations"] == [], report["violations"]
    assert report["requests_while_offline"] == 0
    assert report["commands"] == 3 * 10_000
    outcomes = report["outcomes"]
    # The cases reach every path: clean downloads, refused bytes, failed sources, skipped files, offline.
    assert outcomes["ok"] > 1000 and report["requests"] > 100
    for kind in ("ChecksumMismatchError", "DownloadError", "UnknownModelError", "OfflineError"):
        assert outcomes.get(kind, 0) > 0, (kind, outcomes)
    assert report["distinct_skip_reasons"] >= 150, report["skip_reasons"]
    print(json.dumps({k: report[k] for k in ("cases", "seconds", "outcomes", "distinct_errors",
                                             "distinct_skip_reasons", "requests", "requests_while_offline")}))
