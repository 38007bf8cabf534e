"""Command-line overrides checked before Hydra composes: one line with a did-you-mean, never Hydra's trace.

Hydra refuses an unknown key with a five-line error that advises `+key=` (adding the typo), crashes with a
bare TypeError on a numeric group choice, and cannot know an experiment's settings that its YAML leaves at
the schema's default. `prepare(paper, overrides)` runs first in every entry point:

- a group choice (`experiment=`, `profile=`, `model=`, `data=`, a paper's own groups) must name a file;
- `experiment.<key>=` must be a setting of the chosen experiment's schema (`core/experiment.py`); one the
  YAML leaves at its default is passed on as `++experiment.<key>=` so Hydra adds it;
- any other `a.b=` must name a key of the composed config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from llm_efficiency_bench.core.errors import ConfigError
from llm_efficiency_bench.core.experiment import CONTRACT_KEYS, did_you_mean, resolve_experiment, spec_of

SHARED_GROUPS = ("model", "data", "suite")  # groups under the shared tree; a paper's own sit under <paper>/


def _split(o: str) -> tuple[str, str, str, str]:
    """(prefix of +/~, dotted key, '=' or '', value)."""
    key, sep, value = o.partition("=")
    stripped = key.lstrip("+~")
    return key[:len(key) - len(stripped)], stripped, sep, value


def _is_sweep(value: str) -> bool:
    return ("," in value and not value.startswith(("[", "{", "'", '"'))) or \
        value.startswith(("choice(", "range(", "glob(", "interval("))


def group_dirs(paper: str, config_dir: Path) -> dict[str, Path]:
    """Every config group a paper's command line may choose from, and its folder."""
    out = {g: config_dir / g for g in SHARED_GROUPS if (config_dir / g).is_dir()}
    paper_dir = config_dir / paper
    if paper_dir.is_dir():
        out.update({p.name: p for p in paper_dir.iterdir() if p.is_dir() and any(p.glob("*.yaml"))})
    return out


def check_group_choices(paper: str, overrides: Sequence[str], config_dir: Path | None = None) -> None:
    """Refuse unknown config-group choices (`model=nope`, `experiment=3`) with the options listed.

    Raises:
        ConfigError: naming the group, the options and the closest one.
    """
    from llm_efficiency_bench.core.paths import config_dir_of

    groups = group_dirs(paper, config_dir or config_dir_of(paper))
    for o in overrides:
        prefix, key, sep, value = _split(o)
        if not sep or key not in groups or "~" in prefix or value.startswith(("choice(", "range(", "glob(")):
            continue  # not a plain group choice (sweep functions: Hydra expands and checks them)
        options = sorted(p.stem for p in groups[key].glob("*.yaml"))
        for v in ([x.strip() for x in value.split(",")] if _is_sweep(value) else [value]):
            if v not in options:
                raise ConfigError(key, f"unknown {key} {v!r} for {paper}{did_you_mean(v, options)}; "
                                  f"available: {', '.join(options)}")


def _default_choice(paper: str, group: str, config_dir: Path) -> str | None:
    """The top config's default for `group` (`- experiment: ppl_table1`)."""
    import yaml

    top = yaml.safe_load((config_dir / f"{paper}.yaml").read_text()) or {}
    for entry in top.get("defaults") or []:
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    return None


def _experiment_fields(paper: str, name: str, config_dir: Path) -> tuple[set[str], set[str]]:
    """(settings of experiment `name`'s schema, keys its YAML sets under `experiment:`)."""
    import yaml

    data = yaml.safe_load((config_dir / paper / "experiment" / f"{name}.yaml").read_text()) or {}
    exp = data.get("experiment") or {}
    spec = spec_of(resolve_experiment(exp.get("fn")))
    fields = set(spec.settings.__dataclass_fields__) if spec.settings else set()
    # keys composed in through the YAML's defaults list (`/model@experiment.models.x`) count as set
    composed = {str(next(iter(d))).split("@")[-1].split(".")[1] for d in data.get("defaults") or []
                if isinstance(d, dict) and "@experiment." in str(next(iter(d)))}
    return fields, set(exp) | composed


def prepare(paper: str, overrides: Sequence[str], config_dir: Path | None = None) -> list[str]:
    """The overrides to hand to Hydra, checked; see the module docstring.

    Raises:
        ConfigError: for the first unknown group choice or key, with the closest name.
    """
    from llm_efficiency_bench.core.paths import config_dir_of

    config_dir = config_dir or config_dir_of(paper)
    check_group_choices(paper, overrides, config_dir)
    groups = group_dirs(paper, config_dir)
    choice = next((_split(o)[3] for o in overrides if _split(o)[1] == "experiment" and _split(o)[2]), None)
    names = [x.strip() for x in choice.split(",")] if choice else [_default_choice(paper, "experiment", config_dir)]
    out, cfg = [], None
    for o in overrides:
        prefix, key, sep, value = _split(o)
        top = key.split(".")[0]
        if not sep or prefix or key in groups or top == "hydra" or "/" in key:
            out.append(o)  # group choices (checked above), additions (+, ++, ~) and Hydra's own: as given
            continue
        if top == "experiment" and "." in key:
            setting = key.split(".")[1]
            if setting in CONTRACT_KEYS:
                out.append(o)
                continue
            add = False
            for name in filter(None, names):
                fields, in_yaml = _experiment_fields(paper, name, config_dir)
                if setting not in fields and setting not in in_yaml:
                    raise ConfigError(key, f"{key}: experiment {name!r} has no setting {setting!r}"
                                      f"{did_you_mean(setting, fields | in_yaml)}")
                add = add or setting not in in_yaml
            out.append(("++" if add else "") + o)
            continue
        cfg = cfg if cfg is not None else _compose(paper, [x for x in overrides if _split(x)[1] in groups],
                                                   config_dir)
        _check_key(cfg, key, extra=list(groups))
        out.append(o)
    return out


def _compose(paper: str, overrides: list[str], config_dir: Path) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name=paper, overrides=[o for o in overrides if not _is_sweep(_split(o)[3])])
    finally:
        GlobalHydra.instance().clear()


def _check_key(cfg: Any, key: str, extra: Sequence[str] = ()) -> None:
    """`key` must exist in `cfg`; else one line naming the closest key at the deepest level that exists."""
    from omegaconf import OmegaConf

    node, done = cfg, []
    for part in key.split("."):
        # keys(), not `in`: a mandatory value not given yet (`subdir: ???`) is a key the command line sets
        if not OmegaConf.is_dict(node) or part not in node.keys():
            options = [".".join([*done, k]) for k in node.keys()] if OmegaConf.is_dict(node) else []
            options += list(extra) if not done else []
            raise ConfigError(key, f"unknown setting {key!r}{did_you_mean('.'.join([*done, part]), options)}")
        node, done = OmegaConf.select(node, part, throw_on_missing=False), [*done, part]
