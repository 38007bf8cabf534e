"""What each cached stage of the pipeline reads, and its cache key computed from exactly that.

One frozen dataclass per stage (`stage.StageInputs`): the settings the stage uses and the keys of the upstream
results it consumes. `stage_settings.py` builds them from a run's config; the stages (`policy.py`,
`samples.py`, `labels.py`, `prm.py`, `tvd.py`) receive them instead of the config. Every field is hashed into
the key unless declared `unkeyed(why)`; the key objects keep the layout the cache entries were built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from llm_efficiency_bench.adaptive_step.generation import SAMPLER
from llm_efficiency_bench.adaptive_step.stage import StageInputs, unkeyed
from llm_efficiency_bench.core.cache import config_key
from llm_efficiency_bench.core.errors import ConfigError

_BATCHED_DRAWS = ("sets the batches whose draws share one seeded generator, so another value draws other "
                  "samples; left out of the key, so a cache holds the draws of one batch size")


@dataclass(frozen=True, kw_only=True)
class PolicyInputs(StageInputs):
    """Stage `policy`: train (or load) the policy, then its greedy accuracy on `n_eval` test questions."""

    model: dict[str, Any]           # the `model` block: source, architecture, training, prompt style
    task_settings: dict[str, Any]   # the `task` block
    n_eval: int                     # test questions of the greedy evaluation
    max_new: int                    # generation budget per answer
    task: Any = unkeyed("the task object of `task_settings` (with the data directory and `sandbox.allow_unsafe`: "
                        "where the data lives and how generated code is isolated)")
    batch: int = unkeyed("questions per greedy-decoding batch (left padding with an attention mask)")
    dtype: str = unkeyed("a pretrained policy's weights dtype (its loader only); its accuracy and samples can "
                         "differ between dtypes while the key stays the same")
    device: str = unkeyed("a pretrained policy's device (its loader only)")
    data_dir: str | None = unkeyed("where a pretrained policy's loader finds local files")

    def entry_name(self) -> str:
        return "policy"

    def key_obj(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task_settings, "n_eval": self.n_eval, "max_new": self.max_new}


@dataclass(frozen=True, kw_only=True)
class SamplesInputs(StageInputs):
    """Stage `samples_<split>`: `n_s` sampled solutions with token confidences for each of `n_q` questions."""

    split: str                      # question split: prm (PRM data), test, val (the entry's name)
    policy: str                     # the policy stage's key
    task: dict[str, Any]            # the `task` block
    n_q: int
    n_s: int
    temp: float
    max_new: int
    seed: int
    sampler: str = SAMPLER          # the draw method (`generation.SAMPLER`)
    batch: int = unkeyed(f"rows per sampling batch; {_BATCHED_DRAWS}")

    def entry_name(self) -> str:
        return f"samples_{self.split}"

    def key_obj(self) -> dict[str, Any]:
        return {"policy": self.policy, "task": self.task, "n_q": self.n_q, "n_s": self.n_s, "temp": self.temp,
                "max_new": self.max_new, "seed": self.seed, "sampler": self.sampler}


@dataclass(frozen=True, kw_only=True)
class DivisionInputs(StageInputs):
    """Stage `division`: tau from the pooled PRM-data confidences, step boundaries of both sample sets."""

    samples: tuple[str, ...]        # keys of the PRM-data and the test samples, in that order
    pct: float                      # tau = this percentile of the pooled confidences
    seed: int                       # random split points

    def entry_name(self) -> str:
        return "division"

    def key_obj(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "pct": self.pct, "seed": self.seed}

    def result_key(self) -> str:
        """The division as the label and oracle stages key it: the same inputs, hashed as a list."""
        return config_key([*self.samples, self.pct, self.seed])


@dataclass(frozen=True, kw_only=True)
class LabelsInputs(StageInputs):
    """Stage `labels_<split>`: K Monte-Carlo rollouts per step prefix of the PRM-data solutions."""

    split: str                      # split rule whose boundaries are labelled
    division: str                   # the division's `result_key`
    K: int                          # rollouts per step prefix
    max_new: int
    temp: float
    seed: int
    sampler: str = SAMPLER
    batch: int = unkeyed(f"rollouts per sampling batch; {_BATCHED_DRAWS}")

    def entry_name(self) -> str:
        return f"labels_{self.split}"

    def key_obj(self) -> dict[str, Any]:
        return {"division": self.division, "K": self.K, "split": self.split, "max_new": self.max_new,
                "temp": self.temp, "seed": self.seed, "sampler": self.sampler}

    def result_key(self) -> str:
        """The labels as a PRM stage keys them: division, split and K (the rollout sampling settings are
        already in the division's samples)."""
        return config_key([self.division, self.split, int(self.K)])


class Validator(NamedTuple):
    """Early stopping's criterion: the key of what it validates on, and model -> score (higher is better)."""

    key: str
    score: Callable[[Any], float]


# recipe settings whose neutral value is left out of the PRM key (the key of a recipe without them)
_NEUTRAL = {"labels": "hard", "early_stop": False}


def prm_key_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The PRM recipe as the stage key sees it (settings at their neutral value are left out)."""
    return {k: v for k, v in recipe.items() if not (k in _NEUTRAL and v == _NEUTRAL[k])}


@dataclass(frozen=True, kw_only=True)
class PrmInputs(StageInputs):
    """Stage `prm_<name>`: a PRM from the policy's weights, trained on one set of step labels."""

    name: str                       # confidence, newline, random, orm, oracle, ...
    policy: str                     # the policy stage's key
    labels: str                     # what identifies the training labels (and the solutions they label)
    recipe: dict[str, Any]          # the `prm` block or a selection variant: lr, loss, epochs, batch, seed,
                                    # labels (hard / soft), early_stop
    validator: Validator | None = None   # early stopping's criterion (keyed by its key when early_stop is on)

    def __post_init__(self) -> None:
        if self.recipe.get("early_stop") and self.validator is None:
            raise ConfigError("prm.early_stop", "early stopping needs validation questions (samples.val_questions > 0)")

    def entry_name(self) -> str:
        return f"prm_{self.name}"

    def key_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "labels": self.labels, "prm": prm_key_recipe(self.recipe),
                               "name": self.name}
        if self.recipe.get("early_stop"):
            assert self.validator is not None
            out["validation"] = self.validator.key
        return out


