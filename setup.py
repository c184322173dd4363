"""Only for what pyproject.toml cannot say: the cffi extension vigil._sysc,
and vigil._spawn, the entrypoint's spawn (plain C: loading cffi would cost
`vigil run` ~0.9 ms at every start)."""

from setuptools import Extension, setup

setup(cffi_modules=["vigil/_sys_build.py:ffibuilder"],
      ext_modules=[Extension("vigil._spawn", ["vigil/_spawn.c"])])
