"""The loader survives any bytes: it returns a Unit or raises UnitError."""

from __future__ import annotations

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.base.errors import UnitError
from vigil.model.loader import Loader
from vigil.model.schema import SERVICE_KEYS, UNIT_KEYS

toml_values = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
docs = st.fixed_dictionaries({}, optional={
    "unit": st.dictionaries(st.sampled_from(sorted(UNIT_KEYS)) | st.text(max_size=8),
                            toml_values, max_size=6),
    "service": st.dictionaries(st.sampled_from(sorted(SERVICE_KEYS)) | st.text(max_size=8),
                               toml_values, max_size=8),
})


def attempt(root, data: bytes) -> None:
    (root / "f.toml").write_bytes(data)
    try:
        Loader([root]).load("f")
    except UnitError as err:
        assert err.problems and all(str(p) for p in err.problems)


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes(tmp_path, data):
    attempt(tmp_path, data)


@given(docs)
@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_arbitrary_well_formed_documents(tmp_path, doc):
    attempt(tmp_path, tomli_w.dumps(doc).encode())


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    attempt(tmp_path, b"x = " + b"[" * 100000 + b"]" * 100000)
