"""Only for what pyproject.toml cannot say: the cffi extension vigil._sysc."""

from setuptools import setup

setup(cffi_modules=["vigil/_sys_build.py:ffibuilder"])
