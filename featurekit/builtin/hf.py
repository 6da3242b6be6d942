"""The built-in ``hf`` source: a Hugging Face dataset, read from its own Arrow files.

``source: {format: hf, path: ...}`` names either a folder written by ``save_to_disk`` (a
``Dataset``, or a ``DatasetDict`` whose splits become a column), a prepared dataset folder
of the ``datasets`` cache, or a hub id (``user/name``) that ``datasets.load_dataset`` has
already put in the local cache: featurekit never reaches the hub. The files are Arrow IPC
streams; they are memory-mapped and read by pyarrow, so the ``datasets`` package itself is
not needed here and no row goes through Python. ``Image`` (and ``Audio``) features become
their bytes, a binary column like ``files:`` loads; ``ClassLabel`` stays its index unless
``class_labels: name``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from ..plugins.hookspecs import hookimpl
from ..plugins.source import RowIssue, Source, SourceBatch

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
MEDIA = ("Image", "Audio")  # features stored as struct<bytes, path>: the bytes are the value
EMBED_HINT = ("load the dataset and save_to_disk it (datasets then embeds the files' bytes), and name that "
              "folder")


class HfOptions(Source.Options):
    split_column: str | None = Field("split", description="column holding each row's split (a DatasetDict's "
                                     "split names); null: none")
    splits: list[str] | None = Field(None, description="read only these splits (default: all)")
    row_key: str | None = Field(None, description="add this column, '<split>:<row>' (the row's position in its "
                                "split), as a key for a dataset without an id column")
    config: str | None = Field(None, description="a hub id's configuration in the cache (needed when several "
                               "are cached)")
    class_labels: Literal["index", "name"] = Field("index", description="ClassLabel columns as their index "
                                                   "(as stored) or their name")
    cache_dir: str | None = Field(None, description="the datasets cache to find a hub id in (default: "
                                  "$HF_DATASETS_CACHE, else $HF_HOME/datasets, else ~/.cache/huggingface/datasets)")


class HfSource(Source):
    """A Hugging Face dataset: a save_to_disk folder, a cache folder, or a cached hub id."""

    name = "hf"
    Options = HfOptions

    # -- finding the files -------------------------------------------------------------
    def locate(self, root: Path, pattern: str) -> list[Path]:
        folder = Path(pattern) if Path(pattern).is_absolute() else root / pattern
        if folder.is_dir():
            return self._wanted(folder, dataset_files(folder))
        if HUB_ID.match(pattern):
            cached = cached_dataset(pattern, self.options.config, self.cache_dir())
            return self._wanted(cached, dataset_files(cached)) if cached is not None else []
        return []

    def not_found(self, pattern: str) -> str:
        return (f"{pattern!r} is neither a dataset folder (relative to the spec's folder) nor a hub id in the "
                f"local datasets cache ({self.cache_dir()}); featurekit never downloads: run "
                f"datasets.load_dataset({pattern!r}) once, or save_to_disk the dataset and name its folder")

    def cache_dir(self) -> Path:
        if self.options.cache_dir:
            return Path(self.options.cache_dir).expanduser()
        if os.environ.get("HF_DATASETS_CACHE"):
            return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
        return Path(home).expanduser() / "datasets"

    def _wanted(self, folder: Path, files: list[tuple[str | None, Path]]) -> list[Path]:
        wanted = self.options.splits
        if wanted is None:
            return [p for _, p in files]
        known = list(dict.fromkeys(s for s, _ in files if s is not None))
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise ValueError(f"{folder}: no split {unknown[0]!r} (splits: {', '.join(known) or 'none'}); "
                             "fix source.options.splits")
        return [p for s, p in files if s in wanted]

    # -- reading -----------------------------------------------------------------------
    def schema(self, path: Path) -> pa.Schema:
        with pa.memory_map(str(path)) as src:
            schema = pa.ipc.open_stream(src).schema
        return self._convert(pa.table({f.name: pa.array([], f.type) for f in schema}, schema=schema),
                             split_of(path), path).table.schema

    def read(self, path: Path) -> SourceBatch:
        with pa.memory_map(str(path)) as src:
            table = pa.ipc.open_stream(src).read_all()
        return self._convert(table, split_of(path), path)

    def _convert(self, table: pa.Table, split: str | None, path: Path) -> SourceBatch:
        features = hf_features(table.schema)
        issues: list[RowIssue] = []
        columns = {}
        drop = None  # rows whose media is a path only
        for name in table.column_names:
            column, kind = table.column(name), (features.get(name) or {}).get("_type")
            if kind in MEDIA or (kind is None and is_media_struct(column.type)):
                bytes_ = pc.struct_field(column, "bytes").cast(pa.large_binary())
                only_path = pc.and_(pc.is_null(bytes_), pc.is_valid(pc.struct_field(column, "path")))
                if pc.any(only_path).as_py():  # rare: filtering copies every image, so only then
                    for i in pc.indices_nonzero(only_path).to_pylist():
                        issues.append(RowIssue(f"{path}: row {i + 1}", f"file not embedded: {name!r} holds a "
                                               f"path only; {EMBED_HINT}"))
                    drop = only_path if drop is None else pc.or_(drop, only_path)
                column = bytes_
            elif kind == "ClassLabel" and self.options.class_labels == "name":
                names = pa.array(features[name].get("names") or [], pa.string())
                column = names.take(pc.if_else(pc.less(column, 0), None, column))
            columns[name] = column
        out = pa.table(columns)
        added = {}
        if self.options.split_column and split is not None:
            added[self.options.split_column] = pa.repeat(pa.scalar(split, pa.string()), out.num_rows)
        if self.options.row_key:
            start = _rows_before(path) if out.num_rows else 0
            rows = pa.array(np.arange(start, start + out.num_rows)).cast(pa.string())
            added[self.options.row_key] = pc.binary_join_element_wise(
                pa.repeat(pa.scalar(f"{split}:" if split is not None else "", pa.string()), out.num_rows), rows, "")
        for name, column in added.items():
            if name in out.column_names:
                option = "split_column" if name == self.options.split_column else "row_key"
                raise ValueError(f"the dataset has a column {name!r} already; set source.options.{option} to "
                                 "another name" + (", or null" if option == "split_column" else ""))
            out = out.append_column(name, column)
        if drop is not None:
            out = out.filter(pc.invert(drop))
        return SourceBatch(out, issues)


def hf_features(schema: pa.Schema) -> dict:
    """The ``datasets`` features recorded in an Arrow file's schema metadata (name -> dict)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        info = json.loads(raw) if raw else {}
        features = info.get("info", {}).get("features") or {}
    except (ValueError, AttributeError):
        return {}
    return features if isinstance(features, dict) else {}


