"""``shotwatch report REC [-o FILE]``: a Markdown page for the e-log.

Run, shots, vetoes, the ROI/channel table, the scan table (norm ± sem_norm, on, off,
diff ± diff_sem), marks, analysis versions and the scan plot as text: GitHub-flavoured
Markdown tables and fenced code only, no HTML, so an e-log takes it as it is. Everything
written into a cell is escaped (``|``, ``<``, ``>``, ``&``, backticks, line breaks): mark
texts and names come from outside.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..schemas import UsageError
from ._textplot import text_plot

__all__ = ["register", "render_report"]


def _report(args: argparse.Namespace) -> int:
    from ..recording.analysis_config import analysis_versions
    from .reduce_cmd import check_output, open_analysis, summarize

    check_output(args.output, args.recording)
    reader, _, analysis = open_analysis(args.recording, None)
    result = summarize(reader, analysis)
    text = render_report(Path(args.recording).name, reader.info(), result,
                         [v.model_dump(mode="json") for v in analysis_versions(reader)])
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {args.output}: expected a writable file, found {exc.strerror or exc}") from None
    return 0


def render_report(name: str, info: dict[str, Any], result: dict[str, Any], versions: Sequence[dict[str, Any]],
                  *, now: dt.datetime | None = None) -> str:
    """The whole Markdown page (pure: the recording's ``info``, the summary result, its versions)."""
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# shotwatch report: {_code(name)}", "", *_overview(info, result, when), "",
             "## Shots", "", *_shots(result["shots"]), "", "## ROIs and channels", "", *_keys(result)]
    scan = result.get("scan")
    if scan:
        parts += ["", *_scan(scan)]
    parts += ["", "## Marks", "", *_marks(info.get("marks", [])), "", "## Analysis versions", "",
              *_versions(versions, result.get("analysis_version"))]
    return "\n".join(parts).rstrip("\n") + "\n"


def _overview(info: dict[str, Any], result: dict[str, Any], when: str) -> list[str]:
    src = info.get("source", {})
    tags = info.get("tags", {})
    shots = result["shots"]
    rows = [
        ("recording", _code(info.get("path", ""))),
        ("run", f"{_text(src.get('run', '-'))} (source {_code(src.get('kind', '?'))})"),
        ("tags", f"{tags.get('first')} … {tags.get('last')} ({tags.get('gaps', 0)} gaps)"),
        ("shots", f"{shots['total']} reduced, {shots['accepted']} accepted"
                  f" ({100 * shots['accepted'] / shots['total']:.1f} %)" if shots["total"] else "0"),
        ("state", "closed" if info.get("closed") else "open (still recording, or crashed)"),
        ("analysis version", _text(result.get("analysis_version"))),
        ("written", f"{when} by shotwatch {__version__}"),
    ]
    return _table(("", ""), rows, right=())


def _shots(shots: dict[str, Any]) -> list[str]:
    rows = [(_code(k), str(v)) for k, v in shots["vetoed"].items()]
    if not rows:
        return ["No vetoes configured."]
    return ["Each criterion counted separately (a shot can fail several).", "",
            *_table(("criterion", "vetoed"), rows, right=(1,))]


def _keys(result: dict[str, Any]) -> list[str]:
    every = [(k, r, "ROI") for k, r in result["rois"].items()] + [(k, r, "channel") for k, r in result["channels"].items()]
    if not every:
        return ["No ROI with valid shots."]
    pp = any("on" in r for _, r, _ in every)
    head = ["key", "kind", "count", "mean", "norm ± sem_norm", "mean_ratio", "nonfinite"]
    if pp:
        head += ["on: n, norm ± sem_norm", "off: n, norm ± sem_norm", "diff ± diff_sem", "rel ± rel_sem"]
    rows = []
    for key, r, kind in every:
        row = [_code(key), kind, str(r["count"]), _num(r["mean"]), _pm(r["norm"], r["sem_norm"]),
               _num(r["mean_ratio"]), str(r["nonfinite"])]
        if pp:
            row += [_side(r["on"]), _side(r["off"]), _pm(r["diff"], r["diff_sem"]), _pm(r["rel"], r["rel_sem"])]
        rows.append(tuple(row))
    return _table(head, rows, right=tuple(range(2, len(head))))


