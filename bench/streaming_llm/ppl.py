"""Perplexity protocol of the paper (reference `examples/eval_long_ppl.py`).

Books are tokenized separately and concatenated; the cache is never reset between books; each fed token
scores the next token of the same book (the last token of a book is never fed). PPL = exp(mean NLL).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench.core.checkpoint import Checkpoint
from bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator, StreamState


@dataclass
class Stream:
    """inputs[i] predicts targets[i]; `doc_starts[k]` is the stream index where book k begins."""

    inputs: torch.Tensor  # (N,) long
    targets: torch.Tensor  # (N,) long
    doc_starts: list[int]
    doc_names: list[str]


def build_stream(token_docs: list[tuple[str, list[int]]], max_tokens: int | None) -> Stream:
    """Concatenate per-book (input, next-token) pairs, stopping after `max_tokens` scored tokens."""
    ins, tgs, starts, names = [], [], [], []
    total = 0
    for name, ids in token_docs:
        if len(ids) < 2:
            continue
        n = len(ids) - 1
        if max_tokens is not None:
            n = min(n, max_tokens - total)
        if n <= 0:
            break
        starts.append(total)
        names.append(name)
        ins.append(torch.tensor(ids[:n]))
        tgs.append(torch.tensor(ids[1:n + 1]))
        total += n
        if max_tokens is not None and total >= max_tokens:
            break
    if not ins:
        raise ValueError("no tokens to evaluate")
    return Stream(torch.cat(ins), torch.cat(tgs), starts, names)


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(adapter, policy: CachePolicy, stream: Stream, chunk: int, prefix: list[int] | None = None,
             checkpoint: Checkpoint | None = None, checkpoint_every_s: float = 120.0, desc: str = "",
             on_chunk: Callable[[int, ChunkedEvaluator], None] | None = None,
             stop_after_chunks: int | None = None) -> torch.Tensor:
    """Next-token NLL (fp32) of every stream position under `policy`, exactly, a chunk at a time.

    Args:
        prefix: tokens fed before the stream and not scored (e.g. 4 newline tokens as sinks, Table 1).
        checkpoint: resume from / save to it every `checkpoint_every_s` seconds.
        on_chunk: called after each chunk with (end index, evaluator), e.g. to sample memory.
        stop_after_chunks: stop early (used by tests to simulate an interruption).

    Returns:
        (N,) NLL; positions not yet evaluated (early stop) are NaN.
    """
    ev = ChunkedEvaluator(adapter, policy)
    n = stream.inputs.numel()
    nll = torch.full((n,), float("nan"))
    pos = 0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        ev.state = StreamState.from_dict(state["state"])
        nll[: state["pos"]] = state["nll"][: state["pos"]]
        pos = state["pos"]
        print(f"[ppl] resumed {desc} at token {pos:,} of {n:,}")
    elif prefix:
        ev.forward_chunk(torch.tensor(prefix)[None])
    last_save = time.time()
    done_chunks = 0
    bar = tqdm(total=n, initial=pos, desc=desc or policy.label(), unit="tok", mininterval=5, smoothing=0.1)
    while pos < n:
        end = min(pos + chunk, n)
        nll[pos:end] = ev.nll(stream.inputs[pos:end], stream.targets[pos:end])
        bar.update(end - pos)
        pos = end
        if on_chunk is not None:
            on_chunk(pos, ev)
        done_chunks += 1
        if checkpoint and (time.time() - last_save > checkpoint_every_s or pos == n):
            checkpoint.save({"state": ev.state.to_dict(), "nll": nll[:pos].clone(), "pos": pos})
            last_save = time.time()
        if stop_after_chunks is not None and done_chunks >= stop_after_chunks:
            break
    bar.close()
    return nll


@torch.no_grad()
def recompute_nll(model, stream: Stream, window: int, positions: torch.Tensor, batch: int = 4,
                  desc: str = "recompute") -> torch.Tensor:
    """Sliding window with recomputation at sampled positions (exact, O(L^2) per token).

    For stream position t the model sees inputs[t-L+1 .. t] at positions 0..L-1 (KV rebuilt from
    scratch) and scores targets[t]. Positions must satisfy t >= L-1.
    """
    out = torch.empty(positions.numel())
    dev = next(model.parameters()).device
    for s in tqdm(range(0, positions.numel(), batch), desc=desc, mininterval=5):
        ps = positions[s:s + batch]
        x = torch.stack([stream.inputs[p - window + 1:p + 1] for p in ps.tolist()]).to(dev)  # (b, L)
        logits = model(input_ids=x).logits[:, -1].float()  # (b, V)
        out[s:s + ps.numel()] = F.cross_entropy(logits, stream.targets[ps].to(dev), reduction="none").cpu()
    return out


def ppl(nll: torch.Tensor) -> float:
    return math.exp(float(nll.double().mean()))


def ppl_stderr(nll: torch.Tensor) -> float:
    """Standard error of exp(mean NLL) by the delta method: PPL * sd(NLL) / sqrt(n)."""
    n = nll.numel()
    if n < 2:
        return float("nan")
    return ppl(nll) * float(nll.double().std()) / math.sqrt(n)
