"""Named presets: partial params.yaml overlays kept in `presets/`.

A preset is a YAML file with params.yaml's sections and keys, holding only the keys it changes,
under a header comment whose first line says what it is for. `apply_preset` writes its values
into params.yaml with ruamel.yaml's round trip (comments and layout kept, as `dvc exp run -S`
edits the file); `preset_set_args` gives the same values as `dvc exp run -S` overrides, so that
experiments (studies) run on a preset without touching the workspace.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from core.files import atomic_path
from pipeline.params import MOVED_KEYS, Params, ParamsError, load_params

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
"""The folder of the project's presets, one `<name>.yaml` each."""

_SUFFIX = ".yaml"


@dataclass(frozen=True)
class Change:
    """One params.yaml value a preset changed."""

    key: str
    old: Any
    new: Any


def schema_keys() -> dict[str, FieldInfo]:
    """Every leaf key of the params schema (`pipeline.params.Params`).

    Returns:
        Dotted key (``section.key``, ``dataset.synthetic.seed``) -> its pydantic field.
    """

    def walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field

    return dict(walk(Params, ""))


def list_presets(*, preset_dir: Path = PRESET_DIR) -> dict[str, str]:
    """The presets and what each is for.

    Args:
        preset_dir: folder of preset files.

    Returns:
        Preset name (file stem) -> the first line of its header comment, sorted by name.
    """
    return {path.stem: _header(path) for path in sorted(Path(preset_dir).glob(f"*{_SUFFIX}"))}


def preset_path(name: str, *, preset_dir: Path = PRESET_DIR) -> Path:
    """The file of a preset.

    Args:
        name: preset name, the file stem (`released` for presets/released.yaml).
        preset_dir: folder of preset files.

    Returns:
        The existing preset file.

    Raises:
        ValueError: no such preset, naming the file looked for and the presets there are.
    """
    path = Path(preset_dir) / f"{name}{_SUFFIX}"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(list_presets(preset_dir=preset_dir)) or "none"
        raise ValueError(f"preset '{name}': {path} not found; presets in {preset_dir}: {known}")
    return path


def load_preset(name: str, *, preset_dir: Path = PRESET_DIR) -> dict[str, Any]:
    """Read and check a preset.

    Every key must be a leaf of the params schema and every value must have that key's type
    and bounds; checks that span keys (ranges, source completeness) run in `apply_preset`,
    against the file the preset is merged into.

    Args:
        name: preset name (file stem).
        preset_dir: folder of preset files.

    Returns:
        Dotted key (``section.key``) -> value, in the file's order, as YAML read it.

    Raises:
        ValueError: unknown preset, not a mapping, unknown key or bad value, naming the
            preset file and the key.
    """
    path = preset_path(name, preset_dir=preset_dir)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of params.yaml sections with the keys the preset changes")
    fields = schema_keys()
    values = _flatten(raw, prefix="", fields=fields, path=path)
    for key, value in values.items():
        field = fields[key]
        typed = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        try:
            TypeAdapter(typed).validate_python(value)
        except ValidationError as err:
            problems = "; ".join(e["msg"] for e in err.errors())
            raise ValueError(f"{path}: {key}: {problems} (got {value!r})") from None
    return values


def preset_set_args(name: str, *, preset_dir: Path = PRESET_DIR) -> list[str]:
    """A preset as `dvc exp run -S` overrides.

    Args:
        name: preset name (file stem).
        preset_dir: folder of preset files.

    Returns:
        One ``key=value`` per preset key (value in YAML flow style, which DVC's Hydra override
        grammar reads back to the same value): each the argument of one ``-S``, as
        `pipeline.study` and `python -m pipeline repro --set` take them.
    """
    return [f"{key}={format_value(value)}" for key, value in load_preset(name, preset_dir=preset_dir).items()]


