"""Variables in exec, the lifecycle commands and cwd (vigil/base/expand.py):
expanded by the daemon at each start from the process's environment;
refused at load when one can never be set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon import wait_for
from vigil.base.errors import UnitError
from vigil.base.expand import ExpandError, expand, expand_argv
from vigil.model.schema import build_unit


def test_expand_forms():
    env = {"A": "one", "EMPTY": "", "B_2": "two words"}
    assert expand("$A-${A}x-$B_2", env) == "one-onex-two words"
    assert expand("${MISSING:-def}/${A:-def}/${EMPTY:-e}", env) == "def/one/e"
    assert expand("cost $$5 and $$A", env) == "cost $5 and $A"
    assert expand("$(date) $1 $ end$", env) == "$(date) $1 $ end$"
    with pytest.raises(ExpandError, match="without"):
        expand("${A", env)
    with pytest.raises(ExpandError, match="is not"):
        expand("${1x}", env)


def test_a_shells_script_is_left_to_the_shell():
    env = {"A": "x"}
    assert expand_argv(["sh", "-c", "echo $A $$ $i", "$A"], env) == ["sh", "-c",
                                                                     "echo $A $$ $i", "x"]
    assert expand_argv(["/bin/bash", "-ec", "$i"], env) == ["/bin/bash", "-ec", "$i"]
    assert expand_argv(["prog", "-c", "$A"], env) == ["prog", "-c", "x"]


def load(service: dict[str, object]) -> object:
    return build_unit("web", {"service": service}, "/u/web.toml", {})


@pytest.mark.parametrize("service,key,name", [
    ({"exec": "prog --port $PORT"}, "service.exec", "$PORT"),
    ({"exec": "prog ${ROOT}/x", "env": {"OTHER": "1"}}, "service.exec", "$ROOT"),
    ({"exec": "prog", "exec-pre": ["true", "mkdir $DIR"]}, "service.exec-pre", "$DIR"),
    ({"exec": "prog", "cwd": "/srv/$SITE"}, "service.cwd", "$SITE"),
    ({"exec": "prog", "exec-pre": "kill $MAINPID"}, "service.exec-pre", "$MAINPID"),
    ({"exec": "prog $PORT", "port": "auto", "exec-pre": "mkdir /run/$PORT"},
     "service.exec-pre", "$PORT"),
    ({"exec": "prog $NOTIFY_SOCKET"}, "service.exec", "$NOTIFY_SOCKET"),
])
def test_a_variable_that_can_never_be_set_is_refused_at_load(service, key, name):
    with pytest.raises(UnitError) as err:
        load(service)
    text = str(err.value)
    assert "/u/web.toml" in text and key in text and f"{name} can never be set" in text


def test_what_can_be_set_loads():
    for service in ({"exec": "prog $PORT", "port": "auto"},
                    {"exec": "prog $ROOT ${X:-d} $$HOME", "env": {"ROOT": "/r"}},
                    {"exec": "prog $TOKEN", "pass-env": ["TOKEN"]},
                    {"exec": "prog $ANY", "env-file": "/etc/web.env"},
                    {"exec": "prog $HOME $VIGIL_UNIT", "user": "nobody"},
                    {"exec": "sh -c 'echo $i'", "exec-reload": "kill -HUP $MAINPID"},
                    {"exec": "prog $NOTIFY_SOCKET", "type": "notify"},
                    {"exec": "prog", "port": 80, "exec-pre": "mkdir /run/$PORT"}):
        load(service)
    with pytest.raises(UnitError, match="without"):
        load({"exec": "prog ${OOPS"})


def test_variables_reach_the_process(daemon, tmp_path: Path):
    """The daemon expands them at each start: env, a default, $$, $PORT,
    the working directory, and an exec-pre command."""
    out = tmp_path / "out"
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "show").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "$(pwd)" > {out}\n'
                                   'exec sleep 1000\n')
    (tmp_path / "show").chmod(0o755)
    daemon({"web.toml": '[service]\n'
                f'exec = ["{tmp_path}/show", "$NAME", "${{MODE:-prod}}", "$$NAME", "port=$PORT", '
                '"$HOSTILE"]\n'
                f'exec-pre = "mkdir -p {tmp_path}/${{NAME}}-pre-$PORT"\n'
                'cwd = "${BASE}/site"\nport = 4711\n'
                f'env = {{ NAME = "shop", BASE = "{tmp_path}", '
                'HOSTILE = "a b $NAME ${BASE} $(id)" }\n'})
    wait_for(lambda: out.exists() and out.read_text().strip(), what="the output")
    # a value is not expanded again, nor split into words: "$HOSTILE" is one word, as it is
    assert out.read_text().splitlines() == ["shop", "prod", "$NAME", "port=4711",
                                            "a b $NAME ${BASE} $(id)", str(site)]
    assert (tmp_path / "shop-pre-4711").is_dir()  # a fixed port is known at the first start


def test_a_refused_unit_names_the_variable_through_the_daemon(daemon, tmp_path: Path):
    d = daemon({"web.toml": '[service]\nexec = "prog $NOPE"\n',
                "ok.toml": '[service]\nexec = "sleep 1000"\n'})
    problems = json.dumps(d.call("problems"))
    assert "web.toml" in problems and "$NOPE can never be set" in problems
