"""Builds build/vigil_VERSION_amd64.deb: vigil for a stock Debian.

    python packaging/build_deb.py [--out build]

What goes in: the vigil and vigilctl packages under
/usr/lib/python3/dist-packages with bytecode compiled now (unchecked-hash
.pyc files, so no timestamp decides whether they are used) and the compiled
cffi module vigil._sysc (built here from vigil/_sys_build.py); /usr/sbin/vigil,
/usr/sbin/vigil-net, /usr/sbin/vigil-devlog and /usr/bin/vigilctl; the shipped units (units/system
and units/debian) in /usr/lib/vigil/units; the post-install conversion of the
system's own systemd units (packaging/convert_debian.py) that writes admin
units to /etc/vigil/units; man pages. Its Python dependencies are Debian's
own packages (python3-cffi-backend, python3-prctl, python3-pyroute2,
python3-tomli-w), so nothing is bundled.

Installing it changes nothing about how the machine boots: no /sbin/init,
no /sbin/poweroff (systemd-sysv keeps those); vigil runs only when the
kernel is told `init=/usr/sbin/vigil` (docs/debian.md). Every file gets the
same owner and timestamp, so the same tree gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = "usr/lib/python3/dist-packages"
PYTHON = "/usr/bin/python3"
# Debian's names for the project's dependencies (all in bookworm, checked
# with apt-cache policy: cffi-backend 1.15.1, prctl 1.8.1, pyroute2 0.7.2,
# tomli-w 1.0.0). The cffi module built here loads with backend 1.15.
DEPENDS = ["python3 (>= 3.11)", "python3-cffi-backend", "python3-prctl",
           "python3-pyroute2", "python3-tomli-w"]
EPOCH = 1767225600  # 2026-01-01: every file's mtime, so the package is reproducible


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def launcher(module: str, args: str = "") -> str:
    """-I -S: nothing from the environment or user site; the packages are
    found where Debian's python3 keeps them, added by hand (site is not run)."""
    return (f"#!{PYTHON} -IS\nimport sys\nsys.path.append('/{SITE}')\n"
            f"from {module} import main\nsys.exit(main({args}))\n")


def compile_sysc(dest: Path, scratch: Path) -> None:
    """vigil._sysc from its cffi builder, compiled in a scratch directory of
    fixed name (the compiler records it, so a random one changes the bytes)."""
    spec = importlib.util.spec_from_file_location("_sys_build", ROOT / "vigil" / "_sys_build.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    if scratch.exists():
        shutil.rmtree(scratch)
    built = Path(builder.ffibuilder.compile(tmpdir=str(scratch), verbose=False))
    shutil.copyfile(built, dest / "_sysc.abi3.so")
    (dest / "_sysc.abi3.so").chmod(0o644)
    shutil.rmtree(scratch)


def add_package(tree: Path, name: str) -> None:
    for src in sorted((ROOT / name).rglob("*.py")):  # its layers' subpackages too
        if src.name == "_sys_build.py" or "__pycache__" in src.parts:
            continue  # the builder is not needed at run time (and imports cffi)
        relative = src.relative_to(ROOT)
        target = tree / SITE / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        py_compile.compile(str(target), cfile=importlib.util.cache_from_source(str(target)),
                           dfile=f"/{SITE}/{relative}", doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def add_units(tree: Path) -> None:
    units = tree / "usr/lib/vigil/units"
    for top in ("system", "debian"):
        for src in sorted((ROOT / "units" / top).rglob("*.toml")):
            dest = units / src.relative_to(ROOT / "units" / top)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    (tree / "etc/vigil/units").mkdir(parents=True)


def add_docs(tree: Path) -> None:
    doc = tree / "usr/share/doc/vigil"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: vigil\n\nFiles: *\nCopyright: the vigil developers\nLicense: MIT\n")
    for name in ("debian.md", "system.md", "units.md", "vigilctl.md"):
        _gzip(ROOT / "docs" / name, doc / f"{name}.gz")
    shutil.copyfile(ROOT / "initramfs/etc/vigil/network.toml", doc / "network.toml.example")
    man = tree / "usr/share/man/man8"
    man.mkdir(parents=True)
    for page in sorted((ROOT / "packaging" / "man").glob("*.8")):
        _gzip(page, man / f"{page.name}.gz")


def _gzip(src: Path, dest: Path) -> None:
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                compresslevel=9, mtime=0) as gz:
        gz.write(src.read_bytes())


def add_control(tree: Path, ver: str) -> None:
    debian = tree / "DEBIAN"
    debian.mkdir()
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) // 1024
    (debian / "control").write_text(
        f"Package: vigil\nVersion: {ver}\nArchitecture: amd64\n"
        "Maintainer: vigil developers <vigil@localhost>\n"
        f"Installed-Size: {size}\nDepends: {', '.join(DEPENDS)}, libc6\n"
        "Section: admin\nPriority: optional\n"
        "Description: init system and service supervisor in Python\n"
        " vigil runs as PID 1 (boot with init=/usr/sbin/vigil), as a container\n"
        " entrypoint or as a per-user supervisor. Installing it does not change\n"
        " the init the machine boots; the post-install converts the system's\n"
        " services into /etc/vigil/units (report: /etc/vigil/conversion.txt).\n")
    for script in ("postinst", "postrm"):
        shutil.copyfile(ROOT / "packaging" / script, debian / script)
        (debian / script).chmod(0o755)


def build(out: Path) -> Path:
    ver = version()
    deb = out / f"vigil_{ver}_amd64.deb"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        for name in ("vigil", "vigilctl"):
            add_package(tree, name)
        compile_sysc(tree / SITE / "vigil", out / "deb-cffi")
        for path, text in (("usr/sbin/vigil", launcher("vigil.cli")),
                           ("usr/sbin/vigil-net", launcher("vigil.system.net")),
                           ("usr/sbin/vigil-devlog", launcher("vigil.system.devlog")),
                           ("usr/bin/vigilctl", launcher("vigilctl.main")),
                           ("usr/lib/vigil/convert-debian",
                            (ROOT / "packaging" / "convert_debian.py").read_text())):
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
            (tree / path).chmod(0o755)
        add_units(tree)
        add_docs(tree)
        add_control(tree, ver)
        for entry in [tree, *tree.rglob("*")]:
            os.utime(entry, (EPOCH, EPOCH), follow_symlinks=False)
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree),
                        str(deb)], check=True, env=env, stdout=subprocess.DEVNULL)
    return deb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the vigil .deb.")
    p.add_argument("--out", default=str(ROOT / "build"))
    opts = p.parse_args(argv)
    deb = build(Path(opts.out))
    print(f"{deb}: {deb.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
