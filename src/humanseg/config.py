"""PaddleSeg-style YAML configs: `_base_` inheritance, deep merge, and the file behind each key.

A config file may name one or more `_base_` files (paths relative to itself). The file's own keys
are deep-merged over its bases, and an earlier base over a later one (PaddleSeg's order): mappings
merge key by key, everything else (lists included) is replaced. A mapping holding
`_inherited_: false` replaces the inherited mapping instead of merging (PaddleSeg's switch; here it
holds against every base, and the flag never reaches the result). Every key remembers the file
that set it, so a validation error names the key and the file it came from.

This module only loads and merges (it sits below everything it describes); checking a config by
building its sections is `humanseg.builder.load_config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from humanseg.errors import HumanSegError, KeyPath, SpecError

BASE_KEY = "_base_"
INHERIT_KEY = "_inherited_"

# Top-level keys of a PaddleSeg config (`test_config` and `distill_loss` are accepted unchecked;
# `save_interval` appears in PaddleSeg's own PP-HumanSeg configs, `to_static_training` is a
# Paddle compile switch with no meaning here; `teacher` is ours: humanseg.engine.distill).
TOP_LEVEL_KEYS = frozenset(
    {
        "batch_size",
        "iters",
        "train_dataset",
        "val_dataset",
        "test_dataset",
        "optimizer",
        "lr_scheduler",
        "learning_rate",
        "loss",
        "distill_loss",
        "teacher",
        "model",
        "export",
        "test_config",
        "save_interval",
        "to_static_training",
    }
)
DATASET_SECTIONS = ("train_dataset", "val_dataset", "test_dataset")

Source = Callable[[KeyPath], Path]


def _read_yaml(path: Path) -> dict[str, Any]:
    """One YAML file as a mapping (an empty file is an empty mapping)."""
    if not path.is_file():
        raise HumanSegError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:  # a syntax error: say where, as an editor would
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({error.context})" if error.context else ""
        raise HumanSegError(f"{path}: not valid YAML{where}: {error.problem}{context}") from None
    except yaml.YAMLError as error:
        raise HumanSegError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HumanSegError(f"{path}: a config must be a YAML mapping, found {type(data).__name__}")
    return data


def _record_origins(
    value: Any, path: KeyPath, source: Source, origins: dict[KeyPath, Path]
) -> None:
    """Note the origin of `path` and of every key and list item below it."""
    origins[path] = source(path)
    if isinstance(value, dict):
        for key, item in value.items():
            _record_origins(item, (*path, key), source, origins)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _record_origins(item, (*path, index), source, origins)


def _forget_below(path: KeyPath, origins: dict[KeyPath, Path]) -> None:
    """Drop the origins of everything strictly below `path` (its value is being replaced)."""
    depth = len(path)
    for key in [k for k in origins if len(k) > depth and k[:depth] == path]:
        del origins[key]


def _without_inherit_flags(value: Any) -> Any:
    """`value` with every `_inherited_` switch removed (it only steers merging)."""
    if isinstance(value, dict):
        return {k: _without_inherit_flags(v) for k, v in value.items() if k != INHERIT_KEY}
    if isinstance(value, list):
        return [_without_inherit_flags(item) for item in value]
    return value


def _merge(
    base: dict[str, Any],
    child: dict[str, Any],
    source: Source,
    path: KeyPath,
    origins: dict[KeyPath, Path],
) -> dict[str, Any]:
    """Deep-merge `child` over `base`; `source(key_path)` tells which file set a key of `child`."""
    merged = dict(base)
    for key, value in child.items():
        key_path = (*path, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            inherit = value.get(INHERIT_KEY, True)
            value = {k: v for k, v in value.items() if k != INHERIT_KEY}
            if inherit:
                origins.setdefault(key_path, source(key_path))
                merged[key] = _merge(merged[key], value, source, key_path, origins)
                continue
        value = _without_inherit_flags(value)
        _forget_below(key_path, origins)
        _record_origins(value, key_path, source, origins)
        merged[key] = value
    return merged


def _base_paths(raw: dict[str, Any], path: Path) -> list[Path]:
    """The `_base_` entry of a file as paths (one string or a list), relative to the file."""
    bases = raw.get(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise HumanSegError(f"{path}: {BASE_KEY} must be a path or a list of paths")
    return [(path.parent / base) for base in bases]


def _load_tree(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[KeyPath, Path]]:
    """Load `path` merged over its bases (recursively) and the file each key came from."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise HumanSegError(f"{path}: {BASE_KEY} inheritance cycle ({cycle})")
    raw = _read_yaml(path)
    merged: dict[str, Any] = {}
    origins: dict[KeyPath, Path] = {}
    for base in reversed(_base_paths(raw, path)):  # merged last to first: earlier bases win
        if not base.is_file():
            raise HumanSegError(f"{path}: {BASE_KEY} file {base} not found")
        tree, tree_origins = _load_tree(base, (*chain, resolved))

        def from_base(key: KeyPath, found: dict = tree_origins, file: Path = base) -> Path:
            """The file inside the base's own chain that set `key`."""
            return _origin(key, found, file)

        merged = _merge(merged, tree, from_base, (), origins)
    own = {k: v for k, v in raw.items() if k != BASE_KEY}
    return _merge(merged, own, lambda _key: path, (), origins), origins


def _origin(path: KeyPath, origins: Mapping[KeyPath, Path], default: Path) -> Path:
    """The file that set `path`, or the nearest enclosing key's file."""
    for depth in range(len(path), 0, -1):
        if path[:depth] in origins:
            return origins[path[:depth]]
    return default


def read_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[KeyPath, Path]]:
    """A config with its `_base_` chain, deep-merged (see module docstring), not yet checked,
    and the file that set each key path (for `blame`). `humanseg.builder.load_config` checks it
    by building its sections."""
    return _load_tree(Path(path), ())


def blame(error: SpecError, origins: Mapping[KeyPath, Path], default: Path) -> HumanSegError:
    """A SpecError as one error naming the file that set its key (or the nearest enclosing one),
    then the key path and what is wrong."""
    return HumanSegError(f"{_origin(error.path, origins, default)}: {error}")
