"""Configuration: a dataclass per stage with named presets, each checking its own values, and the command
line that fills it (`--preset`, `--out`, `--init`, `--device`, `--seed`, and `--key value` for every field).

A config class lists what its fields must be in a RULES table beside the fields; a field it does not name
must be > 0 if an int, >= 0 if a float (the common case: a size, a count, a weight), and every float must be
finite. `validate` runs in the dataclass's __post_init__, so a bad value fails where the config is made, from a
script's flags or from Python. Adding a field: docs/extending.md.

A few fields name code of your own as `module:name` (reward, suite, agg); `import_named` imports it.

The failures a user can fix are ordinary exceptions, UserError (a ValueError) and ConfigError, a UserError
about one field: their messages say what to do and name no command-line flag, so a notebook catches them like
any other. The scripts turn them into one line and exit status 1 (r1mini/stage.py's exits_with_message, which
names a ConfigError's field as its flag: --field ...); docs/errors.md lists them."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import io
import math
import os
import sys
import tokenize

POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")
TOP_P = (lambda v: 0 < v <= 1, "in (0, 1]")


TASKS_FILE = (lambda v: v == "" or ".jsonl" in v,
              "'' or a JSONL task file, FILE.jsonl, FILE.jsonl:CHECKER or FILE.jsonl:CHECKER:boxed")


def one_of(*options):
    return (lambda v: v in options, "one of " + ", ".join(map(repr, options)))


def name_in(names, allow_empty: bool = False, allow_import: bool = False):
    """A name from `names` (a suite, a model preset); with allow_empty, "" too, meaning "the default one"
    (e.g. the suite the base model was trained on); with allow_import, your own as module:name."""
    text = "one of " + ", ".join(map(str, names)) + (", or module:name" if allow_import else "")
    return (lambda v: (allow_empty and v == "") or v in names or (allow_import and importable(v)), text)


def importable(spec: str) -> bool:
    """Does spec have the shape module:name (not whether that module exists)?"""
    module, _, name = spec.partition(":")
    return bool(module) and name.isidentifier()


class UserError(ValueError):
    """A failure the user can fix (a missing or mismatched checkpoint, a damaged file, a value no run can use):
    the message says what was wrong and what to do."""


class ConfigError(UserError):
    """A value of the config field `field` that no run can use; message says why ("must be > 0, got 0")."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field, self.message = field, message


def command_line_message(error: UserError) -> str:
    """What a script prints for a UserError: its message, with a ConfigError's field named as its flag."""
    return f"--{error.field} {error.message}" if isinstance(error, ConfigError) else str(error)


def import_named(spec: str, field: str):
    """The object that `module:name` names: your own code (a reward, a task suite, a GRPO aggregation) in a
    module on the Python path, as `import` finds it, the working directory first (e.g. my_rewards:short for
    my_rewards.py beside the command). ConfigError about `field` (the config field that named it) when it is not
    there."""
    module_name, _, name = spec.partition(":")
    if not importable(spec):
        raise ConfigError(field, f"must be module:name, e.g. my_rewards:short_and_right; got {spec!r}")
    sys.path.insert(0, os.getcwd())  # a module beside the command, as `python -m` would find it
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(field, f"{spec}: no module {e.name!r} on the Python path (run from the folder that holds "
                                 f"{module_name.replace('.', '/')}.py, or set PYTHONPATH)") from None
    finally:
        sys.path.remove(os.getcwd())
    if not hasattr(module, name):
        raise ConfigError(field, f"{spec}: {module.__file__} has no {name!r}")
    return getattr(module, name)


