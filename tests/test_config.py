"""Configuration: the demo validates, errors are one line naming file and key, schema in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from shotwatch.cli import main
from shotwatch.commands.config_cmd import schema_json
from shotwatch.schemas import Config, ConfigError, load_config, parse_config

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_demo_is_what_example_prints(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "example"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "demo.toml"
    path.write_text(text)
    assert load_config(path) == load_config(None)
    cfg = load_config(None)
    assert cfg.source.kind == "sim" and cfg.i0 and cfg.scan and cfg.pump_probe
    assert {r.name for r in cfg.roi} == {"bragg", "background"}


def test_schema_file_in_sync() -> None:
    # fixtures/config.schema.json is the published schema; regenerate with
    # `shotwatch config schema > fixtures/config.schema.json` when the models change.
    assert json.loads((FIXTURES / "config.schema.json").read_text()) == json.loads(schema_json())


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("[i0]\nname='a'\nmin=-1\n", "i0.min", "greater than 0"),
        ("[i0]\nname='a'\nmin=2\nmax=1\n", "i0", "max >= min"),
        ("[source]\nrate=-1\n", "source.rate", "greater than or equal to 0"),
        ("[source]\nkind='sim'\nbogus=1\n", "source.bogus", "unknown key"),
        ("[source]\nkind='nope'\n", "source", "one of"),
        ("[[roi]]\nname='a b'\ndetector='d'\nx=[1,2]\ny=[3,4]\n", "roi[0].name", "pattern"),
        ("[[roi]]\nname='a'\ndetector='d'\nx=[2,2]\ny=[3,4]\n", "roi[0]", "x0 < x1"),
        ("[[veto]]\nname='v'\n[[veto]]\nname='v'\n", "veto", "unique names"),
        ("[scan]\nname='s'\nedges=[1.0]\n", "scan.edges", "at least 2 edges"),
        ("[scan]\nname='s'\nedges={start=1, stop=0, count=3}\n", "scan.edges", "stop > start"),
        ("[pump_probe]\nmode='tag-modulo'\ncycle=2\non=[3]\n", "pump_probe", "below cycle"),
        ("[record]\nframes_every=-1\n", "record.frames_every", "greater than or equal to 0"),
        ("[source\n", "", "valid TOML"),
    ],
)
def test_bad_config_is_one_line(tmp_path: Path, text: str, where: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {where}"), msg
    assert expected in msg


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"source": {"kind": "epics"}}, "c.toml: source.kind: expected one of 'sim', "),
        ({"source": {"kind": 3}}, "c.toml: source.kind: expected one of 'sim', "),
        ({"pump_probe": {"mode": "always"}}, "c.toml: pump_probe.mode: expected one of 'tag-modulo', "),
        ({"pump_probe": {"cycle": 2}}, "c.toml: pump_probe.mode: expected a value saying which kind, found none"),
        ({"source": {"kind": "replay"}}, "c.toml: source.path: expected a value, found none"),
        ({"pump_probe": {"mode": "point", "name": "p"}}, "c.toml: pump_probe.threshold: expected a value"),
    ],
)
def test_source_kind_error_names_source_kind(data: dict[str, Any], line: str) -> None:
    """Issue 7, item 10: the key of a discriminated union's tag is named, the branch never is."""
    with pytest.raises(ConfigError) as err:
        parse_config(data, origin="c.toml")
    assert str(err.value).startswith(line), str(err.value)
    found = next(iter(data.values())).get("kind", next(iter(data.values())).get("mode"))
    if line.endswith(", ") and found is not None:
        assert str(err.value).endswith(f"found {found!r}")


def test_every_union_branch_is_left_out_of_error_paths() -> None:
    """The branch names pydantic puts into paths come from the schema, not from a list kept by hand."""
    from shotwatch.schemas.loading import _BRANCHES

    kinds = {m.model_fields["kind"].default for m in get_args(Config.model_fields["source"].annotation)}
    assert kinds <= _BRANCHES and {"tag-modulo", "point"} <= _BRANCHES


def test_check_exit_code_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[source]\nrate='fast'\n")
    proc = subprocess.run([sys.executable, "-m", "shotwatch", "config", "check", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"shotwatch: error: {path}: source.rate: expected")


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        cfg.record = cfg.record  # type: ignore[misc]
