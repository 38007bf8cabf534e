"""Released PRMs (ASPRM-M / -L / -D, Math-Shepherd): how each reads a solution, loading, step scores.

How a PRM turns a candidate into step scores is a small spec per PRM (`released.spec.<prm>`, values and
their sources in `configs/adaptive_step/experiment/bon_released.yaml`): the marker token it was trained
with, its good / bad label tokens, whether its input starts with BOS, and how question and solution are
joined. The step score at a marker is P(good) = softmax over the two label logits at that position (§3.3;
Math-Shepherd's model card computes the same); the solution score aggregates them with `steps.aggregate`.
The PRMs are loaded by hub id or from a local folder through the suite's loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from llm_efficiency_bench.core.errors import ConfigError

# ------------------------------------------------------------------------------------------ PRM specs
@dataclass(frozen=True)
class PrmSpec:
    """How one released PRM reads a solution (`released.spec.<name>`).

    Attributes:
        marker: the step-marker string the PRM was trained with (encodes to one token, possibly after
            whitespace-only prefix tokens that SentencePiece / byte-level BPE put in front).
        good: label token for a correct step ("+").
        bad: label token for a wrong step ("-").
        bos: whether the PRM's input starts with the tokenizer's special tokens (BOS).
        prompt_format: how the PRM input is built, with `{prompt}` (policy prompt of the row), `{question}`
            and `{solution}` (candidate with markers).
        insert: text appended to each step in `steps: newline` mode (Math-Shepherd: " ки").
        step_prefix: prefix of step k in `newline` mode, with `{k}` (Math-Shepherd's format: "Step {k}: ").
    """

    marker: str
    good: str = "+"
    bad: str = "-"
    bos: bool = True
    prompt_format: str = "{question} {solution}"
    insert: str = " ки"
    step_prefix: str = ""


@dataclass(frozen=True)
class LabelIds:
    """Token ids of one PRM: step marker, good / bad label, padding."""

    marker: int
    good: int
    bad: int
    pad: int


def prm_spec(cfg: Any, name: str) -> PrmSpec:
    """The spec of PRM `name` from `released.spec` (ConfigError naming the setting when absent)."""
    from omegaconf import OmegaConf

    specs = cfg.released.get("spec") or {}
    if name not in specs:
        raise ConfigError(f"released.spec.{name}", f"no spec (marker, label tokens) for released PRM {name!r}")
    raw = OmegaConf.to_container(specs[name], resolve=True) if not isinstance(specs[name], dict) else specs[name]
    try:
        return PrmSpec(**raw)  # type: ignore[arg-type]
    except TypeError as e:
        raise ConfigError(f"released.spec.{name}", f"bad spec for {name!r}: {e}") from e


def token_id(tok: Any, text: str, setting: str) -> int:
    """The single vocabulary id of `text` under `tok`, the way the released code resolves it.

    OpenRLHF (the ASPRM trainer) encodes the placeholder / label strings without special tokens and requires
    one token; Math-Shepherd's model card takes the last id of `encode(step_tag)`. Both agree with: encode
    without special tokens, drop leading ids that decode to whitespace only (SentencePiece's bare "▁",
    byte-level BPE's "Ġ"), and require exactly one id to remain.
    """
    ids = tok.encode(text, add_special_tokens=False)
    while len(ids) > 1 and not tok.decode([ids[0]]).strip():
        ids = ids[1:]
    if len(ids) != 1:
        raise ConfigError(setting, f"{text!r} is not one token for this PRM's tokenizer "
                                   f"(ids {tok.encode(text, add_special_tokens=False)})")
    return int(ids[0])


def label_ids(tok: Any, spec: PrmSpec, name: str) -> LabelIds:
    """Marker / label / pad ids of PRM `name` (pad: the tokenizer's pad, else EOS, else 0)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = LabelIds(token_id(tok, spec.marker, f"released.spec.{name}.marker"),
                   token_id(tok, spec.good, f"released.spec.{name}.good"),
                   token_id(tok, spec.bad, f"released.spec.{name}.bad"), int(pad if pad is not None else 0))
    if ids.good == ids.bad:
        raise ConfigError(f"released.spec.{name}", "good and bad label tokens are the same token")
    return ids


# ---------------------------------------------------------------------------------------- loading
def prm_source(cfg: Any, name: str) -> str:
    """Hub id or local folder of PRM `name` (`released.prms.<name>`)."""
    prms = cfg.released.get("prms") or {}
    if name not in prms or not prms[name]:
        raise ConfigError(f"released.prms.{name}", f"released PRM {name!r} has no hub id or folder")
    return str(prms[name])


def prm_fingerprint(cfg: Any, name: str) -> str:
    """What identifies the PRM's weights in cache keys: the hub id, or a local folder with its files' sizes
    and modification times (a retrained folder at the same path gets new keys)."""
    src = prm_source(cfg, name)
    folder = Path(src).expanduser()
    if not folder.exists():
        return f"hub:{src}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return "local:" + str(folder.resolve()) + ":" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                                           for p in files)


def load_prm(cfg: Any, name: str) -> tuple[Any, Any]:
    """Load released PRM `name` through the suite's loader (`llm_efficiency_bench.core.models.load_model`).

    A local folder loads offline; a hub id goes through the hub (offline with `HF_HUB_OFFLINE=1`). Any
    failure is one ConfigError naming `released.prms.<name>`.

    Returns:
        (model in eval mode on `cfg.device`, tokenizer).
    """
    from omegaconf import OmegaConf

    from llm_efficiency_bench.core.models import load_model

    src = prm_source(cfg, name)
    local = Path(src).expanduser().exists()
    mcfg = OmegaConf.create({"name": f"released_{name}", "source": "local" if local else "hub",
                             "path": str(Path(src).expanduser()) if local else None,
                             "hub_id": None if local else src, "family": None, "context": None})
    try:
        lm = load_model(mcfg, dtype=str(cfg.dtype), device=str(cfg.device))
    except ConfigError as e:
        if e.setting in ("dtype", "device"):
            raise
        raise ConfigError(f"released.prms.{name}", f"released PRM {name!r} ({src}) could not be loaded: "
                                                   f"{str(e).split(' (setting to fix')[0]}") from e
    return lm.model.eval(), lm.tokenizer


# ---------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def marker_scores(model: Any, seqs: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], ids: LabelIds,
                  batch: int = 8) -> list[list[float]]:
    """P(good) at every marker: softmax over the good / bad label logits there (paper §3.3).

    Like `generation.label_scores`, on the model's device, batched by length, and with the LM head applied
    only at marker positions (`logits_to_keep`; a 7B PRM's full (b, L, V) logits would not fit).

    Args:
        model: the PRM (a causal LM).
        seqs: token ids per candidate (PRM input with markers).
        positions: marker positions in each sequence (may be empty).
        ids: the PRM's marker / label / pad ids.
        batch: sequences per forward.
    """
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out: list[list[float]] = [[] for _ in seqs]
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        L = max(len(seqs[i]) for i in idx)
        x = torch.full((len(idx), L), ids.pad, dtype=torch.long)       # (b, L), right padding
        mask = torch.zeros((len(idx), L), dtype=torch.long)            # (b, L)
        for r, i in enumerate(idx):
            x[r, :len(seqs[i])] = torch.tensor(list(seqs[i]), dtype=torch.long)
            mask[r, :len(seqs[i])] = 1
        keep = sorted({p for i in idx for p in positions[i]})
        if not keep:
            continue
        where = {p: j for j, p in enumerate(keep)}
        kept = torch.tensor(keep, dtype=torch.long, device=dev)        # (K,) union of marker positions
        try:
            logits = model(input_ids=x.to(dev), attention_mask=mask.to(dev), logits_to_keep=kept).logits  # (b, K, V)
        except TypeError:  # a model class without `logits_to_keep`: full logits, then the same positions
            logits = model(input_ids=x.to(dev), attention_mask=mask.to(dev)).logits[:, kept]              # (b, K, V)
        for r, i in enumerate(idx):
            if positions[i]:
                cols = [where[p] for p in positions[i]]
                pair = logits[r, cols][:, [ids.good, ids.bad]].float()  # (m, 2)
                out[i] = torch.softmax(pair, -1)[:, 0].tolist()
    return out


def encode_for_prm(tok: Any, spec: PrmSpec, ids: LabelIds, prompts: Sequence[str], questions: Sequence[str],
                   texts: Sequence[str], max_len: int | None = None) -> tuple[list[list[int]], list[list[int]], int]:
    """PRM inputs and marker positions; also how many candidates have a marker count that does not match
    the marker string's occurrences in the text (tokenisation merged or split a marker).

    Inputs longer than `max_len` keep their last `max_len` tokens (the closing marker survives).
    """
    seqs, poss, mismatched = [], [], 0
    needle = spec.marker.strip()
    for pr, q, t in zip(prompts, questions, texts):
        text = spec.prompt_format.format(prompt=pr, question=q, solution=t)
        x = tok(text, add_special_tokens=spec.bos).input_ids
        if max_len and len(x) > max_len:
            x = x[-max_len:]
        pos = [k for k, v in enumerate(x) if v == ids.marker]
        mismatched += len(pos) != t.count(needle)
        seqs.append(x)
        poss.append(pos)
    return seqs, poss, mismatched


