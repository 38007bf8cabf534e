"""Perplexity protocol of the paper (reference `examples/eval_long_ppl.py`).

Books are tokenized separately and concatenated; the cache is never reset between books; each fed token
scores the next token of the same book (the last token of a book is never fed). PPL = exp(mean NLL).
"""

from __future__ import annotations

import inspect
import math
import resource
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llm_efficiency_bench.core.checkpoint import Checkpoint
from llm_efficiency_bench.streaming_llm.engine import CachePolicy, ChunkedEvaluator, StreamState


@dataclass
class Stream:
    """inputs[i] predicts targets[i]; `doc_starts[k]` is the stream index where book k begins."""

    inputs: torch.Tensor  # (N,) long
    targets: torch.Tensor  # (N,) long
    doc_starts: list[int]
    doc_names: list[str]

    def doc_span(self, k: int) -> tuple[int, int]:
        """[start, end) stream indices of book k (the last book may be cut by the token budget)."""
        end = self.doc_starts[k + 1] if k + 1 < len(self.doc_starts) else self.inputs.numel()
        return self.doc_starts[k], end

    def book_prefix(self, k: int, tokens: int) -> "Stream":
        """Book k's first `tokens` scored tokens as a stream of its own (evaluated from an empty cache)."""
        start, end = self.doc_span(k)
        stop = min(end, start + tokens)
        return Stream(self.inputs[start:stop], self.targets[start:stop], [0], [self.doc_names[k]])


def build_stream(token_docs: list[tuple[str, list[int]]], max_tokens: int | None,
                 max_doc_tokens: int | None = None) -> Stream:
    """Concatenate per-book (input, next-token) pairs, stopping after `max_tokens` scored tokens.

    `max_doc_tokens` keeps only each book's first tokens (the smoke profile uses it to get many books
    into a short stream); None keeps whole books, as the paper does.
    """
    ins, tgs, starts, names = [], [], [], []
    total = 0
    for name, ids in token_docs:
        if len(ids) < 2:
            continue
        n = len(ids) - 1
        if max_doc_tokens is not None:
            n = min(n, max_doc_tokens)
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


@dataclass
class EvalTiming:
    """Compute time of one evaluation over all its legs: a resumed run counts the earlier legs too
    (they are stored in the checkpoint), so throughput = tokens / total_s whatever the interruptions."""

    earlier_s: float = 0.0  # legs before this process, read from the checkpoint
    leg_s: float = 0.0  # this process

    @property
    def total_s(self) -> float:
        return self.earlier_s + self.leg_s


def evaluate(adapter, policy: CachePolicy, stream: Stream, chunk: int, prefix: list[int] | None = None,
             checkpoint: Checkpoint | None = None, checkpoint_every_s: float = 120.0, desc: str = "",
             on_chunk: Callable[[int, ChunkedEvaluator], None] | None = None,
             stop_after_chunks: int | None = None, timing: EvalTiming | None = None) -> torch.Tensor:
    """Next-token NLL (fp32) of every stream position under `policy`, exactly, a chunk at a time.

    Args:
        prefix: tokens fed before the stream and not scored (e.g. 4 newline tokens as sinks, Table 1).
        checkpoint: resume from / save to it every `checkpoint_every_s` seconds.
        on_chunk: called after each chunk with (end index, evaluator), e.g. to sample memory.
        stop_after_chunks: stop early (used by tests to simulate an interruption).
        timing: filled with the seconds of the earlier legs (from the checkpoint) and of this one.

    Returns:
        (N,) NLL; positions not yet evaluated (early stop) are NaN.
    """
    timing = timing if timing is not None else EvalTiming()
    t_start = time.time()
    ev = ChunkedEvaluator(adapter, policy)
    n = stream.inputs.numel()
    nll = torch.full((n,), float("nan"))
    pos = 0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        ev.state = StreamState.from_dict(state["state"])
        nll[: state["pos"]] = state["nll"][: state["pos"]]
        pos = state["pos"]
        timing.earlier_s = float(state.get("elapsed_s", 0.0))
        print(f"[ppl] resumed {desc} at token {pos:,} of {n:,} ({timing.earlier_s:.0f} s in earlier legs)")
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
        timing.leg_s = time.time() - t_start
        if checkpoint and (time.time() - last_save > checkpoint_every_s or pos == n):
            checkpoint.save({"state": ev.state.to_dict(), "nll": nll[:pos].clone(), "pos": pos,
                             "elapsed_s": timing.total_s})
            last_save = time.time()
        if stop_after_chunks is not None and done_chunks >= stop_after_chunks:
            break
    bar.close()
    timing.leg_s = time.time() - t_start
    return nll


