"""The synthetic world: people, their offending careers, each agency's records of them, messy
identities with the truth beside them, injected faults and a past of panel decisions.

Nobody in it is real. It follows published criminology, not the project's rule set, so that a
back-test, the linking and the impact analysis run on it can fail. See docs/synthetic-data.md.
"""

from synthetic.formats import (
    AREAS,
    EXTRACT_FORMATS,
    FAULT_KINDS,
    GeneratedData,
    GeneratedExtract,
    IdentityNoise,
    PastDecisions,
)
from synthetic.generate import BLOCK_PEOPLE, generate_extracts

__all__ = [
    "AREAS",
    "BLOCK_PEOPLE",
    "EXTRACT_FORMATS",
    "FAULT_KINDS",
    "GeneratedData",
    "GeneratedExtract",
    "IdentityNoise",
    "PastDecisions",
    "generate_extracts",
]
