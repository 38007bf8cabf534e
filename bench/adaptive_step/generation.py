"""Batched sampling with per-token confidences, and PRM scoring at step markers (paper §3.1, §3.3).

Own decoding loop (KV cache, left padding) rather than `generate`: it returns the untempered probability
of every sampled token (the paper's confidence) and draws from a seeded `torch.Generator`, so a resumed
stage reproduces the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Sample:
    """One generated continuation.

    Attributes:
        ids: generated token ids (end-of-text excluded).
        conf: probability the policy gave each of `ids` (same length).
        finished: whether end-of-text was produced within the budget.
    """

    ids: list[int]
    conf: list[float]
    finished: bool


def _left_pad(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), pad, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(prompts), L), dtype=torch.long)     # (B, L)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[i, L - len(p):] = 1
    return ids, mask


@torch.no_grad()
def sample(model, prompts: Sequence[Sequence[int]], max_new: int, eos_id: int, temperature: float = 1.0,
           generator: torch.Generator | None = None, greedy: bool = False) -> list[Sample]:
    """Continue every prompt by up to `max_new` tokens (sampling at `temperature`, or greedy).

    Args:
        model: a causal LM (eval mode).
        prompts: token ids per row (different lengths allowed; left-padded here).
        max_new: generation budget per row.
        eos_id: end-of-text id (stops a row; not included in the output).
        temperature: sampling temperature (confidence is always taken from the untempered distribution).
        generator: seeded generator for reproducible draws.
        greedy: argmax decoding instead of sampling.
    """
    B = len(prompts)
    if B == 0:
        return []
    ids, mask = _left_pad(prompts, eos_id)
    pos = (mask.cumsum(1) - 1).clamp(min=0)  # (B, L)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    past, logits = out.cache, out.logits[:, -1]  # (B, V); transformers 5 names the KV cache `cache`
    next_pos = pos[:, -1] + 1  # (B,)
    toks: list[list[int]] = [[] for _ in range(B)]
    confs: list[list[float]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_new):
        probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
        if greedy:
            nxt = probs.argmax(-1)
        else:
            p_t = torch.softmax(logits.float() / max(temperature, 1e-5), dim=-1)
            nxt = torch.multinomial(p_t, 1, generator=generator).squeeze(-1)  # (B,)
        c = probs.gather(1, nxt[:, None]).squeeze(1)  # (B,)
        for i in range(B):
            if done[i]:
                continue
            if int(nxt[i]) == eos_id:
                done[i] = True
            else:
                toks[i].append(int(nxt[i]))
                confs[i].append(float(c[i]))
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=torch.long)], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    cache=past, use_cache=True)
        past, logits = out.cache, out.logits[:, -1]
        next_pos = next_pos + 1
    return [Sample(toks[i], confs[i], bool(done[i])) for i in range(B)]


@torch.no_grad()
def label_scores(prm, seqs: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], good_id: int,
                 bad_id: int, pad_id: int, batch: int = 32) -> list[list[float]]:
    """P(good) at each marker: softmax over the two label-token logits at the marker position (§3.3).

    Args:
        prm: the PRM (a causal LM whose head emits a label token after each marker).
        seqs: full token sequences (prompt + solution with markers).
        positions: marker positions in each sequence.
    """
    out: list[list[float]] = []
    for s in range(0, len(seqs), batch):
        chunk, pchunk = seqs[s:s + batch], positions[s:s + batch]
        L = max(len(x) for x in chunk)
        ids = torch.full((len(chunk), L), pad_id, dtype=torch.long)  # (b, L), right padding
        mask = torch.zeros((len(chunk), L), dtype=torch.long)
        for i, x in enumerate(chunk):
            ids[i, :len(x)] = torch.tensor(list(x))
            mask[i, :len(x)] = 1
        logits = prm(input_ids=ids, attention_mask=mask).logits  # (b, L, V)
        for i, ps in enumerate(pchunk):
            pair = logits[i, list(ps)][:, [good_id, bad_id]].float()  # (m, 2)
            out.append(torch.softmax(pair, -1)[:, 0].tolist())
    return out
