"""Paper-wide settings checked up front, before any work, with one line naming the setting to fix; and the
range checkers (`Num`, `Choice`, `ListOf`, ...) every settings declaration uses.

An experiment's own settings (`experiment.*`) are declared beside its function and checked by
`core/experiment.py`. What lies outside them (`model.*`, `data.*`, a paper's own groups such as `fourier.*`
or `eval.*`) is declared per paper in `llm_efficiency_bench/<paper>/settings.py`: `SPEC` maps a dotted key to
its checker, `RULES` states relations between keys. `validate(paper, cfg)` checks the composed config against
`COMMON` plus the paper's SPEC and RULES, then probes `results_dir`; the runner calls it after the
experiment's settings and before anything is built. A key absent from the composed config is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from llm_efficiency_bench.core.errors import ConfigError

_MISSING = object()
BIG = 2**31 - 1  # default upper bound of a count: anything above is a typo, not a run


@dataclass(frozen=True)
class Num:
    """A number: `int` (integral floats such as 1e6 accepted, 7.5 refused) or `float` (finite)."""

    kind: type = int
    lo: float | None = None
    hi: float | None = BIG
    lo_open: bool = False
    hi_open: bool = False
    null: bool = False

    def check(self, v: Any) -> str | None:
        if v is None:
            return None if self.null else "must be set (got null)"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number (got {v!r})"
        if not math.isfinite(v):
            return f"must be finite (got {v!r})"
        if self.kind is int and float(v) != int(v):
            return f"must be a whole number (got {v!r})"
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        if not (lo_ok and hi_ok):
            if self.hi in (None, BIG) and self.lo is not None:  # no real upper bound: say the lower one
                return f"must be {'>' if self.lo_open else '>='} {self.lo:g} (got {v!r})"
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            return f"must be in {'(' if self.lo_open else '['}{lo}, {self.hi:g}{')' if self.hi_open else ']'} (got {v!r})"
        return None


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple
    null: bool = False

    def check(self, v: Any) -> str | None:
        if v is None and self.null:
            return None
        return None if v in self.options else f"must be one of {', '.join(map(str, self.options))} (got {v!r})"


@dataclass(frozen=True)
class Text:
    """A non-empty string (a path, a name)."""

    null: bool = False

    def check(self, v: Any) -> str | None:
        if v is None and self.null:
            return None
        return None if isinstance(v, str) and v.strip() else f"must be a non-empty string (got {v!r})"


@dataclass(frozen=True)
class Flag:
    def check(self, v: Any) -> str | None:
        return None if isinstance(v, bool) else f"must be true or false (got {v!r})"


@dataclass(frozen=True)
class ListOf:
    """A list of `item`s, at least `min_len` long, optionally without repeats."""

    item: Any
    min_len: int = 1
    unique: bool = False
    null: bool = False

    def check(self, v: Any) -> str | None:
        if v is None and self.null:
            return None
        if not isinstance(v, (list, tuple)):
            return f"must be a list (got {v!r})"
        if len(v) < self.min_len:
            return f"must list at least {self.min_len} value(s) (got {list(v)!r})"
        for x in v:
            msg = self.item.check(x)
            if msg:
                return f"entry {x!r}: {msg}"
        if self.unique and len({repr(x) for x in v}) != len(v):
            return f"must not repeat a value (got {list(v)!r})"
        return None


@dataclass(frozen=True)
class MapOf:
    """A mapping whose values are all `value` (keys are free, e.g. token counts)."""

    value: Any

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict):
            return f"must be a mapping (got {v!r})"
        for k, x in v.items():
            msg = self.value.check(x)
            if msg:
                return f"entry {k!r}: {msg}"
        return None


@dataclass(frozen=True)
class Rule:
    """A relation between settings: `ok(*values)` must hold; `setting` is the one named on failure."""

    keys: tuple[str, ...]
    ok: Callable[..., bool]
    message: str
    setting: str | None = None


def pos_int(hi: float | None = BIG, null: bool = False) -> Num:
    return Num(int, 1, hi, null=null)


def nonneg_int(hi: float | None = BIG, null: bool = False) -> Num:
    return Num(int, 0, hi, null=null)


def pos_float(hi: float | None = None, null: bool = False) -> Num:
    return Num(float, 0, hi, lo_open=True, null=null)


COMMON: dict[str, Any] = {
    "seed": nonneg_int(),
    "threads": pos_int(hi=1024, null=True),
    "device": Text(),
    "dtype": Choice(("float32", "float16", "bfloat16")),
    "results_dir": Text(),
    "run_tag": Text(null=True),
    "skip_if_current": Flag(),
    "data.encodings": None,  # checked by _check_encodings
    # The model group (configs/model/*.yaml): the tiny models the suite trains, and every model's context.
    "model.context": pos_int(hi=1 << 24),
    "model.seed": nonneg_int(),  # the random-weight models' seed (core/random_models.py)
    **{f"model.arch.{k}": pos_int(hi=1 << 22) for k in ("hidden", "intermediate", "layers", "heads", "kv_heads", "vocab")},
    "model.train.steps": pos_int(), "model.train.batch": pos_int(hi=65536), "model.train.seq_len": Num(int, 2, 1 << 20),
    "model.train.lr": pos_float(hi=10), "model.train.seed": nonneg_int(), "model.train.max_chars": pos_int(),
    "model.train.questions": pos_int(), "model.train.warmup": nonneg_int(), "model.train.weight_decay": Num(float, 0, 10),
}


def resolved(cfg: Any) -> dict[str, Any]:
    """The composed config as plain containers, every interpolation resolved once.

    Raises:
        ConfigError: naming the key that has no value (`???`) or whose interpolation fails.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if not OmegaConf.is_config(cfg):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise ConfigError(str(e.full_key), f"`{e.full_key}` has no value (???) and must be given") from None
    except OmegaConfBaseException as e:  # e.g. an interpolation pointing at nothing
        key = str(getattr(e, "full_key", "") or "config")
        raise ConfigError(key, f"`{key}` cannot be resolved ({str(e).splitlines()[0]})") from None


