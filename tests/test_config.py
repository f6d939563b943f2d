"""Tests for r1mini.config: a config dataclass checks its own values (the default rules and a RULES table
merged over its base classes), and the command line fills it (presets, `--key value`, booleans), turning a
bad value into an error that names the flag."""

import dataclasses
import math
from typing import ClassVar

import pytest

from r1mini.config import (NON_NEGATIVE, POSITIVE, SHARE, TOP_P, ConfigError, field_comments, name_in, one_of,
                           parse_config, validate)

# -- the command line ----------------------------------------------------------------------------------

@dataclasses.dataclass
class DemoConfig:
    steps: int = 10
    lr: float = 0.1
    name: str = "x"
    flag: bool = True


DEMO_PRESETS = {"small": dict(steps=3), "cpu": dict(), "gpu": dict(steps=1000, lr=0.01, flag=False)}


def test_parse_config():
    cfg, args = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "small"])
    assert cfg == DemoConfig(steps=3) and args.preset == "small" and args.seed == 1337
    cfg, _ = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "gpu"])
    assert cfg == DemoConfig(steps=1000, lr=0.01, flag=False)
    cfg, args = parse_config(DemoConfig, DEMO_PRESETS, "doc",
                             ["--preset", "gpu", "--steps", "7", "--lr", "3e-4", "--name", "run 2", "--flag", "true",
                              "--seed", "5", "--out", "o"], default_out="out/demo")
    assert cfg == DemoConfig(steps=7, lr=3e-4, name="run 2", flag=True)
    assert type(cfg.steps) is int and type(cfg.lr) is float
    assert (args.seed, args.out) == (5, "o")
    for text, value in [("false", False), ("0", False), ("no", False), ("True", True), ("on", True)]:
        assert parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "cpu", "--flag", text])[0].flag is value
    _, args = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "cpu"], default_init="out/base")
    assert args.init == "out/base" and args.out == "out/run"
    cfg, _ = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--device", "cpu"])  # no preset: cpu on cpu
    assert cfg == DemoConfig()


def test_parse_config_errors():
    with pytest.raises(SystemExit) as e:
        parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "huge"])
    assert "huge" in str(e.value.code) and "small" in str(e.value.code)
    for argv in (["--preset", "cpu", "--flag", "maybe"], ["--preset", "cpu", "--steps", "1.5"],
                 ["--preset", "cpu", "--bogus", "1"]):
        with pytest.raises(SystemExit) as e:
            parse_config(DemoConfig, DEMO_PRESETS, "doc", argv)
        assert e.value.code == 2  # argparse's usage error


@dataclasses.dataclass
class Commented:
    # a section header: belongs to no field
    steps: int = 10  # how many updates
    lr: float = 0.1
    agg: str = "mean"  # how the loss is averaged: 100% of the tokens
    # another header, after a commented field

    RULES: ClassVar[dict] = {"agg": one_of("mean", "sum")}


@dataclasses.dataclass
class MoreCommented(Commented):
    steps: int = 20  # updates, counted again
    zh_share: float = 0.2  # share of Chinese prompts


def test_field_comments_are_the_comments_at_the_end_of_each_fields_line():
    assert field_comments(Commented) == {"steps": "how many updates",
                                         "agg": "how the loss is averaged: 100% of the tokens"}
    # a subclass inherits its bases' comments and may replace them
    assert field_comments(MoreCommented) == {"steps": "updates, counted again", "agg": "how the loss is averaged: "
                                             "100% of the tokens", "zh_share": "share of Chinese prompts"}


