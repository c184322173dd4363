"""Man pages from the sources that already describe vigil: vigilctl(1) from
vigilctl's parser, vigil(8) from the daemon's, vigil.unit(5) from
docs/units.md. `python -m vigilctl.manpage DIR` writes them (the package
installs share/man; a test checks they are what these sources give). A
build tool: vigilctl itself never imports it (it reads the daemon's parser)."""

from __future__ import annotations

import argparse
import os
import re
import sys

from vigil import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def esc(text: str) -> str:
    """Roff-safe text: backslashes doubled, a leading dot or quote guarded,
    `code` in bold."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"`([^`]*)`", r"\\fB\1\\fR", text)
    text = text.replace("**", "")
    return "\\&" + text if text[:1] in (".", "'") else text


def header(name: str, section: int, what: str) -> list[str]:
    return [f'.TH {name.upper()} {section} "" "vigil {__version__}" "vigil"',
            ".SH NAME", f"{esc(name)} \\- {esc(what)}"]


def _actions(parser: argparse.ArgumentParser) -> list[str]:
    """One .TP entry per argument: its flags (or name) and its help."""
    lines = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        metavar = action.metavar if isinstance(action.metavar, str) else None
        flags = ", ".join(action.option_strings) or (metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            flags += f" {metavar or action.dest.upper()}"
        lines += [".TP", f"\\fB{esc(str(flags))}\\fR", esc(action.help or "")]
    return lines


def vigilctl_page() -> str:
    from vigilctl.options import ALIASES, SUBCOMMANDS, build_parser
    parser = build_parser()
    lines = header("vigilctl", 1, "control a running vigil")
    lines += [".SH SYNOPSIS", "\\fBvigilctl\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR "
              "[\\fIARGS\\fR...]", ".SH DESCRIPTION", esc(parser.description or ""),
              "See docs/vigilctl.md for the mapping from systemctl, supervisorctl and overmind.",
              ".SH OPTIONS", *_actions(parser), ".SH COMMANDS"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        lines += [".SS " + esc(name), esc(SUBCOMMANDS[name][0]) + ".", *_actions(command)]
    lines += [".SS Aliases", "\n.br\n".join(f"{esc(a)} = {esc(c)}" for a, c in ALIASES.items()),
              ".SH EXIT STATUS",
              "0 success; 1 a failed request (a unit that did not start, with the reason); "
              "2 bad usage; 3 from \\fBstatus\\fR when a unit is failed and from "
              "\\fBis\\-active\\fR when none is active; 4 an unknown unit for the \\fBis\\-\\fR "
              "commands; 130 interrupted.",
              ".SH ENVIRONMENT", ".TP", "\\fBVIGIL_SOCKET\\fR", "the control socket",
              ".TP", "\\fBNO_COLOR\\fR", "no colours on a terminal", ".TP",
              "\\fBVISUAL\\fR, \\fBEDITOR\\fR", "the editor of \\fBedit\\fR",
              ".SH SEE ALSO", "\\fBvigil\\fR(8), \\fBvigil.unit\\fR(5)", ""]
    return "\n".join(lines)


def daemon_parser() -> argparse.ArgumentParser:
    """The daemon's parser, from the one module that builds it."""
    from vigil.wire import flags
    return flags.parser()


def vigil_page() -> str:
    parser = daemon_parser()
    lines = header("vigil", 8, "init system and service supervisor")
    lines += [".SH SYNOPSIS", "\\fBvigil\\fR [\\fIOPTIONS\\fR]", ".br",
              "\\fBvigil check\\fR [\\fIDIR\\fR...]", ".br",
              "\\fBvigil run\\fR [\\fIOPTIONS\\fR] [\\fB\\-\\-\\fR \\fICMD\\fR...]",
              ".SH DESCRIPTION", esc(parser.description or ""),
              "As PID 1 of a machine it boots the system; as a container's entrypoint "
              "(\\fBvigil run\\fR) it runs one command with side services; otherwise it "
              "supervises the units of a directory. \\fBvigil check\\fR validates unit "
              "files offline.", ".SH OPTIONS", *_actions(parser),
              ".SH SEE ALSO", "\\fBvigilctl\\fR(1), \\fBvigil.unit\\fR(5)", ""]
    return "\n".join(lines)


def markdown(text: str) -> list[str]:
    """The markdown of docs/*.md as roff: headings, lists, tables, code."""
    lines: list[str] = []
    code = False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
            lines.append(".nf" if code else ".fi")
        elif code:
            lines.append("\\&" + line.replace("\\", "\\e"))
        elif line.startswith("## ") or line.startswith("### "):
            lines.append((".SH " if line.startswith("## ") else ".SS ") +
                         esc(line.lstrip("#").strip()).upper().replace("\\FB", "").replace(
                             "\\FR", ""))
        elif line.startswith("# ") or re.fullmatch(r"\|[-| ]*\|", line):
            continue
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "key":
                continue
            lines += [".TP", f"\\fB{esc(cells[0])}\\fR" + "".join(
                f" ({esc(c)})" for c in cells[1:-1] if c), esc(cells[-1])]
        elif line.startswith("- "):
            lines += [".IP \\(bu 2", esc(line[2:])]
        elif not line.strip():
            lines.append(".PP")
        else:
            lines.append(esc(line.strip()))
    return lines


def unit_page() -> str:
    with open(os.path.join(ROOT, "docs", "units.md"), encoding="utf-8") as f:
        text = f.read()
    lines = header("vigil.unit", 5, "vigil unit files")
    lines += [".SH DESCRIPTION", *markdown(text), ".SH SEE ALSO",
              "\\fBvigil\\fR(8), \\fBvigilctl\\fR(1)", ""]
    return "\n".join(lines)


PAGES = {"vigilctl.1": vigilctl_page, "vigil.8": vigil_page, "vigil.unit.5": unit_page}


def write_all(directory: str) -> None:
    for name, make in PAGES.items():
        folder = os.path.join(directory, f"man{name.rsplit('.', 1)[1]}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(make())


if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "share", "man"))
