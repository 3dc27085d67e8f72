"""The one-line row's pure parts as strings: forms, choosers, the analysis fields and what they
send, and the text forms of the correlation and histogram views."""

from __future__ import annotations

import numpy as np
import pytest

from shotwatch.console.analysisform import FormError, analysis_fields, analysis_sections
from shotwatch.console.lineform import (
    Chooser,
    Field,
    FormState,
    chooser_key,
    form_key,
    form_page,
    render_form,
)
from shotwatch.console.lineform import render_chooser as chooser_text
from shotwatch.console.views import Bounds, Pair, bounds, corr_line, hist_line
from shotwatch.reducers.hist import HistSeries
from shotwatch.schemas import Config, load_config, parse_config


def keys(state: FormState, *presses: str) -> FormState:
    for k in presses:
        state, _ = form_key(state, k, k if len(k) == 1 else None)
    return state


def test_form_keys_replace_then_edit_with_a_cursor() -> None:
    st = FormState.start([Field("a", "a", "0.05"), Field("b", "b", "")])
    assert keys(st, "1").values() == {"a": "1", "b": ""}  # the selected value is replaced
    assert keys(st, "left", "left", "9").values()["a"] == "0.905"  # a cursor key keeps it
    assert keys(st, "end", "backspace", "home", "delete").values()["a"] == ".0"
    assert keys(st, "tab", "7", "shift+tab", "2").values() == {"a": "2", "b": "7"}
    assert keys(st, "tab", "tab").active == 0 and keys(st, "down").active == 1 == keys(st, "up").active  # wraps
    for key, outcome in (("enter", "submit"), ("escape", "cancel"), ("f5", "ignored")):
        assert form_key(st, key, None)[1] == outcome


def test_form_renders_the_active_page_with_the_value_selected_or_the_cursor() -> None:
    fields = [Field(f"k{i}", f"f{i}", str(i), 6) for i in range(8)]
    st = FormState.start(fields)
    text = render_form(st, 60, "form")
    assert text.plain == "form 1/3  f0 [0     ]  f1 [1     ]  f2 [2     ]"
    assert [(text.plain[s.start:s.end], s.style) for s in text.spans] == [("0     ", "reverse")]
    edited = render_form(keys(st, "left"), 60, "form")
    assert [text.plain[s.start:s.end] for s in edited.spans] == ["     "]  # the cursor cell plain
    assert form_page(keys(st, "tab", "tab", "tab"), 60, "form")[:2] == (2, 3)
    long = FormState.start([Field("e", "expr", "a + b + c + d + e + f", 8)])
    assert render_form(keys(long, "end"), 40, "x").plain == "x  expr [… e + f ]"


def test_focus_follows_an_errors_key() -> None:
    st = FormState.start([Field("i0.min", "a"), Field("i0.max", "b"), Field("veto[0].min", "c")])
    assert st.focus("veto[0].min").active == 2
    assert st.focus("veto").active == 2  # a section: its first field
    assert keys(st, "tab").focus("i0").active == 1  # the section's field the operator was on
    assert st.focus("scan.edges").active == 0  # not a field: stays


def test_chooser_filters_moves_and_picks() -> None:
    items = ("I0", "bragg", "background", "xfel_bl_3_tc_bm_1_pd/charge", "xfel_bl_3_tc_bm_2_pd/charge")
    ch = Chooser.start(items, "bragg")
    assert ch.picked == "bragg"
    for k in "ba":
        ch, _ = chooser_key(ch, k, k)
    assert ch.matches == ("background",) and ch.picked == "background"  # "ba" in "background" only
    ch, _ = chooser_key(Chooser.start(items), "c", "c")
    assert ch.matches == ("background", "xfel_bl_3_tc_bm_1_pd/charge", "xfel_bl_3_tc_bm_2_pd/charge")
    ch, _ = chooser_key(ch, "down", None)
    assert chooser_key(ch, "enter", None) == (ch, "submit") and ch.picked == "xfel_bl_3_tc_bm_1_pd/charge"
    text = chooser_text(ch, 100, "y")
    assert text.plain == "y: c▏  background  xfel_bl_3_tc_bm_1_pd/charge  xfel_bl_3_tc_bm_2_pd/charge"
    assert [text.plain[s.start:s.end] for s in text.spans] == ["xfel_bl_3_tc_bm_1_pd/charge"]
    assert chooser_text(ch, 60, "y").plain == "y: c▏  …  xfel_bl_3_tc_bm_1_pd/charge  … (+1)"  # the picked in sight
    none, _ = chooser_key(ch, "q", "q")
    assert none.picked is None and chooser_key(none, "enter", None)[1] == "ignored"
    assert "no match" in chooser_text(none, 60, "y").plain


DEMO = load_config(None)


