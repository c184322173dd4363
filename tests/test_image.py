"""The image builder: reproducible bytes, and under the size budget."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT

pytestmark = pytest.mark.skipif(not list(Path("/boot").glob("vmlinuz-*")) or
                                not Path("/bin/busybox").exists(),
                                reason="needs linux-image-amd64 and busybox-static")


def test_same_inputs_same_bytes_and_under_25_mb(tmp_path):
    digests = []
    for _ in range(2):
        out = subprocess.run([sys.executable, str(ROOT / "initramfs" / "build.py"), "--out",
                              str(tmp_path), "--no-disk"], capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        image = (tmp_path / "initramfs.cpio.gz").read_bytes()
        digests.append(hashlib.sha256(image).hexdigest())
    assert digests[0] == digests[1]
    assert len(image) < 25_000_000, f"{len(image) / 1e6:.1f} MB"
    listing = subprocess.run(["sh", "-c", f"lz4 -dc {tmp_path}/initramfs.cpio.gz | cpio -t"],
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, "cpio(1) reads what we wrote"
    names = set(listing.stdout.split())
    assert {"init", "sbin/init", "usr/bin/python3.11", "bin/busybox", "dev/console",
            "etc/vigil/units/default.toml", "etc/vigil/units.compiled"} <= names
