"""The Smart Data Models JSON-LD @context files shipped with this package.

``CONTEXTS`` maps each upstream @context URL to its local copy, so the runtime can send the right
``Link`` header per adapter and the Helm chart's context server can serve the files without
internet access.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .problems import UnknownModel
from .validation import MODEL_REPOSITORY, PACKAGE_DIR

CONTEXT_DIR = PACKAGE_DIR / "common" / "contexts"

#: NGSI-LD core context; brokers add it implicitly (no local copy here)
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"

#: repository → its canonical @context URL
REPOSITORY_CONTEXT_URL: dict[str, str] = {
    repo: f"https://raw.githubusercontent.com/smart-data-models/{repo}/master/context.jsonld"
    for repo in (
        "dataModel.Parking",
        "dataModel.Weather",
        "dataModel.Environment",
        "dataModel.GreenEnergy",
        "dataModel.Energy",
        "dataModel.Device",
        "dataModel.Alert",
    )
}
REPOSITORY_CONTEXT_URL["data-models"] = (
    "https://raw.githubusercontent.com/smart-data-models/data-models/master/context/common-context.jsonld"
)

#: @context URL → local file
CONTEXTS: dict[str, Path] = {
    url: CONTEXT_DIR / repo / ("common-context.jsonld" if repo == "data-models" else "context.jsonld")
    for repo, url in REPOSITORY_CONTEXT_URL.items()
}
# the SolarEnergy examples use the GitHub Pages URL of the same file
CONTEXTS["https://smart-data-models.github.io/dataModel.Energy/context.jsonld"] = (
    CONTEXT_DIR / "dataModel.Energy" / "context.jsonld"
)

#: stadtlink's compound default @context (AdapterSpec default): every SDM context above in one
#: list. JSON-LD lets a later context win a term, and 61 terms (temperature, category, refDevice,
#: ...) expand differently per repository, so prefer the per-model ``context_url(model)``.
STADTLINK_CONTEXT_URL = (
    "https://raw.githubusercontent.com/stadtlink/stadtlink/main/schemas/contexts/stadtlink-context.jsonld"
)
CONTEXTS[STADTLINK_CONTEXT_URL] = PACKAGE_DIR / "contexts" / "stadtlink-context.jsonld"


def context_url(model_or_repo: str) -> str:
    """The @context URL for a model (``"ParkingSpot"``) or repository (``"dataModel.Parking"``,
    ``"Parking"``, ``"data-models"``)."""
    repo = MODEL_REPOSITORY.get(model_or_repo)
    if repo is None:
        if model_or_repo in REPOSITORY_CONTEXT_URL:
            repo = model_or_repo
        elif f"dataModel.{model_or_repo}" in REPOSITORY_CONTEXT_URL:
            repo = f"dataModel.{model_or_repo}"
    if repo is None:
        known = sorted(MODEL_REPOSITORY) + sorted(REPOSITORY_CONTEXT_URL)
        raise UnknownModel(f"no @context for {model_or_repo!r}; known: {', '.join(known)}")
    return REPOSITORY_CONTEXT_URL[repo]


@functools.cache
def _context_text(url: str) -> str:
    path = CONTEXTS.get(url)
    if path is None:
        raise UnknownModel(f"no local copy of @context {url!r}; known: {', '.join(sorted(CONTEXTS))}")
    return path.read_text(encoding="utf-8")


def load_context(url: str) -> dict[str, Any]:
    """The parsed @context document (``{"@context": {...}}``) for a URL in ``CONTEXTS``.

    Returns a fresh dict on every call, so callers may modify it.
    """
    return json.loads(_context_text(url))
