"""Early boot in system mode: everything between the kernel starting vigil
and the first unit. Each step is timed and logged; a step that fails is
logged and boot goes on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from vigil.base.records import dataclass

from vigil.base import envfile
from vigil.kernel import namespaces, syscalls
from vigil.system import mounts
from vigil.kernel.asuser import read_regular
from vigil.system.fstab import parse as parse_fstab

Log = Callable[[str, str], None]


@dataclass
class BootOptions:
    """What the kernel command line asks of vigil."""

    unit: str | None = None        # vigil.unit=rescue: boot this instead of `default`
    debug: bool = False            # vigil.debug: debug events on the console
    read_only_root: bool | None = None  # ro / rw


def read_text(path: str) -> str:
    """An early-boot file as text. Bytes that are not UTF-8 become U+FFFD, so
    a stray byte spoils its own line and not the boot."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_cmdline() -> str:
    """The kernel command line ("" if /proc is not there): its one reader,
    for early boot and for the switch from an initramfs."""
    try:
        return read_text("/proc/cmdline")
    except OSError:
        return ""


def cmdline_args(text: str) -> dict[str, str]:
    """key=value words as a dict; a bare word maps to ""."""
    return {k: v for k, _, v in (w.partition("=") for w in text.split())}


def parse_cmdline(text: str) -> BootOptions:
    opts = BootOptions()
    for word in text.split():
        key, _, value = word.partition("=")
        if key == "vigil.unit" and value:
            opts.unit = value
        elif key == "vigil.debug":
            opts.debug = True
        elif word == "ro":
            opts.read_only_root = True
        elif word == "rw":
            opts.read_only_root = False
    return opts


