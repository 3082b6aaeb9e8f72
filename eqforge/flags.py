"""Command-line flags generated from the configuration's fields.

Every flag of ``eqforge run`` / ``eqforge evaluate`` that sets configuration comes from a
field of ``eqforge.config``: its name (``--samples-per-prompt``), type, choices, help text
(the field's description) and default (shown in ``--help``, never written again here). A
field may rename its flag or keep off the command line with ``json_schema_extra={"flag":
...}``. Values a user does not give stay ``None`` and leave the config (file or defaults)
as it is.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from eqforge.config import BackendConfig, Config, ConfigError, with_shared_options

#: the pseudo-section of the fields every ``--llm`` model shares on the command line
BACKEND = "llm.backend"


def _model(section: str) -> type[BaseModel]:
    if section == BACKEND:
        return BackendConfig
    return Config.model_fields[section].annotation  # type: ignore[return-value]


def _flag(name: str, info: FieldInfo) -> str | None:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "flag" in extra:
        return extra["flag"]  # type: ignore[return-value]
    return "--" + name.replace("_", "-")


def _scalar(annotation: Any) -> Any:
    """``float | None`` -> ``float``; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_config_flags(parser: argparse.ArgumentParser, sections: Mapping[str, Iterable[str] | None]) -> None:
    """One argument group per section; ``None`` takes every field that has a flag."""
    for section, names in sections.items():
        model = _model(section)
        group = parser.add_argument_group(
            f"[{section}]" if section != BACKEND else "[[llm.backends]] (for every --llm)",
            (model.__doc__ or "").strip().splitlines()[0])
        wanted = list(model.model_fields) if names is None else list(names)
        for name in wanted:
            info = model.model_fields[name]
            flag = _flag(name, info)
            if flag is None:
                continue
            _add(group, flag, f"{section}.{name}", info, many=section == BACKEND and name == "spec")


def _add(group: Any, flag: str, dest: str, info: FieldInfo, *, many: bool) -> None:
    kind = _scalar(info.annotation)
    help_text = info.description or ""
    default = None if info.default_factory is not None else info.default
    if kind is bool:
        if default:
            group.add_argument("--no-" + flag[2:], dest=dest, action="store_const", const=False,
                               help=f"turn off {help_text}")
        else:
            group.add_argument(flag, dest=dest, action="store_const", const=True, help=help_text)
        return
    kw: dict[str, Any] = {"dest": dest}
    if typing.get_origin(kind) is Literal:
        kw["choices"] = list(typing.get_args(kind))
    elif kind in (int, float, str):
        kw["type"] = kind
    else:
        raise TypeError(f"{dest}: no command-line form for {info.annotation}; set flag None")
    if many:
        kw.update(action="append", metavar=dest.rpartition(".")[2].upper())
    elif "choices" not in kw:
        kw["metavar"] = dest.rpartition(".")[2].upper() if kind is str else kind.__name__.upper()
    if default is not None:
        help_text += f" (default: {default})"
    group.add_argument(flag, help=help_text, **kw)


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The fields of ``section`` the user set on the command line."""
    prefix = section + "."
    return {k[len(prefix):]: v for k, v in vars(args).items()
            if k.startswith(prefix) and "." not in k[len(prefix):] and v is not None}


def apply_flags(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with the command line's values on top (validated like a file)."""
    overrides: dict[str, dict[str, Any]] = {}
    for section in Config.model_fields:
        values = given(args, section)
        if values:
            overrides[section] = values
    shared = given(args, BACKEND)
    specs = shared.pop("spec", None)
    if specs is not None or shared:
        backends = with_shared_options(specs, shared, config.llm.backends, source="command line")
        overrides.setdefault("llm", {})["backends"] = [b.model_dump() for b in backends]
    return config.with_overrides(overrides) if overrides else config


__all__ = ["BACKEND", "ConfigError", "add_config_flags", "apply_flags", "given"]
