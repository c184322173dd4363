"""Which initramfs compression boots fastest under TCG (issue 17).

    python bench/compression.py [--runs N] [--out DIR]

Builds the image's tree once, writes it gzip'd (level 9), zstd'd (-19),
lz4'd (legacy format, -9, as the kernel reads it) and uncompressed, and
boots each in QEMU to the demo's default target, alternating run by run.
The kernel's own decompression runs in the guest, so under TCG (no KVM
here) the fastest decompressor can beat the smallest file.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "Reached target default"


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variants(raw: bytes, out: Path) -> dict[str, Path]:
    images = {"gzip": out / "bench-gzip.cpio", "zstd": out / "bench-zstd.cpio",
              "lz4": out / "bench-lz4.cpio", "none": out / "bench-none.cpio"}
    images["gzip"].write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    images["none"].write_bytes(raw)
    for name, cmd in (("zstd", ["zstd", "-19", "-q", "-c"]), ("lz4", ["lz4", "-l", "-9", "-c"])):
        images[name].write_bytes(subprocess.run(cmd, input=raw, capture_output=True,
                                                check=True).stdout)
    return images


def boot(qemu: Any, out: Path, image: Path) -> float:
    vm = qemu.VM("initramfs", build=out, image=image, timeout=300).start()
    began = time.perf_counter()
    try:
        vm.wait_for(MARKER, timeout=240)
        return time.perf_counter() - began
    finally:
        vm.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "build"))
    p.add_argument("--only", help="comma-separated: gzip,zstd,lz4,none")
    opts = p.parse_args(argv)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    builder = _load(ROOT / "initramfs" / "build.py", "vigil_image_build")
    qemu = _load(ROOT / "qemu" / "run.py", "vigil_qemu_run")
    tree = builder.build(out, builder.kernel_version())
    images = variants(tree.cpio(), out)
    if opts.only:
        images = {k: v for k, v in images.items() if k in opts.only.split(",")}
    times: dict[str, list[float]] = {name: [] for name in images}
    for run in range(opts.runs):
        for name, image in images.items():
            times[name].append(boot(qemu, out, image))
            print(f"run {run} {name:5} {times[name][-1]:.2f} s", flush=True)
    print("| compression | size (MB) | boot to default target (s, median) |\n|---|---|---|")
    for name, image in images.items():
        print(f"| {name} | {image.stat().st_size / 1e6:.1f} | "
              f"{statistics.median(times[name]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