def _select(plain: dict[str, Any], key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def load_spec(paper: str) -> tuple[dict[str, Any], list[Rule]]:
    """`COMMON` with the paper's `SPEC`, and the paper's `RULES`."""
    # A paper of the suite declares them in llm_efficiency_bench/<paper>/settings.py; a paper kept beside the
    # suite (BENCH_PAPERS_PATH) is a package named after the paper, with its own <paper>/settings.py.
    names = [f"llm_efficiency_bench.{paper}.settings", f"{paper}.settings"] if paper.isidentifier() else []
    name = next((n for n in names if _importable(n)), None)
    if name is None:
        raise ConfigError("paper", f"unknown paper {paper!r}: no llm_efficiency_bench/{paper}/settings.py "
                          f"(nor {paper}/settings.py on the Python path) declares its settings")
    mod = importlib.import_module(name)
    return {**COMMON, **mod.SPEC}, list(getattr(mod, "RULES", []))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package does not exist
        return False


def validate(paper: str, cfg: Any) -> None:
    """Check every declared setting of `cfg`, then the rules, then that `results_dir` is writable.

    Raises:
        ConfigError: for the first bad setting, naming it.
    """
    plain = resolved(cfg)
    spec, rules = load_spec(paper)
    for key, typ in spec.items():
        if typ is None:
            continue
        v = _select(plain, key)
        if v is _MISSING:
            continue
        msg = typ.check(v)
        if msg:
            raise ConfigError(key, f"{key} {msg}")
    for rule in rules:
        values = [_select(plain, k) for k in rule.keys]
        if any(v is _MISSING for v in values):
            continue
        try:
            ok = bool(rule.ok(*values))
        except (TypeError, ValueError, ArithmeticError):  # a value no spec entry typed (e.g. a model field)
            ok = False
        if not ok:
            name = rule.setting or rule.keys[0]
            raise ConfigError(name, rule.message.format(*values))
    _check_encodings(_select(plain, "data.encodings"))
    check_results_dir(str(_select(plain, "results_dir")))


def _check_encodings(enc: Any) -> None:
    import codecs

    if enc is _MISSING or enc is None:
        return
    if not isinstance(enc, dict):
        raise ConfigError("data.encodings", f"data.encodings must map file names to encodings (got {enc!r})")
    for name, e in enc.items():
        try:
            codecs.lookup(str(e))
        except LookupError:
            raise ConfigError("data.encodings", f"data.encodings.{name}: unknown encoding {e!r}") from None


def check_results_dir(path: str) -> None:
    """`results_dir` must be a folder (or creatable) that this process can write to."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError("results_dir", f"results_dir {p} is a file, not a folder")
    probe = p
    while not probe.exists():  # the nearest existing ancestor is where the folders will be made
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError("results_dir", f"results_dir {p}: {probe} is a file, not a folder")
    try:  # os.access is wrong for root and for read-only mounts: really try to write
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ConfigError("results_dir", f"results_dir {p} is not writable ({e.strerror or e})") from None


# Architecture fields of the random-weight models, written in transformers' own config names (read by its
# config checks), and the released-PRM section (declared in SPEC where used) are left to their owners.
HF_ARCH = ("vision", "text", "image_token_id", "vision_feature_layer", "bos_token_id", "eos_token_id", "hidden_size",
           "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
           "num_key_value_heads", "rms_norm_eps", "rope_theta", "vocab_size")
UNDECLARED = ("hydra", "released", "experiment.models", *(f"model.arch.{k}" for k in HF_ARCH))


def numeric_leaves(cfg: Any, skip: Sequence[str] = UNDECLARED) -> list[str]:
    """Dotted keys of every number or list of numbers in `cfg` (what the fuzz test and coverage check use)."""
    from omegaconf import OmegaConf

    out: list[str] = []

    def walk(d: Any, pre: str) -> None:
        for k, v in d.items():
            key = f"{pre}{k}"
            if any(key == s or key.startswith(s + ".") for s in skip):
                continue
            if isinstance(v, dict):
                walk(v, key + ".")
            elif (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
                    isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                out.append(key)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
