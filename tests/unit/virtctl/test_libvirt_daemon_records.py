"""``virtctl down`` stops the libvirt daemons its ``up`` started (recorded in
``run/libvirt/daemons.json``) and nothing else: a record whose pid now runs another command line is
left alone. Real processes (``sleep``) stand in for the daemons; only pid and argv matter here."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

from services.virtctl import installation as inst


def test_down_stops_recorded_daemons_and_spares_a_recycled_pid(tmp_path: Path):
    layout = inst.load_layout(tmp_path / "state", 18443)
    ours = subprocess.Popen(["sleep", "61"])
    stranger = subprocess.Popen(["sleep", "62"])  # its pid is recorded under another command line
    try:
        records = {"virtlogd": inst.ProcessRecord(ours.pid, ["sleep", "61"]),
                   "libvirtd": inst.ProcessRecord(stranger.pid, ["libvirtd", "-d"])}
        path = layout.run_dir / "libvirt" / "daemons.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({n: asdict(r) for n, r in records.items()}))

        assert inst.apply_stop_libvirt_daemons(layout, timeout=5) == ["virtlogd"]
        assert ours.wait(timeout=5) == -15  # SIGTERM
        assert stranger.poll() is None
        assert not path.exists()
    finally:
        for proc in (ours, stranger):
            proc.kill()
            proc.wait()
