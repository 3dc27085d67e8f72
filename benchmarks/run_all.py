"""`make bench`: every benchmarks/bench_*.py in turn; JSON lines on stdout, a table on stderr.

    benchmarks/run_all.py                        # all of them (~13 min)
    benchmarks/run_all.py bench_sim bench_reduce # a subset (make bench ONLY="bench_sim bench_reduce")

Every row goes to ``benchmarks/results/<UTC start>-<short commit>.jsonl`` with the commit, whether
the measured files differed from it and their fingerprint (benchmarks/_results.py); then
``benchmarks/report.py`` regenerates BENCHMARKS.md's tables from the newest runs.

Exit status 1 if any gate failed, a script crashed, timed out, printed a malformed row or no row
at all (a benchmark cannot pass by printing nothing): each of those is a failing row in the
result file too. Exit status 2 for an unknown benchmark name. Benchmarks never run in
`make test`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _results import ROOT, ResultsWriter, provenance

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 900.0  # the longest script takes ~4 min on a quiet machine
REQUIRED = {"bench": str, "metric": str, "unit": str}


@dataclass
class Outcome:
    """What one script did: its rows (failures included) and how it ended."""

    script: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    exit: int | None = None
    seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)


def check_row(line: str) -> dict[str, Any] | str | None:
    """A result row, a reason why this JSON-looking line is not one, or None for other output."""
    if not line.lstrip().startswith("{"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return f"expected a JSON object, found {line[:80]!r}"
    missing = [k for k, t in REQUIRED.items() if not isinstance(row.get(k), t)]
    value = row.get("value")
    if missing or not (value is None or isinstance(value, int | float)) or row.get("ok") not in (True, False, None):
        return (f"expected a row with bench, metric, unit (strings), value (a number) and ok "
                f"(true/false/null), found {line[:120]!r}")
    return dict(row)


def failure(script: str, metric: str, value: float, unit: str, why: str) -> dict[str, Any]:
    return {"bench": script, "metric": metric, "value": value, "unit": unit, "baseline": None,
            "baseline_value": None, "ratio": None, "gate": "the script exits 0 with at least one valid row",
            "ok": False, "why": why}


def run_script(script: Path, *, timeout: float = TIMEOUT_S, echo: bool = True) -> Outcome:
    """Run one benchmark script (its own process group); collect and check its rows."""
    out = Outcome(script.stem, load=(os.getloadavg()[0], 0.0))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=script.parent.parent, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    fails: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            got = check_row(line)
            if isinstance(got, dict):
                out.rows.append(got)
                if echo:
                    print(line.rstrip("\n"), flush=True)
            elif isinstance(got, str):
                fails.append(failure(script.stem, "malformed row", math.nan, "", got))
            elif line.strip():
                print(f"# {script.stem}: {line.rstrip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out.exit = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        fails.append(failure(script.stem, "seconds until killed", timeout, "s", f"timed out after {timeout:g} s"))
    reader.join(10.0)
    out.seconds = time.monotonic() - t0
    out.load = (out.load[0], os.getloadavg()[0])
    if out.exit:
        fails.append(failure(script.stem, "exit status", out.exit, "", f"exited with status {out.exit}"))
    elif not out.rows and not fails:
        fails.append(failure(script.stem, "rows printed", 0, "rows", "printed no result row"))
    for row in fails:
        if echo:
            print(json.dumps(row), flush=True)
    out.rows += fails
    return out


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the script and everything it started, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def select(names: list[str], here: Path = HERE) -> list[Path]:
    """The scripts named (``bench_sim`` or ``bench_sim.py``), or all; ValueError for an unknown name."""
    scripts = sorted(here.glob("bench_*.py"))
    if not names:
        return scripts
    known = {s.stem: s for s in scripts}
    wanted = [n.removesuffix(".py") for n in names]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"expected benchmark names among {', '.join(sorted(known))}, found {', '.join(unknown)}")
    return [known[n] for n in dict.fromkeys(wanted)]


def table(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        for r in o.rows:
            mark = {True: "ok  ", False: "FAIL", None: "    "}[r.get("ok")]
            lines.append(f"{mark} {r['bench']} {r['metric']}: {r.get('value')} {r.get('unit', '')} "
                         f"(gate {r.get('gate')}; ratio {r.get('ratio')} vs {r.get('baseline')})")
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, here: Path = HERE, root: Path = ROOT) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmark scripts to run (default: every bench_*.py)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds one script may take")
    ap.add_argument("--no-save", action="store_true", help="do not write a result file")
    args = ap.parse_args(argv)
    try:
        scripts = select(args.names, here)
    except ValueError as exc:
        print(f"run_all: error: ONLY: {exc}", file=sys.stderr)
        return 2
    prov = provenance(root)
    if prov.dirty:
        print(f"run_all: note: src/, benchmarks/ or fixtures/ differ from {prov.short}; the result file records "
              "dirty: true", file=sys.stderr)
    writer = None if args.no_save else ResultsWriter(root, prov)
    outcomes = []
    for script in scripts:
        print(f"# {script.name}", file=sys.stderr, flush=True)
        o = run_script(script, timeout=args.timeout)
        outcomes.append(o)
        if writer is not None:
            writer.script(o.script, o.rows, exit=o.exit, seconds=o.seconds, load=o.load)
    failed = sorted({r["bench"] for o in outcomes for r in o.rows if r.get("ok") is False})
    print(table(outcomes), file=sys.stderr)
    if writer is not None:
        writer.finish(" ".join(["benchmarks/run_all.py", *args.names]), failed)
        print(f"results: {writer.path.relative_to(root)}; BENCHMARKS.md: benchmarks/report.py", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