def test_the_analysis_form_sends_exactly_the_analysis_in_force_when_untouched() -> None:
    fields = analysis_fields(DEMO)
    assert [f.key for f in fields][:2] == ["i0.min", "i0.max"] and fields[0].value == "0.05"
    assert {"scan.edges", "pump_probe.cycle", "pump_probe.on", "calibration.threshold_ev", "channel[+]"} <= {
        f.key for f in fields}
    sections = analysis_sections(DEMO, FormState.start(fields).values())
    again = parse_config(sections, origin="t")
    for name in ("i0", "veto", "scan", "pump_probe", "calibration", "alarm", "channel"):
        assert getattr(again, name) == getattr(DEMO, name), name
    assert set(sections) <= {"calibration", "mask", "alias", "channel", "alarm", "i0", "veto", "scan", "pump_probe"}


def test_the_analysis_form_reads_every_field_and_adds_a_channel() -> None:
    cfg = parse_config({"i0": {"name": "p", "min": 1.0}, "veto": [{"name": "q", "max": 3.0}],
                        "channel": [{"name": "c1", "expr": "p * 2"}],
                        "scan": {"name": "s", "edges": [0.0, 1.0, 4.0]},
                        "pump_probe": {"mode": "point", "name": "laser", "threshold": 0.5}}, origin="t")
    values = FormState.start(analysis_fields(cfg)).values()
    values.update({"i0.max": "9", "veto[0].min": "-1", "scan.edges": "0:10:5", "scan.offset": "-2.5",
                   "pump_probe.threshold": "0.25", "calibration.photon_energy_ev": "9000",
                   "channel[0].expr": "p / 2", "channel[+]": "c2 = c1 + 1"})
    out = analysis_sections(cfg, values)
    assert out["i0"] == {"name": "p", "min": 1.0, "max": 9.0} and out["veto"][0] == {"name": "q", "min": -1.0, "max": 3.0}
    assert out["scan"]["edges"] == {"start": 0.0, "stop": 10.0, "count": 5} and out["scan"]["offset"] == -2.5
    assert out["pump_probe"]["threshold"] == 0.25 and out["calibration"]["photon_energy_ev"] == 9000.0
    assert out["channel"] == [{"name": "c1", "expr": "p / 2"}, {"name": "c2", "expr": "c1 + 1"}]
    values["scan.edges"] = "1 2 4"
    assert analysis_sections(cfg, values)["scan"]["edges"] == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(("key", "text", "error"), [
    ("i0.min", "", "i0.min: expected a number, found nothing"),
    ("i0.min", "0", "i0.min: expected greater than 0, found 0.0"),
    ("i0.min", "abc", "i0.min: expected a number, found 'abc'"),
    ("veto[1].min", "nan", "veto[1].min: expected a finite number, found nan"),
    ("scan.edges", "3:1:4", "scan.edges: expected stop > start (3.0), found stop = 1.0"),
    ("scan.edges", "0:1", "scan.edges: expected start:stop:count, found '0:1'"),
    ("scan.edges", "1 0", "scan.edges: expected strictly increasing edges, found [1.0, 0.0]"),
    ("pump_probe.on", "5", "pump_probe: expected residues below cycle (4), found [5]"),
    ("pump_probe.cycle", "2 3", "pump_probe.cycle: expected one whole number, found '2 3'"),
    ("channel[+]", "x + 1", "channel[+]: expected name = expression, found 'x + 1'"),
    ("channel[+]", "i0 = 2", "channel[+]: expected a name other than"),
])
def test_what_cannot_be_sent_is_one_line_naming_the_field(key: str, text: str, error: str) -> None:
    values = FormState.start(analysis_fields(DEMO)).values()
    with pytest.raises(FormError) as exc:
        analysis_sections(DEMO, {**values, key: text})
    assert str(exc.value).startswith(error) and "\n" not in str(exc.value)
    assert exc.value.key.split(".")[0] in key


def test_bounds_of_i0_and_of_a_veto_through_an_alias() -> None:
    cfg = Config.model_validate({"i0": {"name": "pd", "min": 0.1, "max": 2.0}, "alias": {"beam": "bs"},
                                 "veto": [{"name": "beam", "min": 0.5}]})
    assert bounds(cfg, "I0") == [Bounds("I0 window", 0.1, 2.0)] and bounds(cfg, "pd") == bounds(cfg, "I0")
    assert bounds(cfg, "bs") == [Bounds("veto", 0.5, None)] == bounds(cfg, "beam")
    assert bounds(cfg, "other") == [] and bounds(None, "I0") == []


def test_the_low_bandwidth_lines() -> None:
    series = HistSeries(np.linspace(0, 1, 11), np.array([0, 1, 2, 8, 8, 4, 2, 1, 0, 0], np.int64), under=3)
    line = hist_line("I0", series, [Bounds("I0 window", 0.3, None)], 120)
    assert line == "I0  ▁▂│██▄▂▁   0…1 (under 3, over 0) · I0 window [0.3, ∞]: 23 of 29"
    assert hist_line("I0", None, [], 80) == "I0: no value yet — h chooses another"
    x = np.arange(10.0)
    p = Pair("I0", "bragg", x, 3 * x + 1, np.arange(10) % 2 == 0)
    assert corr_line(p, 120) == "bragg vs I0: n 10 (accepted 5) · r 1.000 · slope 3"
    assert corr_line(p, 20) == "bragg vs I0: n 10 (…"
