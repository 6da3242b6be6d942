"""The `Extractor` base class plugin authors subclass, and what featurekit derives from it.

An extractor turns a batch of input columns into one column (or several) with one
value per row. It declares its inputs' Arrow types, its params as a pydantic model and
its output type(s); its `version` and params enter the fingerprint that decides when a
stored column is stale.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field


class Resources(BaseModel):
    """What one worker running the extractor needs. Overridable per feature in the spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus: float = Field(1.0, gt=0, le=1 << 20, allow_inf_nan=False)
    gpus: float = Field(0.0, ge=0, le=1 << 10, allow_inf_nan=False)
    batch_size: int = Field(1024, gt=0, le=1 << 24, description="rows handed to one __call__")
    workers: int | None = Field(None, gt=0, le=1 << 20, description="worker processes; None lets the engine choose "
                                "(capped at the machine's CPUs)")
    threads: int = Field(1, gt=0, le=1 << 10, description="fragments computed at once by threads in one process; for "
                         "thread-safe extractors whose work releases the GIL (Arrow compute, I/O, torch)")
    timeout: float | None = Field(None, gt=0, le=7 * 24 * 3600, allow_inf_nan=False,
                                  description="seconds one __call__ may take; its rows fail past it")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RUNTIME = "featurekit_runtime"


def runtime_field(default: Any = ..., **kwargs: Any) -> Any:
    """A param that changes how a value is computed but never the value (device, threads,
    a cache folder): left out of the fingerprint, so changing it recomputes nothing.

        device: str = featurekit.runtime_field("auto", description="auto, cpu, cuda:1")
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[RUNTIME] = True
    return Field(default, json_schema_extra=extra, **kwargs)


def is_runtime(model: type[BaseModel], key: str) -> bool:
    info = model.model_fields.get(key)
    extra = info.json_schema_extra if info is not None else None
    return isinstance(extra, dict) and bool(extra.get(RUNTIME))


class Extractor:
    """Subclass this; see docs/plugins.md for a complete example package.

    Class attributes: ``name`` (``plugin.thing``), ``version`` (bump when outputs
    change), ``inputs`` (logical input -> Arrow type, or a name from `TYPE_CLASSES`),
    ``resources``. Nested class ``Params``: a pydantic model, unknown keys rejected.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    inputs: ClassVar[Mapping[str, Any]] = {}
    resources: ClassVar[Resources] = Resources()
    Params: ClassVar[type[BaseModel]] = _Params
    path_params: ClassVar[tuple[str, ...]] = ()  # params naming files: relative to the spec's folder
    inputs_from_params: ClassVar[bool] = False  # inputs come from params; unmapped ones read the same-named column
    # Rows with equal inputs share one computed value (content-addressed compute, notes/internals.md).
    # None: featurekit decides (image and vector inputs always share; for text and numbers it
    # measures whether keying pays); True: always share; False: never (vectorized extractors
    # cheaper than hashing their inputs).
    reuse_values: ClassVar[bool | None] = None

    def __init__(self, params: BaseModel | None = None):
        self.params = params if params is not None else self.Params()

    def setup(self) -> None:
        """Runs once per worker before the first batch: load models here, never at import."""

    def input_types(self) -> Mapping[str, Any]:
        """Logical input -> expected type. The class's ``inputs`` unless params decide them."""
        return type(self).inputs

    def check_inputs(self, types: Mapping[str, pa.DataType]) -> str | None:
        """Optional: why these input column types cannot work with these params (checked by
        `validate`, before any data is touched), or None."""
        return None

    def output_type(self) -> pa.DataType:
        """The Arrow type of the single output column."""
        raise NotImplementedError(f"{type(self).__name__} must define output_type() or output_types()")

    def output_types(self) -> dict[str, pa.DataType]:
        """Multi-output extractors override this: output name -> Arrow type."""
        raise NotImplementedError

    def fingerprint_params(self) -> dict[str, Any]:
        """What of the params enters the fingerprint: the params as the spec wrote them (not
        defaults a later release may add), without runtime params (`runtime_field`).
        Override to add facts decided at run time that change values, e.g. the compute
        dtype `dtype: auto` resolves to on this machine."""
        written = self.params.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in written.items() if not is_runtime(type(self.params), k)}

    def runtime_params(self) -> dict[str, Any]:
        """The runtime params the spec wrote (recorded, never fingerprinted)."""
        written = self.params.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in written.items() if is_runtime(type(self.params), k)}

    def output_metadata(self) -> dict[str, str]:
        """Optional: facts readers need (a row's shape, its dtype), stored in the output
        columns' field metadata as ``featurekit.output.<key>``."""
        return {}

    def text_embedder(self) -> tuple[str, dict[str, Any]] | None:
        """Optional, for an extractor of vectors: the extractor (its registered name and params)
        that embeds a text query into the same space, used by `featurekit search --text`
        (CLIP's image side names its text side, with the same model). None: no text side."""
        return None

    def __call__(self, batch: pa.RecordBatch) -> Any:
        """One value per row of `batch` (an array; a RecordBatch or dict of arrays for several
        outputs). Rows that cannot be computed: return ``featurekit.RowErrors(values, errors)``
        (one error or None per row) and the other rows keep their values at no extra cost;
        raising instead makes featurekit isolate the failing rows by halving the batch."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(batch)")

    # -- derived, not for overriding -------------------------------------------------
    @classmethod
    def is_multi_output(cls) -> bool:
        return cls.output_types is not Extractor.output_types

    def outputs(self) -> dict[str, pa.DataType]:
        """Output name -> type; a single-output extractor has the one output ``""``."""
        return self.output_types() if self.is_multi_output() else {"": self.output_type()}


# -- input type matching ---------------------------------------------------------------

def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
        or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) \
        or pa.types.is_fixed_size_binary(t)


def _is_image_struct(t: pa.DataType) -> bool:
    """Hugging Face's image column, as `datasets` writes it to Parquet: struct<bytes, path>."""
    if not pa.types.is_struct(t):
        return False
    names = [t.field(i).name for i in range(t.num_fields)]
    return "bytes" in names and _is_binary(t.field("bytes").type)


