"""Batched sampling with per-token confidences, and PRM scoring at step markers (paper §3.1, §3.3).

Own decoding loop (KV cache, left padding) rather than `generate`: it returns the untempered probability
of every sampled token (the paper's confidence) and draws from a seeded `torch.Generator`, so a resumed
stage reproduces the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


# The draw method, part of the sample and label stage keys: entries drawn by another method are not reused.
# "icdf": inverse-CDF from one seeded uniform per row and step (a row's draws do not depend on the batch);
# the entries built before it (torch.multinomial over the whole batch) had no such key.
SAMPLER = "icdf"


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
           generator: torch.Generator | None = None, greedy: bool = False, share_prefill: bool = True,
           compact: bool = True) -> list[Sample]:
    """Continue every prompt by up to `max_new` tokens (sampling at `temperature`, or greedy).

    Args:
        model: a causal LM (eval mode).
        prompts: token ids per row (different lengths allowed; left-padded here).
        max_new: generation budget per row.
        eos_id: end-of-text id (stops a row; not included in the output).
        temperature: sampling temperature (confidence is always taken from the untempered distribution).
        generator: seeded generator for reproducible draws.
        greedy: argmax decoding instead of sampling.
        share_prefill: run identical prompts' prefill once (False: every row its own, the reference path).
        compact: drop finished rows from the batch (False: they keep running, the reference path).
    """
    B = len(prompts)
    if B == 0:
        return []
    # Rows with the same prompt (N samples of a question, K rollouts of a step prefix) share one prefill: the
    # unique prompts run once and their KV cache is gathered out to every row (the prefill is most of the
    # FLOPs of a short rollout). Rows that produced end-of-text leave the batch (`compact`).
    uniq: dict[tuple[int, ...], int] = {}
    inv = torch.tensor([uniq.setdefault(tuple(p) if share_prefill else (i, *p), len(uniq))
                        for i, p in enumerate(prompts)], dtype=torch.long)  # (B,)
    ids, mask = _left_pad([list(u)[0 if share_prefill else 1:] for u in uniq], eos_id)  # (U, L)
    pos = (mask.cumsum(1) - 1).clamp(min=0)  # (U, L)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    past, logits = out.cache, out.logits[:, -1]  # (U, V); transformers 5 names the KV cache `cache`
    if len(uniq) < B:
        past.batch_select_indices(inv)  # (U, ...) -> (B, ...)
        logits, mask, pos = logits[inv], mask[inv], pos[inv]
    next_pos = pos[:, -1] + 1  # (B,)
    toks: list[list[int]] = [[] for _ in range(B)]
    confs: list[list[float]] = [[] for _ in range(B)]
    done_l = [False] * B
    live = list(range(B))  # original row of each row still in the batch
    for _ in range(max_new):
        probs = torch.softmax(logits.float(), dim=-1)  # (A, V), A = rows still generating
        if greedy:
            nxt = probs.argmax(-1)
        else:
            # inverse-CDF draw from one uniform per *original* row and step: a row's draws do not depend on
            # which other rows are still in the batch, so dropping finished rows changes no sample
            u = torch.rand(B, generator=generator)[live]                             # (A,)
            cdf = torch.softmax(logits.float() / max(temperature, 1e-5), dim=-1).cumsum(-1)  # (A, V)
            nxt = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(-1).clamp(max=cdf.size(-1) - 1)
        c = probs.gather(1, nxt[:, None]).squeeze(1)  # (A,)
        nl, cl = nxt.tolist(), c.tolist()  # one conversion per step, not 2A tensor reads
        keep = []
        for a, i in enumerate(live):
            if done_l[i]:  # only without compaction: a finished row still in the batch
                continue
            if nl[a] == eos_id:
                done_l[i] = True
            else:
                toks[i].append(nl[a])
                confs[i].append(cl[a])
                keep.append(a)
        if not keep:
            break
        if compact and len(keep) < len(live):  # finished rows leave the batch (and the KV cache)
            idx = torch.tensor(keep, dtype=torch.long)
            past.batch_select_indices(idx)
            live = [live[a] for a in keep]
            nxt, mask, next_pos = nxt[idx], mask[idx], next_pos[idx]
        mask = torch.cat([mask, torch.ones((mask.size(0), 1), dtype=torch.long)], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    cache=past, use_cache=True)
        past, logits = out.cache, out.logits[:, -1]
        next_pos = next_pos + 1
    return [Sample(toks[i], confs[i], done_l[i]) for i in range(B)]


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