def apply_preset(params_path: Path | str, name: str, *, preset_dir: Path = PRESET_DIR) -> list[Change]:
    """Write a preset's values into a params file, keeping its comments and layout.

    The merged params are validated first; the file is replaced atomically, and only when a
    value changes.

    Args:
        params_path: params.yaml to edit.
        name: preset name (file stem).
        preset_dir: folder of preset files.

    Returns:
        The values that changed, in the preset's order (empty when the file already matched).

    Raises:
        ValueError: a bad preset (see `load_preset`), a preset key the params file lacks, or
            merged params that do not validate, naming the preset file and the key.
    """
    params_path = Path(params_path)
    path = preset_path(name, preset_dir=preset_dir)
    values = load_preset(name, preset_dir=preset_dir)
    try:
        load_params(params_path, overrides=_nest(values))
    except ParamsError as err:
        raise ValueError(f"{path}: the preset merged into {params_path} is not valid params:\n{err}") from None
    text = params_path.read_text()
    plain = yaml.safe_load(text)
    document = _round_trip().load(text)
    changes = []
    for key, value in values.items():
        *sections, leaf = key.split(".")
        parent, old = document, plain
        for section in sections:
            parent, old = parent[section], old[section]
        if leaf not in parent:
            raise ValueError(f"{path}: {key}: {params_path} has no such key; add it there with its comment first")
        if old[leaf] == value:
            continue
        changes.append(Change(key=key, old=old[leaf], new=value))
        _assign(parent, leaf, value)
    if changes:
        out = io.StringIO()
        _round_trip().dump(document, out)
        mode = params_path.stat().st_mode
        with atomic_path(params_path) as tmp:
            tmp.write_text(out.getvalue())
            tmp.chmod(mode)  # keep the file's permissions (the temporary file is private)
    return changes


def format_value(value: Any) -> str:
    """A params value as params.yaml and `-S` write it (YAML flow style: ``[1.0, 8.0]``, ``true``).

    Args:
        value: a plain YAML value.

    Returns:
        One line of YAML.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return text.removesuffix("...\n").strip()


def _header(path: Path) -> str:
    """First line of the file's leading comment (what the preset is for)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    raise ValueError(f"{path}: expected a header comment saying what the preset is for")


def _flatten(raw: dict[str, Any], *, prefix: str, fields: dict[str, FieldInfo], path: Path) -> dict[str, Any]:
    """Nested preset mapping -> dotted leaf keys of the schema (a dict-valued leaf stays whole)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if dotted in fields:
            out[dotted] = value
        elif isinstance(value, dict) and any(k.startswith(f"{dotted}.") for k in fields):
            out.update(_flatten(value, prefix=f"{dotted}.", fields=fields, path=path))
        elif dotted in MOVED_KEYS:
            raise ValueError(f"{path}: {dotted}: moved to {MOVED_KEYS[dotted]}")
        else:
            raise ValueError(f"{path}: {dotted}: unknown key (not in the params schema; see params.yaml's keys)")
    return out


def _nest(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> the nested mapping `load_params(overrides=...)` merges."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


def _round_trip() -> YAML:
    """ruamel.yaml in round-trip mode, lines never re-wrapped (params.yaml has long comments)."""
    rt = YAML()
    rt.width = 1 << 20
    rt.preserve_quotes = True
    return rt


def _assign(parent: CommentedMap, leaf: str, value: Any) -> None:
    """Set one value; a list or mapping is edited in place so its inline style and comment stay."""
    current = parent[leaf]
    if isinstance(value, list) and isinstance(current, CommentedSeq):
        current[:] = value
    elif isinstance(value, dict) and isinstance(current, CommentedMap):
        current.clear()
        current.update(value)
    elif isinstance(value, (list, dict)):
        node = CommentedSeq(value) if isinstance(value, list) else CommentedMap(value)
        node.fa.set_flow_style()  # params.yaml writes ranges and small maps inline
        parent[leaf] = node
    else:
        parent[leaf] = value
