"""The domain core is pure: importing it pulls in no I/O framework (SPEC's layering)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = {"faust", "redis", "aiokafka", "kafka", "fastapi", "starlette", "httpx", "uvicorn"}

PROBE = """
import json, sys
import sanctiongate.domain.catalogue
import sanctiongate.domain.decisions
import sanctiongate.domain.identifiers
import sanctiongate.domain.models
from sanctiongate.domain.catalogue import default_catalogue_bytes, parse_catalogue
from sanctiongate.domain.identifiers import normalise_name
parse_catalogue(default_catalogue_bytes())
normalise_name("陝西")  # loads the lazily imported converter too
print(json.dumps(sorted(sys.modules)))
"""


def test_domain_imports_no_io_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert "sanctiongate" in loaded  # the probe really imported the package
    assert loaded & FORBIDDEN == set()
