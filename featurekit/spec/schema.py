"""JSON Schema of the spec, with each installed extractor's params as a conditional branch."""
from __future__ import annotations

from ..plugins.registry import Registry
from .models import Spec


def spec_schema(registry: Registry) -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "featurekit spec (format 1)"
    defs = schema.setdefault("$defs", {})
    engine = schema["properties"]["engine"]
    engines = registry.names("engine")
    # `engine: local` is shorthand for `engine: {kind: local}` (the model's before-validator)
    schema["properties"]["engine"] = {
        "description": engine.get("description", ""), "default": "local",
        "anyOf": [{"type": "string", "enum": engines}, {"$ref": "#/$defs/EngineSpec"}]}
    defs["EngineSpec"]["properties"]["kind"] = {"type": "string", "enum": engines, "default": "local"}
    feature = defs["FeatureSpec"]
    names = registry.names("extractor")
    feature["properties"]["extractor"] = {"type": "string", "enum": names,
                                          "description": "an installed extractor"}
    branches = []
    for name in names:
        cls = registry.get("extractor", name).cls
        params = cls.Params.model_json_schema()
        for key, sub in params.pop("$defs", {}).items():
            defs.setdefault(key, sub)
        branches.append({"if": {"properties": {"extractor": {"const": name}}},
                         "then": {"properties": {"params": params,
                                                 "inputs": {"type": "object", "additionalProperties": False,
                                                            "properties": {k: {"type": "string"} for k in cls.inputs},
                                                            "required": list(cls.inputs)}}}})
    if branches:
        feature["allOf"] = branches
    return schema