def test_help_shows_what_each_field_means_its_default_and_what_it_must_be(capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(MoreCommented, {"cpu": {}}, "doc", ["--preset", "cpu", "--help"], default_init="out/base",
                     init_help="where to start")
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--steps INT updates, counted again (default 20; > 0)" in text
    assert "--lr FLOAT (default 0.1; >= 0)" in text
    assert "--agg STR how the loss is averaged: 100% of the tokens (default 'mean'; one of 'mean', 'sum')" in text
    assert "--init INIT where to start (default 'out/base')" in text


# -- validation ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Base:
    steps: int = 1
    lr: float = 0.0
    name: str = "a"
    flag: bool = False

    RULES: ClassVar[dict] = {"name": one_of("a", "b")}

    def __post_init__(self):
        validate(self)


@dataclasses.dataclass
class Child(Base):
    micro: int = 0
    share: float = 0.5

    # a rule of its own for a new field, one for an inherited field (steps may now be 0), none for `lr`
    RULES: ClassVar[dict] = {"micro": NON_NEGATIVE, "share": SHARE, "steps": NON_NEGATIVE}


def config_error(cls, **values) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        cls(**values)
    assert isinstance(e.value, ValueError)
    return e.value


def test_validate_default_rules():
    Base(steps=1, lr=0.0, flag=False)  # int > 0, float >= 0; a bool is not an int here, False is fine
    e = config_error(Base, steps=0)
    assert (e.field, e.message, str(e)) == ("steps", "must be > 0, got 0", "steps must be > 0, got 0")
    e = config_error(Base, steps=-3)
    assert (e.field, e.message) == ("steps", "must be > 0, got -3")
    e = config_error(Base, lr=-0.5)
    assert (e.field, e.message) == ("lr", "must be >= 0, got -0.5")
    # the rule follows the field's declared type, not the value's: 0.0 given for an int field is not a float >= 0
    e = config_error(Base, steps=0.0)
    assert (e.field, e.message) == ("steps", "must be > 0, got 0.0")
    for bad in (math.inf, -math.inf, math.nan):  # a float must be finite, whatever its rule
        e = config_error(Base, lr=bad)
        assert (e.field, e.message) == ("lr", f"must be a finite number, got {bad}")
    e = config_error(Base, name="c")
    assert (e.field, e.message) == ("name", "must be one of 'a', 'b', got 'c'")
    Base(name="b")
    # validate on an object that was changed after it was made
    cfg = Base()
    cfg.steps = 0
    with pytest.raises(ConfigError, match="steps must be > 0"):
        validate(cfg)


def test_validate_merges_rules_over_the_base_classes():
    Child(steps=0, micro=0, share=1.0)  # the child's rules: steps >= 0 replaces the default int > 0
    assert config_error(Child, steps=-1).message == "must be >= 0, got -1"
    assert config_error(Child, micro=-1).field == "micro"
    assert config_error(Child, share=1.5).message == "must be in [0, 1], got 1.5"
    # the base's table still holds where the child says nothing, and the default rules too
    assert config_error(Child, name="c").message == "must be one of 'a', 'b', got 'c'"
    assert config_error(Child, lr=-1.0).message == "must be >= 0, got -1.0"
    assert config_error(Child, lr=math.nan).message == "must be a finite number, got nan"
    # the base class is not changed by its child's table
    assert config_error(Base, steps=0).message == "must be > 0, got 0"


def test_rule_helpers():
    assert POSITIVE[0](1) and not POSITIVE[0](0)
    assert NON_NEGATIVE[0](0) and not NON_NEGATIVE[0](-1e-9)
    assert SHARE[0](0) and SHARE[0](1) and not SHARE[0](1.01) and not SHARE[0](-0.01)
    assert TOP_P[0](1) and TOP_P[0](1e-6) and not TOP_P[0](0) and not TOP_P[0](1.5)
    names = name_in(["toy", "cpu"])
    assert names[0]("cpu") and not names[0]("") and names[1] == "one of toy, cpu"
    assert name_in(["toy", "cpu"], allow_empty=True)[0]("")


@dataclasses.dataclass
class Checked(Base):
    RULES: ClassVar[dict] = {"lr": POSITIVE}


CHECKED_PRESETS = {"cpu": dict(lr=0.1), "broken": dict(lr=0.0)}


def test_parse_config_overrides_and_names_the_bad_flag():
    cfg, _ = parse_config(Checked, CHECKED_PRESETS, "doc", ["--preset", "cpu", "--steps", "4", "--flag", "yes"])
    assert cfg == Checked(steps=4, lr=0.1, flag=True)
    with pytest.raises(SystemExit) as e:
        parse_config(Checked, CHECKED_PRESETS, "doc", ["--preset", "cpu", "--lr", "0"])
    assert e.value.code == "--lr must be > 0, got 0.0"
    with pytest.raises(SystemExit) as e:
        parse_config(Checked, CHECKED_PRESETS, "doc", ["--preset", "cpu", "--name", "z"])
    assert e.value.code == "--name must be one of 'a', 'b', got 'z'"
    # a preset's own bad value is caught too
    with pytest.raises(SystemExit) as e:
        parse_config(Checked, CHECKED_PRESETS, "doc", ["--preset", "broken"])
    assert e.value.code == "--lr must be > 0, got 0.0"


def test_toy_runs_default_to_their_own_folder():
    from r1mini.config import preset_path
    assert preset_path("out/base", "toy") == "out/toy/base" and preset_path("out/base", "toy-student") == "out/toy/base"
    assert preset_path("out/base", "cpu") == "out/base" and preset_path("elsewhere/base", "toy") == "elsewhere/base"
    _, args = parse_config(DemoConfig, {"toy": {}, "cpu": {}}, "doc", ["--preset", "toy"], default_init="out/base",
                           default_out="out/zero")
    assert (args.init, args.out) == ("out/toy/base", "out/toy/zero")
    _, args = parse_config(DemoConfig, {"toy": {}, "cpu": {}}, "doc", ["--preset", "toy", "--out", "out/x"],
                           default_out="out/zero")
    assert args.out == "out/x"  # a path given on the command line is taken as it is


@pytest.mark.parametrize("script, config", [("pretrain", "PretrainConfig"), ("train_zero", "ZeroConfig"),
                                            ("train_r1", "R1Config"), ("distill", "DistillConfig"),
                                            ("eval", "EvalConfig")])
def test_every_flag_of_every_script_says_what_it_means(script, config):
    """--help shows a field's comment: a field without one would show only its default."""
    import importlib
    cls = getattr(importlib.import_module(script), config)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in field_comments(cls)]
    assert missing == [], f"{script}.py: give these fields a comment at the end of their line: {missing}"
