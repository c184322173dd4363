"""user/group ids and other numbers in unit files: ASCII digits in range only."""

from __future__ import annotations

import io

import pytest

from vigil.model.check import check
from vigil.base.numbers import parse_number

# Each of these passed `vigil check`: the first three wedged the unit (the spawner's
# C int overflowed), "٠" (an Arabic-Indic zero) ran the service as root.
BAD_IDS = ["4294967295", "2147483648", "²", "٠", "١٠٠٠", "-1", " 1", "+5",
           "nobody²", "wheel\n", "ro ot"]


@pytest.mark.parametrize("key", ["user", "group"])
@pytest.mark.parametrize("value", BAD_IDS)
def test_a_bad_user_or_group_is_refused_by_check_with_file_and_line(unit_dir, key, value):
    text = f'[service]\nexec = "x"\n{key} = {value!r}\n'.replace("'", '"')
    if "\n" in value:
        text = f'[service]\nexec = "x"\n{key} = "wheel\\n"\n'
    root = unit_dir({"svc.toml": text})
    out = io.StringIO()
    assert check([str(root)], out) == 1
    assert f"svc.toml:3: service.{key}:" in out.getvalue(), out.getvalue()


@pytest.mark.parametrize("value", ["4294967295", "-1", "2147483648"])
def test_an_id_out_of_range_as_a_toml_integer_is_refused(unit_dir, value):
    root = unit_dir({"svc.toml": f'[service]\nexec = "x"\nuser = {value}\n'
                                 f'supplementary-groups = [1, {value}]\n'})
    out = io.StringIO()
    assert check([str(root)], out) == 1
    assert "svc.toml:3: service.user:" in out.getvalue()
    assert "svc.toml:4: service.supplementary-groups:" in out.getvalue()


@pytest.mark.parametrize("value,kept", [('"0"', "0"), ('"007"', "7"), ("2147483647", "2147483647"),
                                        ('"www-data"', "www-data"), ('"_apt"', "_apt"),
                                        ('"1password"', "1password"), ('"HOST$"', "HOST$")])
def test_good_ids_and_names_are_kept(unit_dir, value, kept):
    from vigil.model.loader import Loader
    root = unit_dir({"svc.toml": f'[service]\nexec = "x"\nuser = {value}\ngroup = {value}\n'})
    svc = Loader([root]).load("svc").service
    assert (svc.user, svc.group) == (kept, kept)


@pytest.mark.parametrize("text", ['scope = "pid:٣"', 'scope = "pid:²"', 'scope = "pid:+3"',
                                  'scope = "pid:2147483648"'])
def test_a_scope_pid_in_other_digits_is_refused(unit_dir, text):
    out = io.StringIO()
    assert check([str(unit_dir({"svc.toml": f"[unit]\n{text}\n"}))], out) == 1
    assert "svc.toml:2: unit.scope:" in out.getvalue()


@pytest.mark.parametrize("text", ['umask = "٠٢٢"', 'umask = "0o22"', 'umask = " 22"',
                                  '[service.ready]\ntcp = "127.0.0.1:٨٠"',
                                  '[service.ready]\ntcp = "localhost:+80"'])
def test_octal_and_port_text_in_other_digits_is_refused(unit_dir, text):
    out = io.StringIO()
    assert check([str(unit_dir({"svc.toml": f'[service]\nexec = "x"\n{text}\n'}))], out) == 1
    assert "svc.toml:" in out.getvalue() and "service." in out.getvalue()


def test_parse_number_takes_ascii_digits_in_range_only():
    assert parse_number("0", 0, 10) == 0 and parse_number("010", 0, 10) == 10
    assert parse_number("17", 0, 0o777, base=8) == 15
    for text in ["", "٠", "²", "-1", "+1", " 1", "1 ", "1_0", "11", "8" * 5000]:
        assert parse_number(text, 0, 10) is None, text
    assert parse_number("8", 0, 100, base=8) is None


def test_a_scope_pid_beyond_pid_t_in_a_request_is_bad_args(daemon):
    from vigilctl.client import RequestFailed
    d = daemon({"a.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1000"\n'})
    with pytest.raises(RequestFailed) as info:
        d.call("start", units=["a"], scope=2**40)
    assert info.value.code == "bad-args" and "process id" in str(info.value)
