"""The 60-second soak of `make test` (`make soak` runs it for 10 minutes)."""

from __future__ import annotations

import os

import pytest

from tests.daemon import can_unshare
from tests.soak import Soak


@pytest.mark.skipif(not can_unshare(), reason="needs a PID namespace")
def test_soak_and_chaos_for_a_minute(tmp_path):
    seconds = float(os.environ.get("VIGIL_SOAK_SECONDS", "60"))
    report = Soak(tmp_path, seconds).run()
    print(f"\nsoak: {report.ops} operations, {report.kills} SIGKILLs, {report.stops} "
          f"SIGSTOPs, {report.checks} checks")
    assert report.kills > seconds and report.ops > seconds * 10, "the chaos really ran"
    assert report.checks > seconds
    assert report.breaches == []
