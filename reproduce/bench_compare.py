"""Compare two pytest-benchmark JSON files: fail when a benchmark's median got slower than --fail.

    python -m reproduce.bench_compare .benchmarks/base.json .benchmarks/latest.json --fail 0.25
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.core.tables import markdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--fail", type=float, default=0.25, help="allowed slowdown of the median (0.25 = 25%%)")
    a = ap.parse_args(argv)
    load = lambda p: {b["fullname"]: b for b in json.load(open(p))["benchmarks"]}  # noqa: E731
    base, new = load(a.base), load(a.new)
    if json.load(open(a.base)).get("machine_info", {}).get("cpu") != json.load(open(a.new)).get("machine_info", {}).get("cpu"):
        print("warning: the two runs come from different machines; timings are not comparable", file=sys.stderr)
    rows, bad = [], False
    for name in sorted(set(base) | set(new)):
        if name not in base or name not in new:
            rows.append({"benchmark": name, "verdict": "only in " + ("new" if name in new else "base")})
            continue
        o, n = base[name]["stats"]["median"], new[name]["stats"]["median"]
        slow = n / o - 1
        verdict = "slower" if slow > a.fail else ("faster" if slow < -a.fail else "same")
        bad |= verdict == "slower"
        rows.append({"benchmark": name, "base_median_s": o, "new_median_s": n, "change": f"{slow:+.1%}",
                     "verdict": verdict})
    print(markdown(rows, digits=4))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
