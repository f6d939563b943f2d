"""Configuration: a dataclass per stage with named presets, each checking its own values, and the command
line that fills it (`--preset`, `--out`, `--init`, `--device`, `--seed`, and `--key value` for every field).

A config class lists what its fields must be in a RULES table beside the fields; a field it does not name
must be > 0 if an int, >= 0 if a float, and every float must be finite. `validate` runs in the dataclass's
__post_init__, so a bad value fails where the config is made, from a script's flags or from Python."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import torch

POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")
TOP_P = (lambda v: 0 < v <= 1, "in (0, 1]")


def one_of(*options):
    return (lambda v: v in options, "one of " + ", ".join(map(repr, options)))


def name_in(names, allow_empty: bool = False):
    """A name from `names` (a suite, a model preset); with allow_empty, "" too, meaning "the default one"
    (e.g. the suite the base model was trained on)."""
    return (lambda v: (allow_empty and v == "") or v in names, "one of " + ", ".join(names))


class ConfigError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field, self.message = field, message


def validate(config) -> None:
    """ConfigError naming the field, for a value no run can use. Rules come from the RULES tables of the
    config's class and its bases."""
    rules = {}
    for cls in reversed(type(config).__mro__):
        rules.update(vars(cls).get("RULES", {}))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if type(value) is float and not math.isfinite(value):
            raise ConfigError(f.name, f"must be a finite number, got {value}")
        declared = f.type if isinstance(f.type, str) else f.type.__name__  # the field's type, not the value's
        rule = rules.get(f.name) or {"int": POSITIVE, "float": NON_NEGATIVE}.get(declared)
        if rule is not None and not rule[0](value):
            raise ConfigError(f.name, f"must be {rule[1]}, got {value!r}")


def parse_config(config_cls, presets: dict[str, dict], doc: str, argv: list[str] | None = None,
                 default_init: str | None = None, default_out: str = "out/run"):
    """Command line -> (config, args). The preset (default: gpu when CUDA is available, else cpu) gives the
    defaults of every field; `--key value` overrides one."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    pre.add_argument("--device", default=None)
    known, _ = pre.parse_known_args(argv)
    preset = known.preset or ("gpu" if torch.cuda.is_available() and known.device != "cpu" else "cpu")
    if preset not in presets:
        raise SystemExit(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    defaults = _make(config_cls, presets[preset])

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("run")
    group.add_argument("--preset", default=preset, choices=list(presets),
                       help="size of everything (default: gpu when CUDA is available, else cpu)")
    group.add_argument("--out", default=default_out, help="checkpoint directory to write")
    if default_init is not None:
        group.add_argument("--init", default=default_init, help="checkpoint directory to start from")
    group.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    group.add_argument("--seed", type=int, default=1337)
    group = parser.add_argument_group(f"{config_cls.__name__} (defaults of preset {preset!r})")
    for f in dataclasses.fields(config_cls):
        value = getattr(defaults, f.name)
        if type(value) is bool:
            group.add_argument(f"--{f.name}", type=_parse_bool, default=value, metavar="BOOL", help=f"default {value}")
        else:
            group.add_argument(f"--{f.name}", type=type(value), default=value, help=f"default {value}")
    args = parser.parse_args(argv)
    config = _make(config_cls, {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
    return config, args


def _make(config_cls, values: dict):
    try:
        return config_cls(**values)
    except ConfigError as e:
        raise SystemExit(f"--{e.field} {e.message}") from None


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
