"""A model's parameters on the command line (`--NAME VALUE`, `--param NAME=VALUE`) and its voice (`--audio`),
shared by `run` and `batch`: the options' types, and the values read back from the parsed arguments."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from typing import Any

from ..catalog import MODELS, ModelSpec, Param
from ..errors import ValidationError

PARAM_PREFIX = "param_"  # argparse dest of a model parameter's option


def add_param_option(group: argparse._ArgumentGroup, param: Param) -> None:
    options: dict[str, Any] = {"dest": PARAM_PREFIX + param.name, "default": argparse.SUPPRESS,
                               "help": param.describe().replace("%", "%%")}
    if param.kind == "choice":
        options["choices"] = param.choices
    elif param.kind == "bool":
        options.update(type=_boolean, metavar="{true,false}")
    elif param.kind in ("int", "float"):
        options.update(type=number_type(param.kind), metavar="N" if param.kind == "int" else "X")
    else:
        options["metavar"] = "TEXT"  # a missing required text is refused by the catalog's check (exit 3)
    group.add_argument(f"--{param.name}", **options)


def number_type(kind: str) -> Callable[[str], int | float]:
    def convert(text: str) -> int | float:
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind == 'int' else ''}number, got {text!r}") from None

    convert.__name__ = kind  # argparse names the type in its message
    return convert


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given on the command line (the catalog's defaults fill in the rest); `--NAME`
    wins over `--param NAME=`."""
    spec = MODELS[args.model]
    params = dict(_param_pair(spec, pair) for pair in args.param)
    params.update({name[len(PARAM_PREFIX):]: value for name, value in vars(args).items() if name.startswith(PARAM_PREFIX)})
    return params


def _param_pair(spec: ModelSpec, pair: str) -> tuple[str, Any]:
    name, sep, text = pair.partition("=")
    if not sep:
        raise ValidationError("--param", f"expected NAME=VALUE, got {pair!r}")
    try:
        param = spec.param(name)
    except KeyError:
        names = [p.name for p in spec.params]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValidationError(name, f"is not a parameter of {spec.title}; {hint}(parameters: {', '.join(names)})") from None
    try:
        if param.kind == "bool":
            return name, _boolean(text)
        if param.kind in ("int", "float"):
            return name, number_type(param.kind)(text)
    except argparse.ArgumentTypeError as exc:
        raise ValidationError(name, str(exc)) from None
    return name, text


def voice_input(args: argparse.Namespace) -> Any:
    """`--audio PATH` (lipsync's voice) decoded at its own rate and channels, or None."""
    path = getattr(args, "audio", None)
    if path is None:
        return None
    from .. import media, pipeline

    if not path.is_file():
        raise ValidationError("--audio", f"no such file: {path}")
    samples, rate = media.decode_audio(path)
    return pipeline.AudioInput(samples, rate)
