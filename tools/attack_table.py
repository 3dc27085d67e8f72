"""Measure what each network attack of issue 7 does to a real `shotwatch record` (a table).

    .venv/bin/python tools/attack_table.py                      # this checkout
    PYTHONPATH=/path/to/old/src .venv/bin/python tools/attack_table.py   # another version

For each attack: the recorder (demo simulator at 30 Hz) runs 8 s undisturbed, then 8 s under
the attack (which lasts 5 s), then is stopped with Ctrl-C. Printed per attack: resident
memory of the recorder's process tree before and at its peak, commits seen during the
attack, shots/s committed before and during (from the commit times: coarse, a commit lands
every 2 s), shots the simulator reported lost (reader late), the exit code and the last line
on stderr. The tests (tests/test_attacks.py) check the outcomes; this only measures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import zmq

import attack
from shotwatch.link import wire


def _hold(rp: attack.RecorderProc) -> str:
    held = attack.hold(rp.control, 1100, handshake=attack.greeting(b"DEALER"))
    time.sleep(5)
    for s in held:
        s.close()
    return f"{len(held)} held"


def _pipeline(rp: attack.RecorderProc, seconds: float, make: Callable[[int], bytes]) -> str:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(rp.control)
    sent = ok = got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(50):
            sock.send_multipart([b"", make(sent)])
            sent += 1
        while sock.poll(0):
            got += 1
            ok += wire.decode_reply(sock.recv_multipart()[1:]).ok
    while got < sent and sock.poll(3000):
        got += 1
        ok += wire.decode_reply(sock.recv_multipart()[1:]).ok
    sock.close(0)
    ctx.term()
    return f"{sent} sent, {got} answered, {ok} ok"


def _flood(rp: attack.RecorderProc) -> str:
    token, det = rp.runfile["token"], "MPCCD-1N0-M06-004"
    makers = {
        "mark": lambda i: wire.encode_request("mark", token=token, timeout=1.0, text=f"flood {i}")[0],
        "set_roi": lambda i: wire.encode_request("set_roi", token=token, timeout=1.0, name="bragg", detector=det,
                                                 x=[100 + i % 50, 140 + i % 50], y=[284, 316])[0],
        "grab": lambda i: wire.encode_request("grab", token=token, timeout=1.0, detector=det, n=10_000)[0],
    }
    return "; ".join(f"{op}: {_pipeline(rp, 5 / 3, make)}" for op, make in makers.items())


ATTACKS: dict[str, tuple[dict[str, Any], Callable[[attack.RecorderProc], Any]]] = {
    "1,100 idle connections to control, ulimit -n 1024": ({"nofile": 1024}, _hold),
    "endless multipart (60 KB parts) on control": ({}, lambda rp: f"{attack.endless_multipart(rp.control, 5) / 1e6:.0f} MB sent"),
    "endless multipart (1 KB parts) on PUB": ({}, lambda rp: f"{attack.endless_multipart(rp.publish, 5, 1000, as_type=b'SUB') / 1e6:.0f} MB sent"),
    "a 1.5 GiB frame declared on PUB": ({}, lambda rp: f"{attack.huge_frame(rp.publish, 5) / 1e6:.0f} MB sent"),
    "token holder: marks, ROI versions, grabs as fast as it can": ({}, _flood),
    "hello flood without the token": ({}, lambda rp: _pipeline(rp, 5, lambda i: wire.encode_request("hello")[0])),
}


def main() -> int:
    only = sys.argv[1:]
    for name, (kwargs, run) in ATTACKS.items():
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory(prefix="attack-") as tmp:
            rp = attack.RecorderProc(Path(tmp), **kwargs).wait_ready()
            before = rp.watch(8.0)
            during = rp.watch(8.0, lambda rp=rp, run=run: run(rp))  # type: ignore[misc]
            rc = rp.stop()
            lost = sum(int(line.split(" shots lost")[0].rsplit(" ", 1)[1])
                       for line in rp.err.splitlines() if "shots lost" in line)
            last = rp.err.strip().splitlines()[-1] if rp.err.strip() else ""
            print(f"## {name}\n  attack: {during.result}\n"
                  f"  RSS (tree) {during.rss0 / 1e6:.0f} MB -> peak {during.rss_peak / 1e6:.0f} MB "
                  f"(+{(during.rss_peak - during.rss0) / 1e6:.0f} MB)\n"
                  f"  commits during: {during.commits}\n"
                  f"  shots/s before {before.shots_per_s:.1f}, during {during.shots_per_s:.1f}; "
                  f"shots lost (reader late): {lost}\n"
                  f"  exit code {rc}; stdout: {rp.out.strip()!r}\n  last stderr line: {last!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
