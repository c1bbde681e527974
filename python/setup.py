"""Bundles libherd beside the package when one is at hand at build time.

`pip install ./python` copies the library named by $HERD_LIBRARY, else the checkout's
build/src/libherd.so if it was built, into the installed package as herd/libherd.so, where
`import herd` looks right after $HERD_LIBRARY. With neither, the package is pure Python and
finds libherd at import time ($HERD_LIBRARY or the system library path).
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def _library():
    env = os.environ.get("HERD_LIBRARY")
    if env:
        if not Path(env).is_file():
            raise SystemExit(f"HERD_LIBRARY={env!r} is not a file")
        return Path(env)
    built = HERE.parent / "build" / "src" / "libherd.so"
    return built if built.is_file() else None


LIBRARY = _library()


class BuildPy(build_py):
    def run(self):
        super().run()
        if LIBRARY is not None:
            dest = Path(self.build_lib) / "herd" / "libherd.so"
            print(f"herd: bundling {LIBRARY} as {dest}")
            shutil.copyfile(LIBRARY.resolve(), dest)


class Dist(Distribution):
    def has_ext_modules(self):
        # A bundled shared library makes the wheel platform-specific.
        return LIBRARY is not None


setup(cmdclass={"build_py": BuildPy}, distclass=Dist)
