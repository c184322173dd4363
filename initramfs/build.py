"""Builds the bootable image: an lz4 cpio (the whole system in an initramfs)
and the same tree as an ext4 root disk, from what the host has installed.

    python initramfs/build.py [--out build] [--kernel-version V]

Contents: Debian's python3.11; of its standard library only the import
closure of vigil, vigilctl and the shipped units (computed here with
modulefinder), compiled to sourceless .pyc, with the extension modules of
that closure and the shared libraries they and the interpreter need;
vigil, vigilctl and their dependencies; the units compiled (`vigil compile`:
boot parses no TOML); busybox
for a shell and the basic tools; the kernel modules for virtio disks, the
network and ext4 with their modules.dep; the shipped units and an /etc for
the demo. Entries are sorted and timestamps fixed, so the same inputs give
the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (bench/)
from tree import Tree

ROOT = Path(__file__).resolve().parent.parent
PYVER = "3.11"
PYTHON = f"/usr/bin/python{PYVER}"
STDLIB = Path(f"/usr/lib/python{PYVER}")
SKIP_DYNLOAD = ("_test", "_tkinter", "_curses", "_dbm", "_gdbm", "xxlimited",
                "_xxtestfuzz", "_ctypes_test", "audioop")
MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng",
           "crc32c_generic", "i6300esb",
           "ext4"]
BUSYBOX = "/bin/busybox"


def pyc(source: bytes, guest_path: str) -> bytes:
    """A sourceless .pyc: magic, flags 0, mtime 0, size 0, then the code."""
    code = compile(source, guest_path, "exec", dont_inherit=True, optimize=0)
    return importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code)


def add_python_tree(tree: Tree, src: Path, dest: str, skip: frozenset[str] = frozenset()) -> None:
    """Copies a package or directory of modules, .py compiled to .pyc."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in skip or part == "__pycache__" for part in rel.parts):
            continue
        guest = f"{dest}/{rel}"
        if path.is_dir():
            tree.dir(guest)
        elif path.suffix == ".py":
            tree.file(guest[:-3] + ".pyc", pyc(path.read_bytes(), guest))
        elif path.suffix == ".so" and not rel.name.startswith(SKIP_DYNLOAD):
            tree.copy(path, guest)


def shared_libraries(binaries: list[str]) -> set[str]:
    found: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > parts.index("=>") + 1:
                lib = parts[parts.index("=>") + 1]
                if lib.startswith("/"):
                    found.add(lib)
            elif parts and parts[0].startswith("/"):
                found.add(parts[0])
    return found


# What the import closure starts from besides every module of vigil and
# vigilctl: what the interpreter loads at start, `python3 -m` and site (the
# units run `python3 -m http.server`), and the units' own modules.
ROOTS = ("site", "runpy", "http.server")
# Never run in the guest (build, test and packaging tools): not followed.
# (pyroute2 imports unittest.mock at run time: followed; the boot test found it)
NOT_FOLLOWED = ["setuptools", "pkg_resources", "distutils", "_distutils_hack", "cffi",
                "pycparser", "lib2to3", "doctest", "pdb", "pydoc", "test", "tkinter",
                "idlelib", "ensurepip", "venv", "packaging", "vigil._sys_build"]
# Entered as bare packages, their `__init__` never run (vigil.system.net.netlink):
# only the modules that vigil's imports reach are shipped.
BARE = ("pyroute2",)