def is_media_struct(typ: pa.DataType) -> bool:
    """``struct<bytes: binary, path: string>``: how ``datasets`` stores an image or a sound."""
    return pa.types.is_struct(typ) and sorted(typ.field(i).name for i in range(typ.num_fields)) == ["bytes", "path"]


# -- the folders ``datasets`` writes --------------------------------------------------------

def dataset_files(folder: Path) -> list[tuple[str | None, Path]]:
    """(split, Arrow file) of a dataset folder, in the dataset's own order."""
    if (folder / "dataset_dict.json").is_file():
        splits = _json(folder / "dataset_dict.json").get("splits") or []
        return [(split, path) for split in splits for _, path in _saved_files(folder / split, split)]
    if (folder / "state.json").is_file():
        return _saved_files(folder, None)
    if (folder / "dataset_info.json").is_file():
        info = _json(folder / "dataset_info.json")
        return [(split, folder / name) for split in info.get("splits") or {}
                for name in sorted(os.listdir(folder)) if _cache_split(name, info) == split]
    raise ValueError(f"{folder} is not a Hugging Face dataset folder (no dataset_dict.json, state.json or "
                     "dataset_info.json): name a folder written by save_to_disk")


def _saved_files(folder: Path, split: str | None) -> list[tuple[str | None, Path]]:
    state = _json(folder / "state.json")
    split = split if split is not None else state.get("_split")
    return [(split, folder / f["filename"]) for f in state.get("_data_files") or []]


def _cache_split(filename: str, info: dict) -> str | None:
    """The split of a file in a cache folder: ``<dataset>-<split>[-00000-of-00004].arrow``."""
    prefix = f"{info.get('dataset_name') or info.get('builder_name')}-"
    if not filename.startswith(prefix) or not filename.endswith(".arrow"):
        return None
    rest = re.sub(r"-\d{5}-of-\d{5}$", "", filename[len(prefix):-len(".arrow")])
    return rest if rest in (info.get("splits") or {}) else None


def split_of(path: Path) -> str | None:
    """The split an Arrow file of a dataset folder belongs to (None: a lone Dataset)."""
    folder = path.parent
    if (folder / "state.json").is_file():
        split = _json(folder / "state.json").get("_split")
        if split is None and (folder.parent / "dataset_dict.json").is_file():
            split = folder.name
        return split
    if (folder / "dataset_info.json").is_file():
        return _cache_split(path.name, _json(folder / "dataset_info.json"))
    return None


def _rows_before(path: Path) -> int:
    """Rows of the files before `path` in its split (row positions run across a split's shards)."""
    folder = path.parent
    if (folder / "state.json").is_file():
        files = [p for _, p in _saved_files(folder, None)]
    else:
        split = split_of(path)
        files = [p for s, p in dataset_files(folder) if s == split]
    before = 0
    for other in files:
        if other == path:
            break
        with pa.memory_map(str(other)) as src:  # batch headers only: the data stays on disk
            before += sum(batch.num_rows for batch in pa.ipc.open_stream(src))
    return before


def cached_dataset(hub_id: str, config: str | None, cache: Path) -> Path | None:
    """The newest prepared copy of `hub_id` in the datasets cache, found as ``datasets`` finds it
    offline (``<cache>/<user>___<name>/<config>/<version>/<hash>/``)."""
    parts = hub_id.split("/")
    parts[-1] = snake_case(parts[-1])
    base = cache / "___".join(parts)
    found = sorted((p for p in base.glob(f"{config or '*'}/*/*") if (p / "dataset_info.json").is_file()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    configs = sorted({p.parts[-3] for p in found})
    if config is None and len(configs) > 1:
        raise ValueError(f"{hub_id}: several configurations are cached ({', '.join(configs)}); choose one with "
                         "source.options.config")
    return found[-1]


def snake_case(name: str) -> str:
    """How ``datasets`` names a dataset's cache folder (its ``camelcase_to_snakecase``)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


@hookimpl
def featurekit_register_sources():
    return [HfSource]
