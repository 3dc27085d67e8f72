"""`make bench`: every benchmarks/bench_*.py in turn; JSON lines on stdout, a table on stderr.

Exit status 1 if any gate failed, so a regression is visible; benchmarks never run in
`make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = set(sys.argv[1:])
    rows = []
    for script in sorted(HERE.glob("bench_*.py")):
        if only and script.stem not in only:
            continue
        print(f"# {script.name}", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, capture_output=True, text=True,
                              check=False)
        for line in proc.stdout.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows.append(row)
            print(line, flush=True)
        if proc.returncode:
            print(f"{script.name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            rows.append({"bench": script.stem, "ok": False})
    for r in rows:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[r.get("ok")]
        print(f"{mark} {r.get('bench')}: {r.get('value')} {r.get('unit', '')} (gate {r.get('gate')}; "
              f"ratio {r.get('ratio')} vs {r.get('baseline')})", file=sys.stderr)
    return 1 if any(r.get("ok") is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
