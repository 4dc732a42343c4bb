"""Two build steps pyproject.toml cannot say:

- the TFTP send loop in C (provision/tftp/_sendloop.c), the one compiled part of provision. It is
  optional: where no C compiler and Python headers are at hand the install still succeeds, and the
  pumps' children send with the same loop in Python (slower; `serve` logs it);
- the templates: `kickstarts/` and `bootfiles/` stay at the top of the source tree, where an
  operator finds them, and go into the package as `provision/_templates/` (package data, found
  through importlib.resources), so an installed provision renders with no checkout present.
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

TEMPLATES = ("kickstarts", "bootfiles")


class build_py_with_templates(build_py):
    def run(self):
        super().run()
        here = Path(__file__).resolve().parent
        for sub in TEMPLATES:
            for src in sorted((here / sub).rglob("*.j2")):
                dst = Path(self.build_lib, "provision", "_templates", src.relative_to(here))
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


setup(ext_modules=[Extension("provision.tftp._sendloop", ["provision/tftp/_sendloop.c"], optional=True)],
      cmdclass={"build_py": build_py_with_templates})
