"""Validate a rendered kickstart with pykickstart's RHEL8 and RHEL9 handlers."""

from __future__ import annotations

import warnings

from pykickstart.errors import KickstartError
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL8, RHEL9, makeVersion, versionToString

HANDLERS = (RHEL8, RHEL9)


def check_kickstart(text: str) -> list[str]:
    """Every problem pykickstart reports (errors and deprecation warnings), as
    'RHEL8: line N: message'; an empty list means valid for both."""
    problems = []
    for version in HANDLERS:
        label = versionToString(version)
        parser = KickstartParser(makeVersion(version), errorsAreFatal=True, missingIncludeIsFatal=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parser.readKickstartFromString(text)
            except KickstartError as exc:
                problems.append(f"{label}: {exc}")
        problems += [f"{label}: warning: {w.message}" for w in caught]
    return problems
