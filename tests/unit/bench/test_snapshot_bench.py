"""B9 (bench/snapshot_bench.py): its command line, the libvirt backup document of its floor, and
the ratios and report it prints, checked on hand-made results."""

from __future__ import annotations

import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.migration_bench import summarize  # noqa: E402
from bench.snapshot_bench import apply_fill_file, backup_xml, parse_args  # noqa: E402
from bench.snapshot_bench_figures import compute_rate, compute_ratios, format_report  # noqa: E402


def test_defaults():
    args = parse_args([])
    assert (args.count, args.parts, args.volume_mib, args.json, args.verbose) == (3, ["floor", "api"], 1024, None,
                                                                                  False)


def test_parts_and_options():
    args = parse_args(["--parts", "floor", "--count", "5", "--volume-mib", "64", "--json", "/tmp/x.json"])
    assert (args.parts, args.count, args.volume_mib, args.json) == (["floor"], 5, 64, "/tmp/x.json")


@pytest.mark.parametrize("argv", [
    pytest.param(["--parts", "floor,restore"], id="unknown-part"),
    pytest.param(["--count", "0"], id="no-sample"),
    pytest.param(["--volume-mib", "6"], id="not-a-multiple-of-the-block"),
])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "usage: bench/snapshot_bench.py" in capsys.readouterr().err


def test_backup_xml_copies_one_disk_and_excludes_the_others(tmp_path):
    root = ElementTree.fromstring(backup_xml(["vda", "vdb", "vdc"], "vdb", tmp_path / "c.qcow2.part"))
    assert root.tag == "domainbackup" and root.get("mode") == "push"
    disks = {d.get("name"): d for d in root.iter("disk")}
    assert {n: d.get("backup") for n, d in disks.items()} == {"vda": "no", "vdb": "yes", "vdc": "no"}
    assert disks["vdb"].find("target").get("file") == str(tmp_path / "c.qcow2.part")
    assert disks["vdb"].find("driver").get("type") == "qcow2"


def test_fill_file_is_the_size_asked_and_has_no_zero_block(tmp_path):
    path = apply_fill_file(tmp_path / "fill.raw", 8)
    data = path.read_bytes()
    assert len(data) == 8 * 2**20
    assert data[:4 * 2**20] == data[4 * 2**20:]  # one random block, repeated
    assert data.count(b"\0" * 512) == 0


def part(**measurements: list[float]) -> dict:
    return {m: {"samples": [{"total_s": v} for v in values],
                "summary": summarize([{"total_s": v} for v in values], ("total_s",))}
            for m, values in measurements.items()}


RESULT = {"count": 3, "volume_mib": 1024,
          "floor": {**part(online=[1.0, 2.0, 3.0], offline=[0.5, 1.0, 1.5], restore_to_running=[1.0, 1.5, 2.0]),
                    "load": {"host_cpu_pct": 50.0}},
          "api": {**part(snapshot=[3.0, 4.0, 9.0], restore=[6.0, 9.0, 12.0]), "indications": ["Online", "GuestAgent"]}}


def test_ratios_are_api_over_floor_per_quantile():
    assert compute_ratios(RESULT) == {"snapshot_online": {"p50": 2.0, "p95": 3.0},
                                      "restore_to_running": {"p50": 6.0, "p95": 6.0},
                                      "restore_vs_copy": {"p50": 9.0, "p95": 8.0}}


def test_no_ratio_without_both_parts():
    assert compute_ratios({**RESULT, "api": None}) == {}
    assert compute_ratios({k: v for k, v in RESULT.items() if k != "floor"}) == {}


@pytest.mark.parametrize("mib, seconds, rate", [(1024, 2.0, 512.0), (1024, None, None), (1024, 0.0, None)])
def test_rate(mib, seconds, rate):
    assert compute_rate(mib, seconds) == rate


def test_report_lines():
    lines = format_report(RESULT)
    assert lines[0].startswith("B9 snapshot and restore of a 1024 MiB qcow2 volume")
    (online,) = [line for line in lines if line.startswith("floor: freeze + backup-begin + thaw")]
    assert online.split()[-5:] == ["2.00", "3.00", "1.00", "3.00", "512.0"]
    (snapshot,) = [line for line in lines if line.startswith("API: VirtualMachineSnapshot create -> readyToUse")]
    assert snapshot.split()[-5:] == ["4.00", "9.00", "3.00", "9.00", "256.0"]
    assert "    snapshot indications: Online, GuestAgent" in lines
    assert "ratio snapshot_online (snapshot / online): p50 2.00, p95 3.00" in lines
    assert "ratio restore_vs_copy (restore / offline): p50 9.00, p95 8.00" in lines


def test_report_of_the_floor_alone_has_no_ratio():
    lines = format_report({k: v for k, v in RESULT.items() if k != "api"})
    assert not [line for line in lines if line.startswith(("ratio", "API"))]
    assert any(line.startswith("floor: qemu-img convert (offline copy)") for line in lines)