def closure(site: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """The standard library's modules and extension modules, and the
    installed packages' modules, that vigil, vigilctl and the shipped units
    can import (modulefinder follows every import statement, those inside
    functions too), with `encodings` but for its CJK codecs (codecs are
    looked up by name at run time; those need ~1 MB of extension modules
    that nothing here uses)."""
    import modulefinder
    finder = modulefinder.ModuleFinder(
        path=[str(ROOT), str(STDLIB), str(STDLIB / "lib-dynload"), str(site)],
        excludes=NOT_FOLLOWED)
    for name in BARE:
        bare = finder.add_module(name)
        vars(bare).update(__path__=[str(site / name)], __file__=str(site / name / "__init__.py"))
    started = subprocess.run([PYTHON, "-I", "-c", "import sys; print(*sys.modules)"],
                             capture_output=True, text=True, check=True).stdout.split()
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for pkg in ("vigil", "vigilctl") for p in sorted((ROOT / pkg).rglob("*.py"))
             if "__pycache__" not in p.parts]  # the layers' subpackages too
    codecs = [f"encodings.{p.stem}" for p in sorted((STDLIB / "encodings").glob("*.py"))
              if b"_multibytecodec" not in p.read_bytes()]
    for name in [*names, *ROOTS, *started, *codecs]:
        try:
            finder.import_hook(name)
        except ImportError:  # a built-in or frozen module: nothing to copy
            pass
    found = [getattr(m, "__file__", None) for m in finder.modules.values()]
    files = {Path(f) for f in found if f}
    modules = sorted(f for f in files if f.suffix == ".py" and STDLIB in f.parents
                     and f.parent.name != "lib-dynload")
    extensions = sorted(f for f in files
                        if f.suffix == ".so" and f.parent == STDLIB / "lib-dynload")
    installed = sorted(f for f in files if f.suffix == ".py" and site in f.parents)
    return modules, extensions, installed


def add_python(tree: Tree) -> None:
    tree.copy(PYTHON, PYTHON)
    tree.symlink("/usr/bin/python3", f"python{PYVER}")
    import tomli_w  # where the venv's packages are
    site = Path(tomli_w.__file__).parent.parent
    modules, dynload_used, installed = closure(site)
    for path in modules:
        tree.file(str(path)[:-3] + ".pyc", pyc(path.read_bytes(), str(path)))
    for path in dynload_used:
        tree.copy(path, str(path))
    # Whole directories of the installed packages that the closure reaches:
    # pyroute2 loads its link kinds by listing a directory (ifinfmsg/plugins).
    for folder in sorted({p.parent for p in installed} | {site / name for name in BARE}):
        for path in sorted(folder.glob("*.py")):
            guest = f"{STDLIB}/{path.relative_to(site)}"
            tree.file(guest[:-3] + ".pyc", pyc(path.read_bytes(), guest))
    extensions = [str(p) for p in site.glob("_prctl.*.so")] + [
        str(p) for p in site.glob("_cffi_backend.*.so")]
    for ext in extensions:
        tree.copy(ext, f"{STDLIB}/lib-dynload/{os.path.basename(ext)}")
    for package in ("vigil", "vigilctl"):
        add_python_tree(tree, ROOT / package, f"{STDLIB}/{package}")
    dynload = [str(p) for p in dynload_used]
    sysc = list((ROOT / "vigil").glob("_sysc*.so"))
    for lib in sorted(shared_libraries([PYTHON, *dynload, *extensions, *map(str, sysc)])):
        tree.copy(lib, lib)


def add_busybox(tree: Tree) -> None:
    tree.copy(BUSYBOX, "/bin/busybox", 0o755)
    for lib in sorted(shared_libraries([BUSYBOX])):  # none for busybox-static
        tree.copy(lib, lib)
    listing = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in sorted(listing):
        path = "/" + applet
        if path not in tree.entries:
            tree.symlink(path, "/bin/busybox")


def add_modules(tree: Tree, version: str) -> list[str]:
    moddir = Path(f"/lib/modules/{version}")
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[os.path.basename(path).split(".ko")[0].replace("-", "_")] = (path, rest.split())
    wanted: dict[str, list[str]] = {}
    todo = list(MODULES)
    while todo:
        name = todo.pop()
        path, needs = deps[name]
        wanted[path] = needs
        todo += [os.path.basename(n).split(".ko")[0].replace("-", "_") for n in needs
                 if n not in wanted]
    for path in wanted:
        tree.copy(moddir / path, f"/lib/modules/{version}/{path}")
    dep = "".join(f"{p}: {' '.join(n)}\n" if n else f"{p}:\n" for p, n in sorted(wanted.items()))
    tree.file(f"/lib/modules/{version}/modules.dep", dep.encode())
    return MODULES


