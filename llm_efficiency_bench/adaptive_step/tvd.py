"""Stage 7: token-level value-guided decoding (TVD, paper §3.4, Table 1) vs greedy, on the test questions.

Greedy decoding, except where the policy is unsure: when the top-1 probability is below `tvd.threshold`,
each of the top-k candidate tokens is appended with a step marker and the PRM's P(good) there picks one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_efficiency_bench.adaptive_step.generation import label_scores, sample
from llm_efficiency_bench.adaptive_step.policy import Policy
from llm_efficiency_bench.adaptive_step.stage import Log, RunOptions, bar
from llm_efficiency_bench.adaptive_step.stage_inputs import TvdInputs
from llm_efficiency_bench.core.cache import save_atomic
from llm_efficiency_bench.core.checkpoint import Checkpoint


@torch.no_grad()
def value_guided_decode(pol: Policy, prm, prompt: list[int], max_new: int, threshold: float, top_k: int) -> tuple[list[int], int]:
    """Token-level value-guided decoding (§3.4): greedy; when top-1 p < threshold, let the PRM choose.

    Each of the top-k candidate tokens is appended to the prefix followed by a step marker; the PRM's
    P(good) at that marker scores it and the best candidate is kept.

    Returns:
        (generated ids, number of PRM calls = candidates scored).
    """
    ids: list[int] = []
    calls = 0
    for _ in range(max_new):
        x = torch.tensor([prompt + ids])
        probs = torch.softmax(pol.model(input_ids=x).logits[0, -1].float(), -1)  # (V,)
        top_p, top_i = probs.topk(top_k)
        nxt = int(top_i[0])
        if float(top_p[0]) < threshold:
            cands = [int(t) for t in top_i]
            seqs = [prompt + ids + [c, pol.marker_id] for c in cands]
            sc = label_scores(prm, seqs, [[len(s) - 1] for s in seqs], pol.good_id, pol.bad_id, pol.eos_id, batch=top_k)
            calls += len(cands)
            nxt = cands[int(np.argmax([s[0] for s in sc]))]
        if nxt == pol.eos_id:
            break
        ids.append(nxt)
    return ids, calls


def run_tvd(inputs: TvdInputs, pol: Policy, prm: Any, run: RunOptions, log: Log) -> dict[str, Any]:
    """Stage 7 (cached as `tvd`, resumable per question): greedy and TVD outputs checked per test question.

    Returns:
        {"rows": [{"greedy": bool, "tvd": bool, "calls": int, "changed": bool} per question]}.
    """
    if pol.key != inputs.policy:
        raise ValueError(f"tvd: inputs name policy {inputs.policy}, got policy {pol.key}")
    n_q, thr, k, max_new = inputs.n, inputs.thr, inputs.k, inputs.max_new
    entry = inputs.entry(run)

    def build(work: Path) -> dict[str, Any]:
        probs = pol.task.load("test", n_q)
        ck = Checkpoint(work, "partial", entry.key)
        state = ck.load() or {"rows": []}
        greedy = sample(pol.model, [pol.prompt_ids(p) for p in probs], max_new, pol.eos_id, greedy=True) \
            if n_q <= inputs.batch else None
        for q in bar(range(len(state["rows"]), n_q), n_q - len(state["rows"]), "tvd", run.progress):
            p = probs[q]
            g = greedy[q].ids if greedy is not None else sample(pol.model, [pol.prompt_ids(p)], max_new, pol.eos_id,
                                                              greedy=True)[0].ids
            v, calls = value_guided_decode(pol, prm, pol.prompt_ids(p), max_new, thr, k)
            state["rows"].append({"greedy": bool(pol.task.check(pol.decode(g), p)),
                                  "tvd": bool(pol.task.check(pol.decode(v), p)), "calls": calls, "changed": g != v})
            ck.save(state)
        save_atomic(work / "tvd.pt", {"rows": state["rows"]})
        ck.clear()
        return {"n": n_q}

    entry.get_or_build(build)
    return entry.load("tvd.pt")
