from dataclasses import dataclass
from typing import Literal

import pytest

from genforge import config


@dataclass
class Sec:
    n: int = 1
    lr: float = 0.1
    flag: bool = False
    kind: Literal["a", "b"] = "a"
    name: str = "x"
    opt: int | None = None


def test_overrides_are_parsed_and_typed():
    ov = config.parse_overrides(["--s.n=4", "--s.lr", "3e-4", "--s.flag=true", "--s.kind=b", "--s.opt=none"])
    out = config.resolve({"s": Sec()}, {}, None, ov)["s"]
    assert (out.n, out.lr, out.flag, out.kind, out.opt) == (4, 3e-4, True, "b", None)


@pytest.mark.parametrize("arg,msg", [("--s.n=abc", "s.n: expected an integer"), ("--s.flag=maybe", "true/false"),
                                     ("--s.kind=c", "not one of"), ("--s.lrr=1", "did you mean 'lr'"),
                                     ("--t.n=1", "unknown config section 't'")])
def test_bad_overrides(arg, msg):
    with pytest.raises(config.ConfigError, match=msg):
        config.resolve({"s": Sec()}, {}, None, config.parse_overrides([arg]))


def test_presets_apply_before_overrides():
    presets = {"big": {"s": {"n": 8, "name": "big"}}}
    out = config.resolve({"s": Sec()}, presets, "big", {"s": {"n": "2"}})["s"]
    assert (out.n, out.name) == (2, "big")
    with pytest.raises(config.ConfigError, match="did you mean 'big'"):
        config.resolve({"s": Sec()}, presets, "bigg", {})


def test_not_an_override():
    with pytest.raises(config.ConfigError, match="--section.key=value"):
        config.parse_overrides(["stray"])


def test_dict_round_trip():
    secs = {"s": Sec(n=3)}
    assert config.from_dict(Sec, config.to_dict(secs)["s"], "s") == Sec(n=3)
