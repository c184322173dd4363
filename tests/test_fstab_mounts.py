"""fstab at run time, not only parsed: mount_fstab in a private mount
namespace (unshare) on entries that name their source by LABEL=, UUID= and
PARTUUID=, bind and rbind, a swap that is not there with and without
nofail, and fsck before a mount with a pass number. Nothing touches the
host: the namespace has its own /dev (a tmpfs with /dev/disk links to test
directories) and the swap device does not exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, can_unshare

pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root for a mount namespace")

SCRIPT = r"""
import json, os, sys
from vigil.kernel import syscalls
from vigil.system import fstab, mounts
tmp = sys.argv[1]
# a /dev of our own: /dev/null back from the host's, and /dev/disk links
os.makedirs(tmp + "/olddev")
syscalls.mount("/dev", tmp + "/olddev", "", mounts.MS["bind"], "")
syscalls.mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755")
open("/dev/null", "w").close()
syscalls.mount(tmp + "/olddev/null", "/dev/null", "", mounts.MS["bind"], "")
for folder, name, target in (("by-label", "data", "lab"), ("by-uuid", "1234-abcd", "uid"),
                             ("by-partuuid", "0f0f-01", "part")):
    os.makedirs("/dev/disk/" + folder, exist_ok=True)
    os.symlink(f"{tmp}/src-{target}", f"/dev/disk/{folder}/{name}")
# a tree with a submount, for bind and rbind
syscalls.mount("tmpfs", tmp + "/tree/sub", "tmpfs", 0, "")
open(tmp + "/tree/sub/inner", "w").write("inner")
entries, problems = fstab.parse(open(tmp + "/fstab").read(), "fstab")
assert not problems, problems
logged = []
mounts.mount_fstab(entries, lambda sev, msg: logged.append([sev, msg]), machine=True,
                   fsck_timeout=float(sys.argv[2]))
seen = {p: os.path.exists(tmp + "/mnt/" + p) for p in
        ("lab/marker", "uid/marker", "part/marker", "bind/sub/inner", "rbind/sub/inner")}
print(json.dumps({"logged": logged, "seen": seen}))
"""


def run(tmp: Path, fstab_text: str, fsck_timeout: float = 300.0) -> dict:
    for target in ("lab", "uid", "part"):
        (tmp / f"src-{target}").mkdir()
        (tmp / f"src-{target}" / "marker").write_text(target)
    (tmp / "tree" / "sub").mkdir(parents=True)
    (tmp / "fstab").write_text(fstab_text)
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                          "-c", SCRIPT, str(tmp), str(fsck_timeout)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sources_by_label_uuid_and_partuuid(tmp_path):
    # breaks: vigil/system/fstab.py:resolve: the LABEL= pair dropped from its table (the
    # mount of "LABEL=data" fails: no such file).
    got = run(tmp_path, f"LABEL=data {tmp_path}/mnt/lab none bind 0 0\n"
                        f'UUID="1234-abcd" {tmp_path}/mnt/uid none bind 0 0\n'
                        f"PARTUUID=0f0f-01 {tmp_path}/mnt/part none bind 0 0\n")
    assert got["seen"]["lab/marker"] and got["seen"]["uid/marker"] and got["seen"]["part/marker"]
    assert [m for s, m in got["logged"] if s != "info"] == []


def test_rbind_takes_submounts_and_bind_does_not(tmp_path):
    # breaks: vigil/system/fstab.py: "rbind" given the flags of "bind" (no MS_REC: the
    # submount is missing under the rbind target).
    got = run(tmp_path, f"{tmp_path}/tree {tmp_path}/mnt/bind none bind 0 0\n"
                        f"{tmp_path}/tree {tmp_path}/mnt/rbind none rbind 0 0\n")
    assert got["seen"]["rbind/sub/inner"] is True
    assert got["seen"]["bind/sub/inner"] is False


def test_a_missing_swap_is_a_warning_with_nofail_and_an_error_without(tmp_path):
    # breaks: vigil/system/mounts.py:mount_fstab: the swap's `"warning" if entry.nofail`
    # -> always "error".
    ghost = tmp_path / "no-such-swap"
    got = run(tmp_path, f"{ghost}-1 none swap sw,nofail 0 0\n{ghost}-2 none swap sw 0 0\n")
    assert got["logged"] == [
        ["warning", f"fstab line 1 (none): swapon {ghost}-1 failed: No such file or directory"],
        ["error", f"fstab line 2 (none): swapon {ghost}-2 failed: No such file or directory"]]


def test_fsck_runs_before_a_mount_with_a_pass_number(tmp_path):
    # A device that exists (a plain file); an fsck timeout so short that the run
    # is cut: its message proves fsck ran, for the entry with a pass number only.
    # breaks: vigil/system/mounts.py:mount_fstab: `if entry.passno > 0 and not entry.bind:`
    # -> `if False:` (no fsck message).
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    got = run(tmp_path, f"{disk} {tmp_path}/mnt/checked ext4 defaults 0 2\n"
                        f"{disk} {tmp_path}/mnt/unchecked ext4 defaults 0 0\n", 0.000001)
    fsck = [m for _, m in got["logged"] if m.startswith("fsck of")]
    assert fsck == [f"fsck of {disk} took more than 1e-06s; mounting as it is"]
    mount_errors = [m for s, m in got["logged"] if s == "error" and "mounting" in m
                    and "failed" in m]
    assert len(mount_errors) == 2  # a plain file is no block device: both fail, logged
