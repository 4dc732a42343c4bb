"""GET /api/v1/openapi.json: openapi.yaml beside this module, with the Bmc, Facts and
RebuildRequest schemas generated from the pydantic models the server validates with (so they
cannot drift)."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from flask import Blueprint, jsonify
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..domain import Bmc, Facts
from ..workflow.submit import RebuildRequest

bp = Blueprint("openapi", __name__)


@functools.cache
def document() -> dict:
    doc = yaml.safe_load((Path(__file__).with_name("openapi.yaml")).read_text())
    doc["info"]["version"] = __version__
    _, schemas = models_json_schema([(Bmc, "serialization"), (Facts, "serialization"), (RebuildRequest, "validation")],
                                    ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"].update(schemas["$defs"])
    return doc


@bp.get("/api/v1/openapi.json")
def openapi():
    return jsonify(document())