def binary_view(arr: pa.Array) -> pa.Array:
    """An image struct's bytes (null where the struct is null); any other array unchanged."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if _is_image_struct(arr.type):
        import pyarrow.compute as pc
        return pc.struct_field(arr, "bytes")
    return arr


# Input type classes an extractor may declare instead of an Arrow type.
TYPE_CLASSES: dict[str, Callable[[pa.DataType], bool]] = {
    "any": lambda t: True,
    "string": _is_string,
    "binary": lambda t: _is_binary(t) or _is_image_struct(t),
    "integer": pa.types.is_integer,
    "floating": pa.types.is_floating,
    "numeric": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "list": _is_list,
    "list<string>": lambda t: _is_list(t) and _is_string(t.value_type),
}


def type_matches(expected: Any, actual: pa.DataType) -> bool:
    """Whether a column of type `actual` can feed an input declared as `expected`.

    Arrow types match up to width and offset size (string ~ large_string, int32 ~ int64,
    list ~ large_list). `expected` may also name a class from TYPE_CLASSES.
    """
    if pa.types.is_null(actual):
        return True
    if isinstance(expected, str):
        return TYPE_CLASSES[expected](actual)
    if _is_string(expected):
        return _is_string(actual)
    if _is_binary(expected):
        return _is_binary(actual) or _is_image_struct(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual)
    if _is_list(expected):
        if not _is_list(actual):
            return False
        if pa.types.is_fixed_size_list(expected) and (
                not pa.types.is_fixed_size_list(actual) or actual.list_size != expected.list_size):
            return False
        return type_matches(expected.value_type, actual.value_type)
    return expected.equals(actual)


def describe_type(expected: Any) -> str:
    return expected if isinstance(expected, str) else str(expected)


# -- fingerprints ----------------------------------------------------------------------

def fingerprint(extractor: str, version: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """A short stable hash of what determines a feature's values.

    `inputs` maps each logical input to its upstream's fingerprint (for a feature) or to
    ``column:<name>`` (for a raw column). Batch size, workers and engine are not part of it.
    """
    payload = json.dumps({"extractor": extractor, "version": str(version), "params": params,
                          "inputs": dict(sorted(inputs.items()))}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
