"""Search path, templates, drop-ins and load_all."""

from __future__ import annotations

import pytest

from vigil.base.errors import UnitError
from vigil.model.loader import Loader


def test_name_is_file_stem_and_earlier_dir_wins(unit_dir):
    first = unit_dir({"web.toml": '[unit]\ndescription = "etc"\n'}, "etc")
    second = unit_dir({"web.toml": '[unit]\ndescription = "lib"\n',
                       "db.toml": '[unit]\ndescription = "db"\n'}, "lib")
    loader = Loader([first, second])
    assert loader.names() == ["db", "web"]
    assert loader.load("web").description == "etc"
    assert loader.load("db").description == "db"


def test_template_instance_substitutes_specifiers(unit_dir):
    root = unit_dir({"getty@.toml": """
        [unit]
        description = "Getty on %i (%n, %p), 100%% sure"
        [service]
        exec = ["/sbin/agetty", "%i", "115200"]
        env = { TTY = "/dev/%i" }
        """})
    loader = Loader([root])
    unit = loader.load("getty@ttyS0")
    assert unit.name == "getty@ttyS0"
    assert unit.description == "Getty on ttyS0 (getty@ttyS0, getty), 100% sure"
    assert unit.service.exec == ("/sbin/agetty", "ttyS0", "115200")
    assert dict(unit.service.env) == {"TTY": "/dev/ttyS0"}
    assert loader.names() == []  # a template alone is not a unit


def test_template_itself_cannot_be_loaded(unit_dir):
    root = unit_dir({"getty@.toml": '[service]\nexec = "x %i"\n'})
    with pytest.raises(UnitError, match="is a template"):
        Loader([root]).load("getty@")


def test_instance_file_beats_template(unit_dir):
    root = unit_dir({"getty@.toml": '[service]\nexec = "agetty %i"\n',
                     "getty@tty9.toml": '[service]\nexec = "special %i"\n'})
    assert Loader([root]).load("getty@tty9").service.exec == ("special", "tty9")


def test_dropins_merge_in_lexical_order_over_all_dirs(unit_dir):
    etc = unit_dir({"web.d/20-late.toml": '[service]\nenv = { B = "etc" }\n',
                    "web.d/10-early.toml": '[service]\nrestart = "never"\n'}, "etc")
    lib = unit_dir({"web.toml": '[service]\nexec = "srv"\nenv = { A = "1", B = "lib" }\n',
                    "web.d/10-early.toml": '[service]\nrestart = "always"\n',
                    "web.d/30-last.toml": '[unit]\ndescription = "patched"\n'}, "lib")
    unit = Loader([etc, lib]).load("web")
    assert unit.description == "patched"
    assert unit.service.restart.value == "never"  # etc's 10-early shadows lib's
    assert dict(unit.service.env) == {"A": "1", "B": "etc"}  # tables merge key by key


def test_template_dropins_apply_before_instance_dropins(unit_dir):
    root = unit_dir({"getty@.toml": '[service]\nexec = "agetty %i"\n',
                     "getty@.d/a.toml": '[unit]\ndescription = "all %i"\n',
                     "getty@tty2.d/a.toml": '[unit]\ndescription = "only tty2"\n'})
    loader = Loader([root])
    assert loader.load("getty@tty1").description == "all tty1"
    assert loader.load("getty@tty2").description == "only tty2"


def test_error_in_dropin_names_the_dropin(unit_dir):
    root = unit_dir({"web.toml": '[service]\nexec = "srv"\n',
                     "web.d/x.toml": '\n[service]\nrestart = "sometimes"\n'})
    with pytest.raises(UnitError) as info:
        Loader([root]).load("web")
    assert str(info.value).startswith(f"{root}/web.d/x.toml:3: service.restart:")


def test_missing_unit_says_where_it_looked(unit_dir):
    root = unit_dir({})
    with pytest.raises(UnitError, match=r"no such unit 'nope' \(no nope.toml in "):
        Loader([root]).load("nope")


def test_invalid_name(unit_dir):
    with pytest.raises(UnitError, match="not a valid unit name"):
        Loader([unit_dir({})]).load("../etc/passwd")


def test_load_all_skips_broken_and_pulls_instances(unit_dir):
    root = unit_dir({
        "default.toml": '[unit]\nwants = ["getty@tty1", "getty@tty2", "web"]\n',
        "getty@.toml": '[service]\nexec = "agetty %i"\n',
        "web.toml": '[service]\nexec = "srv"\nrestart = "bogus"\n',
        "db.toml": '[service]\nexec = "db"\n',
        "notes.txt": "not a unit",
    })
    result = Loader([root]).load_all()
    assert sorted(result.units) == ["db", "default", "getty@tty1", "getty@tty2"]
    assert result.broken == {"web"}
    assert len(result.problems) == 1 and "service.restart" in str(result.problems[0])


def test_a_directory_named_like_a_unit_is_not_a_unit(unit_dir):
    root = unit_dir({"x.toml/inner.toml": "[unit]\n"})
    assert Loader([root]).names() == []