@dataclass(frozen=True, kw_only=True)
class ScoresInputs(StageInputs):
    """Stage `scores`: a PRM's step scores of every solution of one sample set."""

    prm: str                        # the PRM stage's key
    samples: str                    # the samples stage's key
    orm: bool                       # closing marker only
    bounds: Sequence[Sequence[int]] = field(compare=False)  # boundaries per solution (keyed by their hash)
    batch: int = unkeyed("rows per scoring forward pass (right padding with an attention mask)")

    def entry_name(self) -> str:
        return "scores"

    def key_obj(self) -> dict[str, Any]:
        return {"prm": self.prm, "samples": self.samples, "orm": self.orm, "bounds": config_key(self.bounds)}


@dataclass(frozen=True, kw_only=True)
class TvdInputs(StageInputs):
    """Stage `tvd`: greedy and value-guided decoding of `n` test questions."""

    policy: str                     # the policy stage's key
    prm: str                        # the guiding PRM's stage key
    n: int                          # test questions
    thr: float                      # the PRM decides where the top-1 probability is below this
    k: int                          # candidate tokens scored there
    max_new: int
    task: dict[str, Any]            # the `task` block
    batch: int = unkeyed("greedy decoding runs as one batch when `n` fits in it, else a question at a time")

    def entry_name(self) -> str:
        return "tvd"

    def key_obj(self) -> dict[str, Any]:
        return {"policy": self.policy, "prm": self.prm, "n": self.n, "thr": self.thr, "k": self.k,
                "max_new": self.max_new, "task": self.task}
