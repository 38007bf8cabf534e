"""Entry points: `python -m reproduce.<paper> experiment=<name> profile=<smoke|cpu|paper>` and
`python -m reproduce.report`."""