def launcher(module: str, args: str = "") -> bytes:
    """A script run by the kernel or a shell: -I -S, the packages sit in the stdlib dir."""
    return (f"#!{PYTHON} -IS\nimport sys\nfrom {module} import main\n"
            f"sys.exit(main({args}))\n").encode()


def add_system(tree: Tree, secrets: Path, modules: list[str]) -> None:
    for path in ("/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/data", "/var/log",
                 "/etc/vigil/units", "/newroot"):
        tree.dir(path, 0o1777 if path == "/tmp" else 0o755)
    tree.device("/dev/console", 5, 1)
    tree.device("/dev/null", 1, 3, 0o666)
    init_args = ('["--units", "/etc/vigil/units", "--listen", "0.0.0.0:7000", '
                 '"--token-file", "/etc/vigil/token", "--tls-cert", "/etc/vigil/tls.crt", '
                 '"--tls-key", "/etc/vigil/tls.key", *sys.argv[1:]]')
    tree.file("/sbin/init", launcher("vigil.cli", init_args), 0o755)
    tree.symlink("/init", "/sbin/init")
    tree.file("/usr/bin/vigilctl", launcher("vigilctl.main"), 0o755)
    tree.file("/usr/bin/vigil-net", launcher("vigil.system.net"), 0o755)
    for name in ("reboot", "halt", "poweroff"):
        tree.symlink(f"/sbin/{name}", "/usr/bin/vigilctl")
    tree.symlink("/sbin/mdev", "/bin/busybox")
    add_units(tree)
    etc = ROOT / "initramfs" / "etc"
    for conf in sorted(etc.rglob("*")):
        if conf.is_file():
            tree.copy(conf, "/etc/" + str(conf.relative_to(etc)), 0o644)
    tree.file("/etc/modules-load.d/vigil.conf", ("\n".join(modules) + "\n").encode())
    for name, mode in (("token", 0o600), ("tls.crt", 0o644), ("tls.key", 0o600)):
        tree.copy(secrets / name, f"/etc/vigil/{name}", mode)
    tree.file(UNITS + ".compiled", compiled_units(tree))


UNITS = "/etc/vigil/units"


def add_units(tree: Tree) -> None:
    """The shipped units: the system's, the demo's and the image's own."""
    for unit in sorted((ROOT / "units" / "system").glob("*.toml")):
        tree.copy(unit, f"{UNITS}/{unit.name}", 0o644)
    for unit in sorted((ROOT / "units" / "demo").glob("*.toml")):
        tree.copy(unit, f"{UNITS}/{unit.name}", 0o644)
    mine = ROOT / "initramfs" / "etc" / "vigil" / "units"
    for path in sorted(mine.rglob("*.toml")):
        tree.copy(path, f"{UNITS}/{path.relative_to(mine)}", 0o644)


def compiled_units(tree: Tree) -> bytes:
    """The compiled unit database of the tree's /etc/vigil/units (`vigil
    compile`), so that boot parses no TOML: compiled from a copy with the
    guest's modes and owners (root), recorded under the guest's path."""
    import marshal
    import tempfile

    from vigil.model.compiled import compile_units, rebase
    part = Tree()
    part.entries = {path[len(UNITS):]: entry for path, entry in tree.entries.items()
                    if path.startswith(UNITS + "/")}
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "units"
        part.write_dir(staging)
        staging.chmod(tree.entries[UNITS][1])
        db = rebase(compile_units([str(staging)]), str(staging), UNITS)
    return marshal.dumps(db)


