"""The experiment contract: a function, its settings and its figures, declared in one place.

An experiment is three things a developer writes:

1. `configs/<paper>/experiment/<name>.yaml`: `name`, `fn` (the function), `run_order` (its place in
   `make reproduce`; null keeps it out) and `profiles:`, the sizes each profile gives its settings.
2. The function, declared with its settings schema and figure drawer::

       @dataclass
       class Table1Settings:
           cache: int = setting(1024, pos_int(), "S + L tokens of the streaming cache")

       @experiment(settings=Table1Settings, figures=draw_table1,
                   rules=[Rule(("n_sink", "cache"), lambda s, c: s < c, "...", "n_sink")])
       def ppl_table1(ctx: RunContext) -> None: ...

3. Its claims in `references/<paper>.yaml`.

The schema is the one home of a setting: type and default in the dataclass field, range (a checker of
`core/validate.py`) and help in its metadata. `specialise` turns the composed `experiment` node into the
settings of one run: the profile's sizes (`profiles.<profile>`) over the YAML's values over the schema's
defaults, a command-line override over all of them; unknown keys (with a did-you-mean), wrong types and
out-of-range values fail there, before anything is built, with one line naming `experiment.<key>`.

Why OmegaConf's structured merge and not pydantic: it is the check Hydra's ConfigStore applies (unknown key,
wrong type), it keeps the config an OmegaConf node that the rest of the suite reads, and each failure comes
back with the key it concerns, so the error names the setting the user wrote.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.validate import Rule

FN_SETTING = "experiment.fn"
# Keys of an experiment YAML that are not settings of the function.
CONTRACT_KEYS = ("name", "fn", "run_order", "profiles")

Drawer = Callable[[Path, dict], list]  # (run folder, record) -> figure paths


@dataclass(frozen=True)
class ExperimentSpec:
    """What `@experiment` attaches to an experiment function (as `fn.experiment_spec`)."""

    fn: Callable[..., None]
    settings: type | None = None  # a dataclass; None: the experiment reads no settings of its own
    figures: Drawer | None = None  # redraws the run's figures from its CSVs (the report calls it)
    rules: tuple[Rule, ...] = ()  # relations between settings (names without `experiment.`)
    notes: Callable[[Path, dict], dict] | None = None  # per-claim notes for the report, optional


def experiment(settings: type | None = None, figures: Drawer | None = None, rules: Iterable[Rule] = (),
               notes: Callable[[Path, dict], dict] | None = None) -> Callable[[Callable], Callable]:
    """Declare an experiment function: its settings schema, figure drawer and rules."""
    if settings is not None and not dataclasses.is_dataclass(settings):
        raise TypeError(f"settings must be a dataclass (got {settings!r})")

    def wrap(fn: Callable) -> Callable:
        fn.experiment_spec = ExperimentSpec(fn, settings, figures, tuple(rules), notes)  # type: ignore[attr-defined]
        return fn

    return wrap


def setting(default: Any, check: Any = None, help: str = "") -> Any:
    """A settings field: its default, its range checker (`core/validate.py`: Num, Choice, ListOf, ...) and help.

    Lists, mappings and groups of settings (a dataclass instance, e.g. `arch`) get a fresh copy per instance
    (dataclasses refuse shared mutable defaults); the settings of a group carry their own checks.
    """
    meta = {"check": check, "help": help}
    if dataclasses.is_dataclass(default) and not isinstance(default, type):  # a group of settings (`arch`)
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def settings_help(settings: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) of every field of a settings schema, in declaration order."""
    out = []
    for f in dataclasses.fields(settings):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def resolve_experiment(spec: Any) -> Callable[..., None]:
    """The function an experiment config names: `"package.module:function"` (or `package.module.function`).

    Raises:
        ConfigError: naming `experiment.fn` when it is unset, malformed, or names no importable callable.
    """
    if not spec or not isinstance(spec, str):
        raise ConfigError(FN_SETTING, f"the experiment config names no function (got {spec!r}); "
                          "add `fn: <package>.<module>:<function>` to its YAML")
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(FN_SETTING, f"{spec!r} is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not module_name.startswith(e.name):
            raise  # the module exists but one of its own imports is missing: a bug to see, not a config error
        raise ConfigError(FN_SETTING, f"{spec!r}: no module {module_name!r}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(FN_SETTING, f"{spec!r}: module {module_name!r} has no function {attr!r}")
    return fn


def spec_of(fn: Callable[..., None]) -> ExperimentSpec:
    """The declaration of an experiment function (a plain function: no settings, no figures)."""
    return getattr(fn, "experiment_spec", None) or ExperimentSpec(fn)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`; did you mean `x`?` for the closest option, or ''."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _override_keys(overrides: Sequence[str]) -> set[str]:
    """Dotted keys under `experiment.` set on the command line (`experiment.cache=512` -> `cache`)."""
    out = set()
    for o in overrides:
        key = o.partition("=")[0].lstrip("+~")
        if key.startswith("experiment."):
            out.add(key[len("experiment."):])
    return out


def _leaves(d: Any, pre: str = "") -> dict[str, Any]:
    """Dotted leaves of a nested mapping; a mapping-typed setting (e.g. `arch`) is descended into."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{pre}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, key + "."))
        else:
            out[key] = v
    return out


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def _fields(settings: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(settings)}


def _group(f: dataclasses.Field) -> type | None:
    """The schema of a nested group of settings (a dataclass-typed field, e.g. `arch: ArchSettings`), else None."""
    if f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
        return None
    default = f.default_factory()  # type: ignore[misc]
    return type(default) if dataclasses.is_dataclass(default) else None


def _whole_numbers(settings: type, values: dict[str, Any]) -> dict[str, Any]:
    """An integral float (1e6 on the command line) in an int field is the whole number it names."""
    fields, out = _fields(settings), {}
    for k, v in values.items():
        f = fields.get(k)
        group = _group(f) if f is not None else None
        if group is not None and isinstance(v, dict):
            v = _whole_numbers(group, v)
        elif f is not None and isinstance(v, float) and v.is_integer() and _is_int_field(f):
            v = int(v)
        out[k] = v
    return out


def _typed(settings: type, values: dict[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """`values` merged over the schema's defaults: unknown keys and wrong types raise, naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    fields = _fields(settings)
    for k in values:
        if k not in fields:
            raise ConfigError(f"experiment.{k}", f"experiment.{k}{where(k)} is not a setting of this experiment"
                              f"{did_you_mean(k, fields)}")
    clean = _whole_numbers(settings, values)
    try:
        node = OmegaConf.merge(OmegaConf.structured(settings), clean)
    except ConfigKeyError as e:  # a key inside a group of settings (`arch.hiden`)
        key, group = str(getattr(e, "full_key", "") or "?"), settings
        for part in key.split(".")[:-1]:
            group = _group(_fields(group)[part]) or group
        raise ConfigError(f"experiment.{key}", f"experiment.{key}{where(key)} is not a setting of this experiment"
                          f"{did_you_mean(key.split('.')[-1], _fields(group))}") from None
    except OmegaConfBaseException as e:  # a wrong type; a list for a mapping (ConfigTypeError) names no key
        # the setting itself (`arch.heads`), not the list entry (`sizes[1]`) the error points at
        key = str(getattr(e, "full_key", "") or "").split("[")[0] or _failing_key(settings, clean)
        raise ConfigError(f"experiment.{key}", f"experiment.{key}{where(key)} has the wrong type "
                          f"(got {_dig(clean, key)!r}; {str(e).splitlines()[0]})") from None
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def _failing_key(settings: type, values: dict[str, Any]) -> str:
    """The first key whose value alone fails the merge over the schema."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for k, v in values.items():
        try:
            OmegaConf.merge(OmegaConf.structured(settings), {k: v})
        except OmegaConfBaseException:
            return k
    return "?"


def _is_int_field(f: dataclasses.Field) -> bool:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return str(t).replace(" ", "") in ("int", "int|None", "Optional[int]")


def _checks(settings: type, pre: str = "") -> list[tuple[str, Any]]:
    """(dotted name, range checker) of every setting, those inside groups (`arch.hidden`) included."""
    out = []
    for name, f in _fields(settings).items():
        group = _group(f)
        if group is not None:
            out += _checks(group, f"{pre}{name}.")
        if f.metadata.get("check") is not None:
            out.append((f"{pre}{name}", f.metadata["check"]))
    return out


def _check_ranges(spec: ExperimentSpec, values: dict[str, Any], where: Callable[[str], str],
                  context: dict[str, Any] | None = None, whole: bool = True) -> None:
    for name, check in _checks(spec.settings):  # type: ignore[arg-type]
        msg = check.check(_dig(values, name))
        if msg:
            raise ConfigError(f"experiment.{name}", f"experiment.{name}{where(name)} {msg}")
    for rule in spec.rules:  # a key `/a.b` is read from the whole config (e.g. `/fourier.base_side`)
        if (not whole or context is None) and any(k.startswith("/") for k in rule.keys):
            continue  # the whole config is the run's (its profile, its overrides): checked on the run's values
        args = [_dig(context or {}, k[1:]) if k.startswith("/") else _dig(values, k) for k in rule.keys]
        try:
            ok = bool(rule.ok(*args))
        except (TypeError, ValueError, ArithmeticError):  # ArithmeticError: x / 0, int(inf)
            ok = False
        if not ok:
            name = rule.setting or rule.keys[0]
            full = name[1:] if name.startswith("/") else f"experiment.{name}"
            raise ConfigError(full, rule.message.format(*args) + where(name))


def _dig(d: dict[str, Any], dotted: str) -> Any:
    for p in dotted.split("."):
        d = d.get(p) if isinstance(d, dict) else None  # type: ignore[assignment]
    return d


def settings_for(spec: ExperimentSpec, exp: dict[str, Any], profile: str, overrides: Sequence[str] = (),
                 source: str = "the experiment config", context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of one run: schema defaults < the YAML's values < `profiles.<profile>` < command line.

    Every profile block is checked (unknown keys, types, ranges, rules), not only the one in use, so a typo
    in the `paper` sizes fails a `smoke` run too; a rule that reads the whole config (`/key`) is checked on the
    run's values only, since the config it reads is the run's (e.g. the candidate pool of its profile).

    Args:
        spec: the experiment's declaration.
        exp: the composed `experiment` node as plain containers (command-line overrides already applied).
        profile: the profile whose sizes apply (`profile_choice`).
        overrides: the command-line overrides (`experiment.<key>=...` keeps its value over the profile's).
        source: the YAML, named in errors about its `profiles:` blocks.
        context: the whole resolved config, for rules that read a key outside the experiment (`/key`).

    Raises:
        ConfigError: naming `experiment.<key>` (and the profile block it came from).
    """
    base = {k: v for k, v in exp.items() if k not in CONTRACT_KEYS}
    profiles = exp.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("experiment.profiles", f"experiment.profiles in {source} must map profile names to sizes")
    if spec.settings is None:
        if base or any(profiles.values()):
            extra = sorted(set(base) | {k for p in profiles.values() for k in (p or {})})
            raise ConfigError(f"experiment.{extra[0]}", f"experiment.{extra[0]} is set in {source}, but "
                              f"{spec.fn.__module__}:{spec.fn.__name__} declares no settings (@experiment)")
        return {}
    set_here = _override_keys(overrides)

    def overlaps(k: str, keys: Iterable[str]) -> bool:  # `arch` and `arch.heads` concern each other
        return any(k == o or k.startswith(o + ".") or o.startswith(k + ".") for o in keys)

    # Each block is checked over the YAML's own values: a command-line value is judged for the run's profile
    # only (below), never blamed on a block that does not set it.
    yaml_base = {k: v for k, v in base.items() if not overlaps(k, set_here)}
    chosen: dict[str, Any] = {}
    for name, block in profiles.items():  # every block, so a typo anywhere fails at once
        def where(k: str, name: str = name, block: dict = block or {}) -> str:
            return f" (profiles.{name} in {source})" if overlaps(k, _leaves(block)) else f" (in {source})"
        merged = {**yaml_base, **(block or {})}
        values = _typed(spec.settings, merged, where)
        _check_ranges(spec, values, where, context, whole=False)
        if name == profile:
            chosen = block or {}
    run_values = dict(base)
    chosen_leaves = _leaves(chosen)
    for dotted, v in chosen_leaves.items():
        if not overlaps(dotted, set_here):
            _set(run_values, dotted, v)

    def here(k: str) -> str:  # name the profile's block when the value came from it
        from_profile = overlaps(k, chosen_leaves) and not overlaps(k, set_here)
        return f" (profiles.{profile} in {source})" if from_profile else ""

    values = _typed(spec.settings, run_values, here)
    _check_ranges(spec, values, here, context)
    return values


def profile_choice(cfg: Any, overrides: Sequence[str] = ()) -> str:
    """The profile whose sizes a run takes: the `profile=` choice of the command line, else `profile.name`.

    A run may rename its results folder with `profile.name=...` (`make gpu-check` writes `gpu_<device>`);
    the sizes are still those of the profile it composed.
    """
    from omegaconf import OmegaConf

    chosen = [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+") == "profile"]
    return chosen[-1] if chosen else str(OmegaConf.select(cfg, "profile.name", default=""))


def specialise(cfg: Any, overrides: Sequence[str] = (), fn: Callable[..., None] | None = None) -> Any:
    """Replace `cfg.experiment` by the settings of this run (see `settings_for`) plus `name`/`fn`/`run_order`.

    Idempotent: a config already specialised (`experiment.specialised: true`) is returned as is.

    Args:
        cfg: the composed config (changed in place).
        overrides: the command-line overrides; their `experiment.<key>` values win over the profile's sizes.
        fn: the experiment function, when the caller resolved it already (default: `experiment.fn`).

    Returns:
        `cfg`; its `experiment` node holds the run's settings and no `profiles` block.
    """
    from omegaconf import OmegaConf, open_dict

    from llm_efficiency_bench.core.validate import resolved

    if OmegaConf.select(cfg, "experiment.specialised", default=False):
        return cfg
    full = resolved(cfg)
    exp = full["experiment"]
    fn = fn or resolve_experiment(exp.get("fn"))
    paper, name = OmegaConf.select(cfg, "paper", default="?"), exp.get("name", "?")
    values = settings_for(spec_of(fn), exp, profile_choice(cfg, overrides), overrides,
                          source=f"configs/{paper}/experiment/{name}.yaml", context=full)
    node = {"name": exp.get("name"), "fn": exp.get("fn"), "run_order": exp.get("run_order"), **values,
            "specialised": True}
    with open_dict(cfg):
        cfg.experiment = OmegaConf.create(node)
    return cfg


def declared(paper: str, name: str) -> ExperimentSpec | None:
    """The declaration of experiment `name` of `paper`, found through its YAML's `fn` (None: no such YAML).

    This is how the report finds an experiment's figure drawer: no list of experiments is kept anywhere else.
    """
    import yaml

    from llm_efficiency_bench.core.paths import config_dir_of

    path = config_dir_of(paper) / paper / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return None
    fn = ((yaml.safe_load(path.read_text()) or {}).get("experiment") or {}).get("fn")
    return spec_of(resolve_experiment(fn))