@contextmanager
def signals_blocked() -> Iterator[None]:
    """Critical sections (mounting the basics) run with every signal held."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def set_hostname(root: str, log: Log) -> str | None:
    path = os.path.join(root, "etc/hostname")
    try:
        name = read_text(path).split("#")[0].strip().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    if not name:
        return None
    if "\ufffd" in name or not name.isprintable() or len(name.encode()) > 64:
        log("error", f"{path}:1: {name!r} is not a host name; not set")
        return None
    if not namespaces.may("hostname"):
        log("info", f"hostname {name!r} not set: the UTS namespace is the host's")
        return None
    try:
        syscalls.sethostname(name)
        log("info", f"hostname {name}")
        return name
    except OSError as err:
        log("error", f"setting hostname {name!r} failed: {err.strerror}")
        return None


LOCALE_KEYS = ("LANG", "LANGUAGE", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
               "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS",
               "LC_TELEPHONE", "LC_MEASUREMENT", "LC_IDENTIFICATION", "LC_ALL")


def unit_environment(root: str = "/") -> dict[str, str]:
    """TZ from /etc/timezone and the locale from /etc/locale.conf (or Debian's
    /etc/default/locale): what every unit gets in system mode."""
    env: dict[str, str] = {}
    for name in ("etc/default/locale", "etc/locale.conf"):
        try:
            text = read_regular(None, os.path.join(root, name), 1 << 20).decode(
                "utf-8", errors="replace")  # not a FIFO: PID 1 would block on it
        except OSError:  # missing, or unreadable: no locale from it, and the boot goes on
            continue
        env.update({k: v for k, v in envfile.parse(text).items() if k in LOCALE_KEYS})
    try:
        zone = read_text(os.path.join(root, "etc/timezone")).strip()
        if zone:
            env["TZ"] = ":" + zone
    except OSError:
        pass
    return env


def loopback_up(log: Log) -> None:
    """lo up from PID 1 itself (two ioctls), so local probes work even when
    the network unit fails; vigil-net does the rest."""
    if not namespaces.may("net-sysctl"):
        return
    import fcntl
    import socket
    import struct
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
            fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    except OSError as err:
        log("warning", f"bringing lo up failed: {err.strerror}")


def each_line(paths: list[str], read_line: Callable[[str, str], None], log: Log) -> None:
    """read_line(where, line) for every line of the files, in order, where is
    "path:number". A missing file is skipped; an unreadable file, and a line
    whose reading raises anything at all, is logged with where it is and
    skipped: early boot goes on."""
    for path in paths:
        try:
            lines = read_text(path).splitlines()
        except FileNotFoundError:
            continue
        except OSError as err:
            log("warning", f"{path}: {err.strerror}; skipped")
            continue
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                read_line(where, line)
            except Exception as err:  # PID 1 reads these at boot: a bad line is skipped
                log("error", f"{where}: {err!s}; line skipped")


def _config_files(root: str, directory: str, single: str) -> list[str]:
    """DIR/*.conf in file-name order (as glob has them, without its `re`),
    then the single file."""
    folder = os.path.join(root, directory)
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    return [*sorted(os.path.join(folder, name) for name in names
                    if name.endswith(".conf") and not name.startswith(".")),
            os.path.join(root, single)]


def wanted_modules(root: str, log: Log) -> list[str]:
    """Names from /etc/modules-load.d/*.conf (file-name order) and /etc/modules."""
    names: list[str] = []

    def read_line(_where: str, line: str) -> None:
        line = line.split("#")[0].strip()
        if line and not line.startswith(";") and line.split()[0] not in names:
            names.append(line.split()[0])
    each_line(_config_files(root, "etc/modules-load.d", "etc/modules"), read_line, log)
    return names


def module_order(name: str, moddir: str) -> list[str]:
    """The .ko paths to load for `name`, dependencies first, from modules.dep."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in read_text(os.path.join(moddir, "modules.dep")).splitlines():
        path, _, rest = line.partition(":")
        stem = os.path.basename(path).split(".ko")[0].replace("-", "_")
        deps[stem] = (path, rest.split())
    key = name.replace("-", "_")
    if key not in deps:
        raise LookupError(f"module {name} not found in {moddir}/modules.dep")
    order: list[str] = []
    path, needs = deps[key]
    for dep in reversed(needs):  # modules.dep lists the deepest dependency last
        if dep not in order:
            order.append(dep)
    order.append(path)
    return [p if p.startswith("/") else os.path.join(moddir, p) for p in order]


def load_modules(names: list[str], log: Log, moddir: str | None = None) -> None:
    if not names:
        return
    if not namespaces.may("modules"):
        log("info", f"modules {', '.join(names)} not loaded: not on a machine (a container)")
        return
    moddir = moddir or f"/lib/modules/{os.uname().release}"
    for name in names:
        try:
            paths = module_order(name, moddir)
        except Exception as err:  # one module's trouble is not the others'
            log("warning", f"module {name}: {err}")
            continue
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    syscalls.finit_module(fd, name=os.path.basename(path))
                finally:
                    os.close(fd)
            except FileExistsError:
                continue  # already loaded (or built in)
            except OSError as err:
                log("warning", f"module {os.path.basename(path)}: {err.strerror}")
                break
        else:
            log("debug", f"module {name} loaded")


def sysctl_settings(root: str, log: Log) -> list[tuple[str, str, str]]:
    """(key, value, where) from /etc/sysctl.d/*.conf then /etc/sysctl.conf; later wins."""
    found: dict[str, tuple[str, str]] = {}

    def read_line(where: str, line: str) -> None:
        line = line.strip()
        if line and line[0] not in "#;" and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip().lstrip("-").replace("/", ".")] = (value.strip(), where)
    each_line(_config_files(root, "etc/sysctl.d", "etc/sysctl.conf"), read_line, log)
    return [(k, v, w) for k, (v, w) in found.items()]


def apply_sysctl(settings: list[tuple[str, str, str]], log: Log) -> None:
    for key, value, where in settings:
        if not (namespaces.may("sysctl") or (key.startswith("net.") and
                                             namespaces.may("net-sysctl"))):
            log("debug", f"{where}: {key} skipped: not ours to change here")
            continue
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            log("warning", f"{where}: sysctl {key} = {value}: {err.strerror or err}")


def mount_basics(log: Log) -> None:
    """/proc, /sys, /dev and the rest, with every signal held; then a console."""
    if not namespaces.may("mount"):
        log("warning", "early mounts skipped: the mount namespace is the host's")
        return
    with signals_blocked():
        mounts.early_mounts(log)
    try:
        os.fstat(1)
    except OSError:  # the kernel found no console for us: open it ourselves
        try:
            fd = os.open("/dev/console", os.O_RDWR | os.O_NOCTTY)
            for target in (0, 1, 2):
                os.dup2(fd, target)
            if fd > 2:
                os.close(fd)
        except OSError as err:
            log("error", f"/dev/console: {err.strerror}")


def configure(log: Log, root: str = "/") -> tuple[BootOptions, list[str], str | None]:
    """Command line, hostname, modules, fstab, sysctl, in that order; each a
    step that logs what breaks it and lets the next one run.

    Returns the boot options, the swaps enabled and the hostname set."""
    def step(name: str, action: Callable[[], object]) -> object:
        began = time.monotonic()
        try:
            return action()
        except Exception as err:  # a step that breaks must not stop the boot
            log("error", f"{name} failed: {err}")
            return None
        finally:
            log("debug", f"{name} took {(time.monotonic() - began) * 1000:.1f} ms")

    opts = step("cmdline", lambda: parse_cmdline(read_cmdline()))
    boot = opts if isinstance(opts, BootOptions) else BootOptions()
    hostname = step("hostname", lambda: set_hostname(root, log))
    step("loopback", lambda: loopback_up(log))
    step("modules", lambda: load_modules(wanted_modules(root, log), log))
    swaps = step("fstab", lambda: fstab(os.path.join(root, "etc/fstab"), boot, log))
    step("sysctl", lambda: apply_sysctl(sysctl_settings(root, log), log))
    return (boot, swaps if isinstance(swaps, list) else [],
            hostname if isinstance(hostname, str) else None)


def fstab(path: str, boot: BootOptions, log: Log) -> list[str]:
    """Mounts what /etc/fstab lists (its bad lines logged and skipped);
    returns the swaps enabled."""
    try:
        entries, problems = parse_fstab(read_text(path), path)
    except FileNotFoundError:
        return []
    for problem in problems:
        log("error", problem)
    if not entries or not namespaces.may("mount"):
        return []
    return mounts.mount_fstab(entries, log, machine=namespaces.on_machine(),
                              read_only_root=boot.read_only_root)
