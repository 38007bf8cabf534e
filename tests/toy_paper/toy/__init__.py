"""A toy paper kept outside the suite: it proves the experiment contract end to end.

Everything a paper needs lives in this folder: the package (named after the paper, so the suite finds its
paper-wide settings in `toy/settings.py`), its config tree `configs/` (`toy.yaml` + `toy/{experiment,profile}/`)
and its claims `references/toy.yaml`. The suite finds it through `BENCH_PAPERS_PATH=<this folder>`; Python
finds the package through `PYTHONPATH=<the folder above>`:

    PYTHONPATH=tests/toy_paper BENCH_PAPERS_PATH=tests/toy_paper/toy python -m toy experiment=fit profile=smoke
"""
