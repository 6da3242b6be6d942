"""`featurekit schema`: the spec format for editors (JSON Schema, with each installed extractor's
params as a conditional branch) and for people (the Markdown reference, docs/reference.md,
generated from the models and checked by a test)."""
from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..plugins.registry import Registry
from ..spec.models import (
    FLAG_CHECKS,
    DedupeSpec,
    EngineSpec,
    EvalSpec,
    FeatureCheck,
    FeatureSpec,
    IndexSpec,
    NearSpec,
    OnErrorSpec,
    RangeSpec,
    RecipeSpec,
    RecipeTableSpec,
    ResourcesSpec,
    SliceCheck,
    SliceSpec,
    SourceSpec,
    Spec,
    SplitSpec,
    TableSpec,
)


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
    defs["TargetSpec"]["properties"]["engine"] = {**schema["properties"]["engine"], "default": None}  # a target's too
    feature = defs["FeatureSpec"]
    names = registry.names("extractor")
    feature["properties"]["extractor"] = {"type": "string", "examples": names,
                                          "description": "an installed extractor, or a function of a plugins: file"}
    # without plugins: files, only the installed extractors
    schema["if"] = {"not": {"required": ["plugins"]}}
    schema["then"] = {"properties": {"features": {"additionalProperties": {
        "properties": {"extractor": {"enum": names}}}}}}
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
    # `checks: [not_null, ...]`: a check without a value may be written as its bare name
    for model, section in ((FeatureCheck, "FeatureSpec"), (SliceCheck, "SliceSpec")):
        flags = [k for k in FLAG_CHECKS if k in model.model_fields]
        defs[section]["properties"]["checks"]["items"] = {
            "anyOf": [{"type": "string", "enum": flags}, {"$ref": f"#/$defs/{model.__name__}"}]}
    return schema


SECTIONS = [
    ("top level", Spec), ("table", TableSpec), ("engine", EngineSpec), ("source", SourceSpec),
    ("features.NAME", FeatureSpec), ("features.NAME.resources", ResourcesSpec),
    ("features.NAME.on_error", OnErrorSpec), ("features.NAME.checks[]", FeatureCheck),
    ("features.NAME.checks[].range", RangeSpec), ("slices.NAME", SliceSpec), ("slices.NAME.checks[]", SliceCheck), ("slices.NAME.dedupe", DedupeSpec),
    ("slices.NAME.dedupe.near", NearSpec), ("slices.NAME.split", SplitSpec), ("recipes.NAME", RecipeSpec), ("recipes.NAME.eval", EvalSpec),
    ("recipes.NAME.table", RecipeTableSpec), ("indexes.COLUMN", IndexSpec),
]


def _type(annotation) -> str:
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    for noise in ("typing.", "featurekit.spec.models.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{value!r}`"


def model_table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        kind = _type(field.annotation).replace("|", "\\|")
        lines.append(f"| `{field.alias or name}` | `{kind}` | {_default(field)} | {meaning} |")
    return lines


def spec_reference(registry: Registry) -> str:
    lines = ["# featurekit spec reference (format 1)", "",
             "Generated from the models by `featurekit schema --markdown`; do not edit by hand.",
             "Unknown keys are errors everywhere. Paths are relative to the spec's folder.", ""]
    for title, model in SECTIONS:
        lines += [f"## `{title}`", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc and not doc[0].startswith(("Usage docs", "!!!", "A base class")) and model is not Spec:
            lines += [doc[0], ""]
        lines += model_table(model) + [""]
    for name in registry.names("engine"):
        options = registry.get("engine", name).cls.Options
        lines += [f"## `engine` options of `{name}`", ""]
        lines += (model_table(options) if options.model_fields else ["(none)"]) + [""]
    lines += ["# Extractors", ""]
    for name in registry.names("extractor"):
        entry = registry.get("extractor", name)
        cls = entry.cls
        lines += [f"## `{name}` (plugin `{entry.plugin}`, version {cls.version})", ""]
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            lines += [doc[0], ""]
        inputs = ", ".join(f"`{k}`: {v if isinstance(v, str) else str(v)}" for k, v in cls.inputs.items())
        if cls.inputs_from_params:
            inputs = "the columns its params name (no `inputs:` needed)"
        lines += [f"- inputs: {inputs or '(none)'}"]
        try:
            outputs = cls().outputs()
            shown = ", ".join(f"`{k}`: {v}" if k else f"one column named after the feature: {v}"
                              for k, v in outputs.items())
        except Exception:  # output types that need params with no default
            shown = "(depends on params)"
        lines += [f"- outputs (default params): {shown}", ""]
        if cls.Params.model_fields:
            lines += model_table(cls.Params) + [""]
    return "\n".join(lines).rstrip() + "\n"


def schema(*, markdown: bool = False, registry: Registry | None = None) -> dict | str:
    """The JSON Schema of the spec format with the installed extractors' params (for editors),
    or with `markdown` the spec reference (docs/reference.md)."""
    from ..plugins import registry as registries
    registry = registry or registries.default_registry()
    return spec_reference(registry) if markdown else spec_schema(registry)
