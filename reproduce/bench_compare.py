"""Judge pytest-benchmark JSON files: medians against a saved run, and speed ratios against floors.

    python -m reproduce.bench_compare .benchmarks/base.json .benchmarks/latest.json --fail 0.25
    python -m reproduce.bench_compare .benchmarks/latest.json --ratio speedup>=25 --ratio sink_cache:ratio<=1.15

With two files, a benchmark whose median got slower than --fail is "slower" (exit 1). With --ratio, a ratio a
benchmark recorded in `extra_info` (measured interleaved within one run, so the machine's load cancels) is
checked against a bound: `[BENCH:]KEY>=VALUE` or `<=`, where BENCH (optional) is a substring of the
benchmark's name. A ratio nobody measured (e.g. its benchmark was skipped) fails too. Benchmarks themselves
assert only load-independent facts (exactness); whether a ratio is good enough is judged here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from bench.core.tables import markdown

_RATIO = re.compile(r"^(?:(?P<bench>[^:]+):)?(?P<key>[\w.]+)(?P<op>>=|<=)(?P<value>[-+0-9.eE]+)$")


def _benchmarks(path: str) -> dict[str, dict]:
    return {b["fullname"]: b for b in json.load(open(path))["benchmarks"]}


def compare_medians(base_path: str, new_path: str, fail: float) -> tuple[list[dict], bool]:
    """Rows per benchmark (base vs new median) and whether any got slower than `fail`."""
    base, new = _benchmarks(base_path), _benchmarks(new_path)
    if json.load(open(base_path)).get("machine_info", {}).get("cpu") != \
            json.load(open(new_path)).get("machine_info", {}).get("cpu"):
        print("warning: the two runs come from different machines; timings are not comparable", file=sys.stderr)
    rows, bad = [], False
    for name in sorted(set(base) | set(new)):
        if name not in base or name not in new:
            rows.append({"benchmark": name, "verdict": "only in " + ("new" if name in new else "base")})
            continue
        o, n = base[name]["stats"]["median"], new[name]["stats"]["median"]
        slow = n / o - 1
        verdict = "slower" if slow > fail else ("faster" if slow < -fail else "same")
        bad |= verdict == "slower"
        rows.append({"benchmark": name, "base_median_s": o, "new_median_s": n, "change": f"{slow:+.1%}",
                     "verdict": verdict})
    return rows, bad


def check_ratios(new_path: str, specs: list[str]) -> tuple[list[dict], bool]:
    """Rows per (spec, benchmark that recorded the key) and whether any bound failed or was not measured.

    Raises:
        ValueError: a spec that is not `[BENCH:]KEY>=VALUE` or `[BENCH:]KEY<=VALUE`.
    """
    new = _benchmarks(new_path)
    rows, bad = [], False
    for spec in specs:
        m = _RATIO.match(spec.replace(" ", ""))
        if m is None:
            raise ValueError(f"--ratio {spec!r}: expected [BENCH:]KEY>=VALUE or [BENCH:]KEY<=VALUE")
        key, op, bound = m["key"], m["op"], float(m["value"])
        hits = [(name, b["extra_info"][key]) for name, b in sorted(new.items())
                if key in b.get("extra_info", {}) and (m["bench"] is None or m["bench"] in name)]
        if not hits:
            rows.append({"check": spec, "benchmark": "-", "value": None, "verdict": "not measured"})
            bad = True
        for name, value in hits:
            ok = value >= bound if op == ">=" else value <= bound
            bad |= not ok
            rows.append({"check": spec, "benchmark": name, "value": float(value), "verdict": "ok" if ok else "FAIL"})
    return rows, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", metavar="JSON", help="[base.json] new.json")
    ap.add_argument("--fail", type=float, default=0.25, help="allowed slowdown of the median (0.25 = 25%%)")
    ap.add_argument("--ratio", action="append", default=[], metavar="[BENCH:]KEY>=VALUE",
                    help="bound on a ratio a benchmark recorded in extra_info (repeatable)")
    a = ap.parse_args(argv)
    if len(a.files) > 2:
        ap.error("give at most two files: [base.json] new.json")
    if len(a.files) == 1 and not a.ratio:
        ap.error("with one file, give at least one --ratio")
    bad = False
    if len(a.files) == 2:
        rows, bad = compare_medians(a.files[0], a.files[1], a.fail)
        print(markdown(rows, digits=4))
    if a.ratio:
        try:
            rows, bad_r = check_ratios(a.files[-1], a.ratio)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(markdown(rows, digits=3))
        bad |= bad_r
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
