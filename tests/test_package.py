"""The .deb carries every module of vigil and vigilctl, subpackages
included, and its launchers name modules that exist (no VM needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.daemon import ROOT

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def test_the_deb_carries_every_module_and_its_launchers_run_them(tmp_path):
    # breaks: packaging/build_deb.py:add_package globbing vigil/*.py only (the
    # layers' subpackages were left out and the image booted no vigil).
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import build_deb
    finally:
        sys.path.pop(0)
    deb = build_deb.build(tmp_path / "out")
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    shipped = set(re.findall(r"\./usr/lib/python3/dist-packages/(\S+\.py)$", listing, re.M))
    source = {str(p.relative_to(ROOT)) for pkg in ("vigil", "vigilctl")
              for p in (ROOT / pkg).rglob("*.py")
              if p.name != "_sys_build.py" and "__pycache__" not in p.parts}
    assert source - shipped == set(), "modules the package leaves out"
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, timeout=60)
    for launcher in ("usr/sbin/vigil", "usr/sbin/vigil-net", "usr/sbin/vigil-devlog",
                     "usr/bin/vigilctl"):
        module = re.search(r"^from (\S+) import main$", (tree / launcher).read_text(), re.M)
        assert module, launcher
        path = tree / "usr/lib/python3/dist-packages" / (module.group(1).replace(".", "/")
                                                         + ".py")
        assert path.is_file(), f"{launcher} runs {module.group(1)}, which is not shipped"
