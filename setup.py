"""The optional C part: records.py's encoder for the usual listing (src/sanctiongate/index/_recordc.c).

Everything else is in pyproject.toml. ``optional``: where no C compiler or zlib headers are
at hand (a slim container image), the build goes on without it and records.py encodes every
record in Python, byte for byte the same, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sanctiongate.index._recordc",
            ["src/sanctiongate/index/_recordc.c"],
            libraries=["z"],
            optional=True,
        )
    ]
)