def recompute_positions(n: int, window: int, samples: int | None, seed: int) -> torch.Tensor:
    """Stream positions scored by recompute: every t >= L-1 (a full window), or a seeded uniform sample
    of `samples` of them without replacement, sorted. (N - L + 1 positions in the population.)"""
    population = n - (window - 1)
    if samples is None or samples >= population:
        return torch.arange(window - 1, n)
    g = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(population, generator=g)[:samples] + (window - 1)).values


def _last_logits_kwargs(model) -> dict:
    """Ask the model for the last position's logits only when its forward supports it: the LM head
    over a (b, L, 49152) tensor is ~20% of a SmolLM2 window's FLOPs, and only the last row is scored."""
    params = inspect.signature(model.forward).parameters
    kw = {"use_cache": False} if "use_cache" in params else {}
    if "logits_to_keep" in params:
        kw["logits_to_keep"] = 1
    return kw


@torch.no_grad()
def recompute_nll(model, stream: Stream, window: int, positions: torch.Tensor, batch: int = 4,
                  desc: str = "recompute", checkpoint: Checkpoint | None = None,
                  checkpoint_every_s: float = 120.0, timing: EvalTiming | None = None,
                  stop_after_batches: int | None = None) -> torch.Tensor:
    """Sliding window with recomputation at the given positions (exact, O(L^2) per token).

    For stream position t the model sees inputs[t-L+1 .. t] at positions 0..L-1 (KV rebuilt from
    scratch) and scores targets[t]: one L-token forward per position, `batch` windows per forward, only
    the last position through the LM head. Positions must satisfy t >= L-1.

    Returns:
        (k,) NLL per position; positions not reached (early stop) are NaN.
    """
    timing = timing if timing is not None else EvalTiming()
    t_start = time.time()
    k = positions.numel()
    out = torch.full((k,), float("nan"))
    done = 0
    state = checkpoint.load() if checkpoint else None
    if state is not None:
        done = int(state["done"])
        out[:done] = state["nll"][:done]
        timing.earlier_s = float(state.get("elapsed_s", 0.0))
        print(f"[ppl] resumed {desc} at position {done:,} of {k:,} ({timing.earlier_s:.0f} s in earlier legs)")
    dev = next(model.parameters()).device
    kw = _last_logits_kwargs(model)
    last_save, batches = time.time(), 0
    bar = tqdm(total=k, initial=done, desc=desc, unit="pos", mininterval=5, smoothing=0.1)
    while done < k:
        ps = positions[done:done + batch]
        x = torch.stack([stream.inputs[p - window + 1:p + 1] for p in ps.tolist()]).to(dev)  # (b, L)
        logits = model(input_ids=x, **kw).logits[:, -1].float()  # (b, V)
        out[done:done + ps.numel()] = F.cross_entropy(logits, stream.targets[ps].to(dev), reduction="none").cpu()
        done += ps.numel()
        bar.update(ps.numel())
        batches += 1
        timing.leg_s = time.time() - t_start
        if checkpoint and (time.time() - last_save > checkpoint_every_s or done == k):
            checkpoint.save({"nll": out[:done].clone(), "done": done, "elapsed_s": timing.total_s})
            last_save = time.time()
        if stop_after_batches is not None and batches >= stop_after_batches:
            break
    bar.close()
    timing.leg_s = time.time() - t_start
    return out


def ppl(nll: torch.Tensor) -> float:
    return math.exp(float(nll.double().mean()))


def ppl_stderr(nll: torch.Tensor) -> float:
    """Standard error of exp(mean NLL) by the delta method: PPL * sd(NLL) / sqrt(n)."""
    n = nll.numel()
    if n < 2:
        return float("nan")
    return ppl(nll) * float(nll.double().std()) / math.sqrt(n)


def sample_books(stream: Stream, tokens: int, count: int | None, seed: int) -> list[int]:
    """Books compared inside the stream and from an empty cache (Fig. 5 against the same text).

    Eligible: books with at least `tokens` scored tokens in the stream (the last one may be cut short by
    the budget). `count=None` takes every eligible book; otherwise the first and the last eligible book
    plus one drawn at random (seeded) from each of `count - 2` equal strata of the books between them in
    stream order, so the sample spreads over the whole stream.
    """
    eligible = [k for k in range(len(stream.doc_names)) if stream.doc_span(k)[1] - stream.doc_span(k)[0] >= tokens]
    if count is None or count >= len(eligible):
        return eligible
    if count < 2:
        raise ValueError(f"need at least 2 books (first and last), got {count}")
    first, mid, last = eligible[0], eligible[1:-1], eligible[-1]
    g = torch.Generator().manual_seed(seed)
    picks, m = [], count - 2
    for j in range(m):
        lo, hi = j * len(mid) // m, (j + 1) * len(mid) // m
        if hi > lo:
            picks.append(mid[lo + int(torch.randint(hi - lo, (1,), generator=g))])
    return [first, *picks, last]