def validate(config) -> None:
    """ConfigError naming the field, for a value no run can use. Rules come from the RULES tables of the
    config's class and its bases."""
    rules, own = field_rules(type(config)), _own_rules(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if type(value) is float and not math.isfinite(value):
            raise ConfigError(f.name, f"must be a finite number, got {value}")
        rule = rules.get(f.name)
        if rule is not None and not rule[0](value):
            why = ""
            if f.name not in own and value == f.default:  # a new field whose own default breaks the default rule
                why = (f" (its default; an {type(value).__name__} field that RULES does not name must be {rule[1]}: "
                       f"give it a RULES entry, see docs/extending.md)")
            raise ConfigError(f.name, f"must be {rule[1]}, got {value!r}{why}")


def field_rules(config_cls) -> dict[str, tuple]:
    """Each field's rule: from the RULES tables of the class and its bases, else the default of its declared
    type (an int > 0, a float >= 0); none for strings and booleans."""
    rules = _own_rules(config_cls)
    defaults = {"int": POSITIVE, "float": NON_NEGATIVE}
    for f in dataclasses.fields(config_cls):
        declared = f.type if isinstance(f.type, str) else f.type.__name__  # the field's type, not the value's
        if f.name not in rules and declared in defaults:
            rules[f.name] = defaults[declared]
    return rules


def _own_rules(config_cls) -> dict[str, tuple]:
    """The rules the RULES tables of the class and its bases name."""
    rules = {}
    for cls in reversed(config_cls.__mro__):
        rules.update(vars(cls).get("RULES", {}))
    return rules


def field_comments(config_cls) -> dict[str, str]:
    """What each field means, as its class's source says it: the comment at the end of the field's line,
    from the class and its bases (read with tokenize, never executed)."""
    comments: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # no source at hand (a class made interactively): no help text
            continue
        names, field_on_line = {f.name for f in dataclasses.fields(cls)}, {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names:  # a field's line
                field_on_line.setdefault(tok.start[0], tok.string)
            elif tok.type == tokenize.COMMENT and tok.start[0] in field_on_line:
                comments[field_on_line[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def parse_config(config_cls, presets: dict[str, dict], doc: str, argv: list[str] | None = None,
                 default_init: str | None = None, default_out: str = "out/run",
                 init_help: str = "checkpoint directory to start from",
                 out_help: str = "checkpoint directory to write"):
    """Command line -> (config, args). The preset (default: gpu on a GPU with bf16, else cpu) gives the
    defaults of every field, and of --out and --init (preset_path); `--key value` overrides one. --help shows
    each field's comment from the config class, its default and what it must be."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    pre.add_argument("--device", default=None)
    known, _ = pre.parse_known_args(argv)
    from r1mini.device import default_preset  # here, not at the top: device.py raises this module's ConfigError
    preset = known.preset or default_preset(known.device)
    if preset not in presets:
        raise SystemExit(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    defaults = _make(config_cls, presets[preset])
    default_out = preset_path(default_out, preset)
    default_init = None if default_init is None else preset_path(default_init, preset)

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group("run")
    group.add_argument("--preset", default=preset, choices=list(presets),
                       help="size of everything (default: gpu on a GPU with bf16, else cpu)")
    group.add_argument("--out", default=default_out, help=f"{out_help} (default {default_out!r})")
    if default_init is not None:
        group.add_argument("--init", default=default_init, help=f"{init_help} (default {default_init!r})")
    group.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    group.add_argument("--seed", type=int, default=1337)
    group = parser.add_argument_group(f"{config_cls.__name__} (defaults of preset {preset!r})")
    comments, rules = field_comments(config_cls), field_rules(config_cls)
    for f in dataclasses.fields(config_cls):
        value = getattr(defaults, f.name)
        allowed = f"; {rules[f.name][1]}" if f.name in rules else ""
        text = f"{comments[f.name]} " if f.name in comments else ""
        text = f"{text}(default {value!r}{allowed})".replace("%", "%%")  # argparse formats help with %
        if type(value) is bool:
            group.add_argument(f"--{f.name}", type=_parse_bool, default=value, metavar="BOOL", help=text)
        else:
            group.add_argument(f"--{f.name}", type=type(value), default=value, metavar=type(value).__name__.upper(),
                               help=text)
    args = parser.parse_args(argv)
    config = _make(config_cls, {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
    return config, args


def preset_path(path: str, preset: str) -> str:
    """Where a preset's runs go by default: out/... at the cpu and gpu presets, out/toy/... at toy (and
    toy-student), as `speedrun.sh toy` does, so that a smoke test never lands where a real run would resume."""
    if preset.split("-")[0] == "toy" and path.startswith("out/"):
        return "out/toy/" + path[len("out/"):]
    return path


def _make(config_cls, values: dict):
    try:
        return config_cls(**values)
    except ConfigError as e:
        raise SystemExit(command_line_message(e)) from None


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