def _scan(scan: dict[str, Any]) -> list[str]:
    unit = f" ({_text(scan['unit'])})" if scan["unit"] else ""
    out = [f"## Scan: {_code(scan['name'])}{unit}", "",
           f"{len(scan['centers'])} bins; {scan['outside']} accepted shots outside the edges or without a value."]
    every = {**scan["rois"], **scan.get("channels", {})}
    for key, b in every.items():
        pp = "on" in b
        head = ["center", "n", "norm ± sem_norm"] + (["on", "off", "diff ± diff_sem"] if pp else [])
        rows = []
        for j, c in enumerate(scan["centers"]):
            row = [_num(c), str(b["count"][j]), _pm(b["norm"][j], b["sem_norm"][j])]
            if pp:
                row += [_pm(b["on"]["norm"][j], b["on"]["sem_norm"][j]),
                        _pm(b["off"]["norm"][j], b["off"]["sem_norm"][j]), _pm(b["diff"][j], b["diff_sem"][j])]
            rows.append(tuple(row))
        out += ["", f"### {_code(key)}", "", *_table(head, rows, right=tuple(range(len(head))))]
        out += ["", "```text", f"{key}: norm ± sem_norm (o = value, | = ± sem_norm; empty bins are gaps)",
                *text_plot(scan["centers"], b["norm"], b["sem_norm"], xlabel=_plain(scan["name"]) + unit)]
        if pp:
            out += ["", f"{key}: on − off (diff ± diff_sem)",
                    *text_plot(scan["centers"], b["diff"], b["diff_sem"], xlabel=_plain(scan["name"]) + unit)]
        out.append("```")
    return out


def _marks(marks: Iterable[dict[str, Any]]) -> list[str]:
    rows = [(str(m.get("shot", "")), str(m.get("tag", "")), _utc(m.get("time")), _text(m.get("text", "")))
            for m in marks]
    return _table(("shot", "tag", "time", "text"), rows, right=(0, 1)) if rows else ["No marks."]


def _versions(versions: Sequence[dict[str, Any]], used: Any) -> list[str]:
    rows = []
    for v in versions:
        sections = ", ".join(k for k, val in v.get("config", {}).items() if val not in (None, [], {}))
        flag = " (this report)" if v.get("version") == used else ""
        rows.append((f"{v.get('version')}{flag}", str(v.get("first_shot")), str(v.get("first_tag")),
                     _utc(v.get("time")), _text(v.get("by") or "-"), _text(sections or "-")))
    return _table(("version", "first shot", "first tag", "set", "by", "sections"), rows, right=(1, 2))


# --- Markdown cells ----------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, right: Sequence[int]) -> list[str]:
    rule = ["---:" if i in right else "---" for i in range(len(head))]
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _plain(value: Any) -> str:
    return " ".join(str(value).split())


def _text(value: Any) -> str:
    """A cell's text: one line, Markdown table and HTML characters escaped."""
    s = _plain(value)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "'")):
        s = s.replace(a, b)
    return s


def _code(value: Any) -> str:
    # facility names hold / and _ that Markdown would read as emphasis: a code span keeps them
    return "`" + _plain(value).replace("`", "'").replace("|", "\\|") + "`"


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.4g}"


def _pm(v: Any, e: Any) -> str:
    return _num(v) if e is None or v is None else f"{v:.4g} ± {e:.2g}"


def _side(s: dict[str, Any]) -> str:
    return f"{s['count']}, {_pm(s['norm'], s['sem_norm'])}"


def _utc(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return dt.datetime.fromtimestamp(float(t), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="a Markdown page of a recording for the e-log")
    p.add_argument("recording")
    p.add_argument("-o", "--output", help="write to FILE instead of stdout")
    p.set_defaults(func=_report)
