"""Records without `dataclasses`: the part of it vigil uses.

Importing dataclasses pulls in inspect, ast, dis and tokenize (~10 ms and
~1 MB that PID 1 keeps for ever), and it builds each class with several
exec() calls. Here each record class compiles only its __init__ (compiling
is most of a class's cost: ~0.3 ms each here, ten times that under QEMU's
TCG at boot); equality, order and hash compare the fields' values as read
by operator.attrgetter. mypy sees the real dataclasses (the same decorator
signature), so the types are checked as before; `dataclasses.fields` and
`replace` still work on these records (their `__dataclass_fields__` is
built, importing dataclasses, the first time someone asks: tests and
`vigil admin`, never the daemon).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import FrozenInstanceError as FrozenInstanceError
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import fields as fields
    from dataclasses import replace as replace
else:
    import operator as _operator

    class _Missing:
        def __repr__(self):
            return "MISSING"

    MISSING = _Missing()

    class FrozenInstanceError(AttributeError):
        """Assigning to a field of a frozen record."""

    class Field:
        __slots__ = ("compare", "default", "default_factory", "hash", "init", "name", "repr",
                     "type")

        def __init__(self, default, default_factory, init, repr, hash, compare):
            self.name, self.type = "", None
            self.default, self.default_factory = default, default_factory
            self.init, self.repr, self.hash, self.compare = init, repr, hash, compare

    def field(*, default=MISSING, default_factory=MISSING, init=True, repr=True, hash=None,
              compare=True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        return Field(default, default_factory, init, repr, hash, compare)

    def fields(record):
        return tuple(record.__record_fields__.values())

    def replace(record, /, **changes):
        for f in record.__record_fields__.values():
            if f.init and f.name not in changes:
                changes[f.name] = getattr(record, f.name)
        return record.__class__(**changes)

    def dataclass(cls=None, /, *, frozen=False, order=False, eq=True):
        def wrap(cls):
            return _build(cls, frozen, order, eq)
        return wrap if cls is None else wrap(cls)

    def _collect(cls):
        found = {}
        for base in reversed(cls.__mro__[1:]):
            found.update(getattr(base, "__record_fields__", {}))
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - no inspect here
        for name in own:
            value = cls.__dict__.get(name, MISSING)
            f = value if isinstance(value, Field) else Field(value, MISSING, True, True, None,
                                                              True)
            f.name, f.type = name, own[name]
            if f.default is MISSING:
                if isinstance(value, Field):
                    delattr(cls, name)
            else:
                setattr(cls, name, f.default)
            found[name] = f
        return found

    def _init_source(fields, frozen, post_init):
        params, body, env = ["self"], [], {"MISSING": MISSING}
        for n, f in enumerate(fields.values()):
            if not f.init:
                continue
            if f.default_factory is not MISSING:
                env[f"_f{n}"] = f.default_factory
                params.append(f"{f.name}=MISSING")
                value = f"_f{n}() if {f.name} is MISSING else {f.name}"
            elif f.default is not MISSING:
                env[f"_d{n}"] = f.default
                params.append(f"{f.name}=_d{n}")
                value = f.name
            else:
                params.append(f.name)
                value = f.name
            body.append(f" _set(self, {f.name!r}, {value})" if frozen
                        else f" self.{f.name} = {value}")
        if post_init:
            body.append(" self.__post_init__()")
        return f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or " pass"), env

    def _build(cls, frozen, order, eq):
        fields = _collect(cls)
        init, env = _init_source(fields, frozen, hasattr(cls, "__post_init__"))
        env["_set"] = object.__setattr__
        scope = {}
        exec(init, env, scope)  # the one compile: __init__'s signature is the fields'
        cls.__init__ = scope["__init__"]
        key = _key([f.name for f in fields.values() if f.compare])
        ops = {"__eq__": _operator.eq} if eq else {}
        if order:
            ops.update(__lt__=_operator.lt, __le__=_operator.le, __gt__=_operator.gt,
                       __ge__=_operator.ge)
        for name, op in ops.items():
            if name not in cls.__dict__:
                setattr(cls, name, _compare(op, key, name))
        own_hash = cls.__dict__.get("__hash__", MISSING)
        explicit = not (own_hash is MISSING or (own_hash is None and "__eq__" in cls.__dict__))
        if eq and not explicit:
            if frozen:
                hashed = _key([f.name for f in fields.values()
                               if (f.compare if f.hash is None else f.hash)])
                cls.__hash__ = lambda self: hash(hashed(self))
            else:
                cls.__hash__ = None
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = _repr
        if frozen:
            cls.__setattr__, cls.__delattr__ = _frozen_set, _frozen_del
        cls.__record_fields__ = fields
        cls.__record_repr__ = tuple(f.name for f in fields.values() if f.repr)
        cls.__match_args__ = tuple(f.name for f in fields.values() if f.init)
        cls.__dataclass_fields__ = _Compat()
        return cls

    def _key(names):
        """The fields' values as one tuple, read in C (no code compiled per class)."""
        if not names:
            return lambda record: ()
        get = _operator.attrgetter(*names)
        return get if len(names) > 1 else lambda record: (get(record),)

    def _compare(op, key, name):
        def compare(self, other):
            if other.__class__ is self.__class__:
                return op(key(self), key(other))
            return NotImplemented
        compare.__name__ = compare.__qualname__ = name
        return compare

    def _repr(self):
        return f"{self.__class__.__qualname__}(" + ", ".join(
            f"{n}={getattr(self, n)!r}" for n in self.__record_repr__) + ")"

    def _frozen_set(self, name, value):
        if name in self.__record_fields__:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def _frozen_del(self, name):
        if name in self.__record_fields__:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    class _Compat:
        """`__dataclass_fields__`, for dataclasses.fields/replace/asdict: built
        from the real module on first use, then cached on the class."""

        def __get__(self, record, owner):
            import dataclasses
            real = {}
            for f in owner.__record_fields__.values():
                made = dataclasses.field(default=f.default if f.default is not MISSING
                                         else dataclasses.MISSING,
                                         default_factory=f.default_factory
                                         if f.default_factory is not MISSING
                                         else dataclasses.MISSING,
                                         init=f.init, repr=f.repr, hash=f.hash,
                                         compare=f.compare)
                made.name, made.type = f.name, owner.__annotations__.get(f.name)
                made._field_type = dataclasses._FIELD
                real[f.name] = made
            type.__setattr__(owner, "__dataclass_fields__", real)
            return real
