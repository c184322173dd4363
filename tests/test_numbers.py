"""Numbers from text others wrote (fstab, the kernel command line, options):
ASCII digits in range only, everywhere they are read (issue 22.11's class)."""

from __future__ import annotations

import pytest

from vigil.system import fstab
from vigil.base.numbers import parse_number, parse_seconds
from vigil.control.remote import RemoteError, parse_address


@pytest.mark.parametrize("text, value", [("30", 30.0), ("2.5", 2.5), (".5", 0.5), ("7.", 7.0),
                                         ("0", 0.0), ("3600", 3600.0)])
def test_seconds_written_plainly_are_read(text, value):
    assert parse_seconds(text, 3600) == value


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "+5", "1e9", "3601", "", ".", "1.2.3",
                                  "٣", "²", " 5", "5 ", "1_000", "0x10", "9" * 40])
def test_seconds_that_mean_nothing_are_refused(text):
    assert parse_seconds(text, 3600) is None


@pytest.mark.parametrize("text", ["٣", "²", "-1", "+1", " 1", "1_0", "0o7", "", "9" * 40])
def test_numbers_are_ascii_digits_only(text):
    assert parse_number(text, 0, 10**40) is None


def test_an_fstab_pass_number_in_other_digits_is_refused():
    entries, problems = fstab.parse("/dev/vda1 / ext4 defaults 0 ٢\n/dev/vdb /d ext4 defaults 0 2\n")
    assert problems == ["/etc/fstab:1: pass number '٢' is not a number"]
    assert [(e.file, e.passno) for e in entries] == [("/d", 2)]


@pytest.mark.parametrize("address", ["127.0.0.1:٨٠", "127.0.0.1:²", "127.0.0.1:0",
                                     "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1:"])
def test_a_listen_port_in_other_digits_is_refused(address):
    with pytest.raises(RemoteError, match="expected HOST:PORT"):
        parse_address(address)
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