def make_secrets(out: Path) -> Path:
    """A token and a self-signed certificate for the guest's control endpoint,
    made once and kept: the host side reads them from here."""
    secrets = out / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    if not (secrets / "token").exists():
        (secrets / "token").write_text(hashlib.sha256(os.urandom(32)).hexdigest() + "\n")
        (secrets / "token").chmod(0o600)
    if not (secrets / "tls.crt").exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(secrets / "tls.key"), "-out", str(secrets / "tls.crt"),
                        "-days", "3650", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
    return secrets


def build(out: Path, version: str) -> Tree:
    tree = Tree()
    add_busybox(tree)
    add_python(tree)
    modules = add_modules(tree, version)
    add_system(tree, make_secrets(out), modules)
    return tree


# The kernel decompresses the initramfs in the guest, so under TCG its speed
# counts more than the size: lz4 (legacy format, as the kernel reads it) booted
# the demo as fast as no compression and faster than gzip and zstd, at half
# the size of none (bench/compression.py, docs/benchmarks.md).
COMPRESSION = "lz4"
COMPRESSORS = {"lz4": ["lz4", "-l", "-9", "-c"], "zstd": ["zstd", "-19", "-q", "-c"],
               "gzip": [], "none": []}


def compress(raw: bytes, how: str = COMPRESSION) -> bytes:
    """The cpio as the kernel unpacks it; the same bytes for the same input."""
    if how == "none":
        return raw
    if how == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
            gz.write(raw)
        return buf.getvalue()
    return subprocess.run(COMPRESSORS[how], input=raw, capture_output=True, check=True).stdout


INPUTS = ("vigil", "vigilctl", "units", "initramfs")
STAMP = "inputs.sha256"


def input_digest() -> str:
    """What the image is built from (the working tree's code, units and
    builder), so a boot can refuse an image older than the code it tests."""
    digest = hashlib.sha256()
    for top in INPUTS:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".so":
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def kernel_version() -> str:
    versions = sorted(p.name for p in Path("/lib/modules").iterdir()
                      if (p / "modules.dep").exists() and Path(f"/boot/vmlinuz-{p.name}").exists())
    if not versions:
        raise SystemExit("no kernel with modules in /lib/modules and /boot: "
                         "apt-get install linux-image-amd64")
    return versions[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the vigil initramfs and root disk.")
    p.add_argument("--out", default=str(ROOT / "build"))
    p.add_argument("--kernel-version", default=None)
    p.add_argument("--no-disk", action="store_true", help="only the initramfs")
    p.add_argument("--compress", choices=list(COMPRESSORS), default=COMPRESSION,
                   help=f"the initramfs's compression (default {COMPRESSION}: docs/benchmarks.md)")
    p.add_argument("--if-stale", action="store_true",
                   help="build only when the inputs changed since the last build in --out")
    opts = p.parse_args(argv)
    out = Path(opts.out)
    stamp, digest = out / STAMP, input_digest()
    if opts.if_stale and (out / "initramfs.cpio.gz").exists() and \
            (opts.no_disk or (out / "root.ext4").exists()) and \
            stamp.exists() and stamp.read_text().strip() == digest:
        return 0
    stamp.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    version = opts.kernel_version or kernel_version()
    tree = build(out, version)
    raw = tree.cpio()
    image = out / "initramfs.cpio.gz"  # the name the tools know, whatever the compression
    packed = compress(raw, opts.compress)
    image.write_bytes(packed)
    (out / "kernel-version").write_text(version + "\n")
    print(f"{image}: {len(packed) / 1e6:.1f} MB {opts.compress} ({len(tree.entries)} entries, "
          f"{len(raw) / 1e6:.1f} MB unpacked), kernel {version}")
    if not opts.no_disk:
        staging = out / "rootfs"
        tree.write_dir(staging)
        disk = out / "root.ext4"
        disk.unlink(missing_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "vigil-root", "-U",
                        "d6e1a1b0-5f0e-4c55-9a49-000000000001", "-E", "root_owner=0:0",
                        "-d", str(staging), str(disk), "256M"], check=True)
        shutil.rmtree(staging)
        print(f"{disk}: ext4 root disk (256 MB sparse)")
    stamp.write_text(digest + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
