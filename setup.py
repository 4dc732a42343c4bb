"""The one compiled part of provision: the TFTP send loop in C (provision/tftp/_sendloop.c). It is
optional: where no C compiler and Python headers are at hand the install still succeeds, and the
pumps' children send with the same loop in Python (slower; `serve` logs it). Everything else is
in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("provision.tftp._sendloop", ["provision/tftp/_sendloop.c"], optional=True)])
