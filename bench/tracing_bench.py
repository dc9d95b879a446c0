"""Cost of tracing: VMIs create -> Running with tracing on and off in one run, and the per-message
cost of W3C context propagation over NATS.

Everything runs in this process on a private nats-server (as tests/integration/loop does):
virt-controller (ControllerManager), scheduler-bridge, one virt-handler on libvirt's test driver.
Rounds alternate off/on (``--rounds`` each, ``--count`` VMIs per round, created ``--interval``
apart as control_plane_bench's paced B1 scenario). With tracing on, every create carries a
traceparent (as virt-api writes it) and every span goes through a BatchSpanProcessor to the
JetStream trace store — the embedded installation's setup. Figures: wall time first create ->
all Running and the p95 of create -> Running per mode (median over rounds), their ratios on/off
(aim <= 1.10), spans per VMI; then publish -> receive per message with and without propagation
and the inject+extract cost alone. Usage::

    .venv/bin/python bench/tracing_bench.py                 # 100 VMIs, 2 rounds per mode
    .venv/bin/python bench/tracing_bench.py --count 50 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry import propagate  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from bench.control_plane_bench import make_vmi, parse, pct  # noqa: E402
from services.scheduler_bridge.service import SchedulerBridge  # noqa: E402
from services.virt_controller.manager import ControllerManager  # noqa: E402
from shared import trace_store, tracing  # noqa: E402
from shared.natsserver import NatsServer  # noqa: E402
from shared.store import ObjectStore  # noqa: E402

VMIS = "virtualmachineinstances"
from bench.control_plane_bench import NS  # noqa: E402  (make_vmi puts VMIs there)
PREFIX = "tb_"
NODE = "bench-node"
TIMEOUT = 30.0


class CountingExporter(SpanExporter):
    """Counts exported spans (beside the JetStream exporter) for the spans-per-VMI figure."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans):
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def start_node(store: ObjectStore, directory: Path):
    from services.virt_handler.agent import AgentConfig, VmiAgent
    from services.virt_handler.hypervisor import Hypervisor
    from services.virt_handler.node import NodeHeartbeat
    from services.virt_handler.simulated_node import apply_test_node_file

    uri = apply_test_node_file(directory / "host.xml", cpus=256, memory_bytes=256 * 2**30)
    hypervisor = Hypervisor(uri)
    await hypervisor.open()
    heartbeat = NodeHeartbeat(store, NODE, hypervisor.node_info, interval=2.0)
    await heartbeat.register()
    beat = asyncio.create_task(heartbeat.run())
    agent = VmiAgent(store, hypervisor, AgentConfig(node_name=NODE, state_dir=directory / "handler",
                                                    domain_type="test"), bus=store.bus)
    await agent.start()
    return hypervisor, beat, agent


async def one_round(store: ObjectStore, label: str, count: int, interval: float, traced: bool) -> dict:
    names = [f"{label}-{i:03d}" for i in range(count)]
    wanted, running = set(names), {}
    done = asyncio.Event()

    async def watch() -> None:
        async for event in store.watch(VMIS, NS):
            obj = event.object
            name = obj["metadata"]["name"]
            if event.type != "DELETED" and name in wanted and (obj.get("status") or {}).get("phase") == "Running":
                running[name] = obj
                if len(running) == count:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    tracer = tracing.get_tracer("virt-api")
    start = time.monotonic()
    for name in names:
        vmi = make_vmi(name)
        if traced:  # what virt-api does for a POST: a SERVER span, the traceparent on the object
            with tracer.start_as_current_span("POST /apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances"):
                tracing.apply_trace_annotations(vmi)
                await store.create(VMIS, vmi)
        else:
            await store.create(VMIS, vmi)
        await asyncio.sleep(interval)
    try:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        items, _ = await store.list(VMIS, NS)
        phases = {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in items}
        raise SystemExit(f"not all VMIs Running after {TIMEOUT} s: {phases}") from None
    wall = time.monotonic() - start
    watcher.cancel()
    latencies = []
    for obj in running.values():
        stamps = {p["phase"]: parse(p["phaseTransitionTimestamp"]) for p in obj["status"]["phaseTransitionTimestamps"]}
        latencies.append(stamps["Running"] - stamps["Pending"])
    for name in names:
        await store.delete(VMIS, NS, name, grace_period_seconds=0)
    return {"wall_s": wall, "p95_s": pct(latencies, 95), "p50_s": pct(latencies, 50)}


async def message_cost(store: ObjectStore, messages: int) -> dict:
    """Publish -> receive round trips (seconds per message), context propagated or not."""
    bus = store.bus
    got: asyncio.Queue = asyncio.Queue()

    async def on_message(msg) -> None:
        got.put_nowait(msg)

    sub = await bus.subscribe("kubevirt.v1.bench.echo", cb=on_message)
    tracer = tracing.get_tracer("virt-handler")
    results = {}
    for mode in ("plain", "propagated"):
        # propagated: every message sent inside one operation's span (a PRODUCER span, the
        # traceparent header, a CONSUMER span on receipt); plain: the same messages, no span current
        outer = tracer.start_as_current_span("sync") if mode == "propagated" else contextlib.nullcontext()
        with outer:
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(messages):
                await bus.publish("kubevirt.v1.bench.echo", b"x" * 64)
                await got.get()
            results[mode] = (time.perf_counter() - start) / messages
            results[f"{mode}_cpu"] = (time.process_time() - cpu) / messages
    await sub.unsubscribe()
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span("inject"):
        start = time.perf_counter()
        for _ in range(messages):
            carrier = {}
            propagate.inject(carrier)
            propagate.extract(carrier)
        results["inject_extract"] = (time.perf_counter() - start) / messages
    return results


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tracing-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        store = await ObjectStore.connect([server.url], bucket_prefix=PREFIX, name="bench")
        manager = ControllerManager(store, "bench-ctl")
        ctl = asyncio.create_task(manager.run())
        bridge = SchedulerBridge(store, retry_interval=1.0)
        await bridge.start()
        hypervisor, beat, agent = await start_node(store, Path(tmp))
        counter = CountingExporter()
        try:
            await asyncio.sleep(2.0)  # leader election, informers
            results: dict[str, list[dict]] = {"off": [], "on": []}
            spans: list[float] = []
            for index in range(args.rounds):
                for mode in ("off", "on"):
                    if mode == "on":
                        tracing.setup("bench", exporters=[counter], env={})
                        await trace_store.attach_trace_store(store.bus, PREFIX, env={})
                    before = counter.spans
                    result = await one_round(store, f"{mode}{index}", args.count, args.interval, mode == "on")
                    if mode == "on":
                        await asyncio.to_thread(tracing.force_flush)
                        spans.append((counter.spans - before) / args.count)
                        tracing.reset()
                    results[mode].append(result)
                    print(f"round {index} tracing {mode:3}: all Running after {result['wall_s']:.2f} s  "
                          f"p50 {result['p50_s']*1000:.0f} ms  p95 {result['p95_s']*1000:.0f} ms")
                    await asyncio.sleep(1.0)  # deletions settle
            med = {m: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "p95_s", "p50_s")}
                   for m, rs in results.items()}
            print(f"\n== {args.count} VMIs create -> Running, {args.interval*1000:.0f} ms apart, "
                  f"median of {args.rounds} round(s) per mode ==")
            for mode in ("off", "on"):
                print(f"tracing {mode:3}: wall {med[mode]['wall_s']:.2f} s  p50 {med[mode]['p50_s']*1000:.0f} ms  "
                      f"p95 {med[mode]['p95_s']*1000:.0f} ms")
            print(f"spans per VMI (tracing on) {statistics.mean(spans):.1f}")
            print(f"ratio wall on/off = {med['on']['wall_s'] / med['off']['wall_s']:.3f}   "
                  f"ratio p95 on/off = {med['on']['p95_s'] / med['off']['p95_s']:.3f}   (aim <= 1.10)")

            tracing.setup("bench", env={})
            cost = await message_cost(store, args.messages)
            tracing.reset()
            print(f"\n== per-message propagation over NATS ({args.messages} publish -> receive) ==")
            print(f"plain {cost['plain']*1e6:.1f} us/msg   with PRODUCER+CONSUMER spans and traceparent "
                  f"{cost['propagated']*1e6:.1f} us/msg   extra {(cost['propagated']-cost['plain'])*1e6:.1f} us/msg")
            print(f"CPU of this process (sender and receiver): plain {cost['plain_cpu']*1e6:.1f} us/msg   "
                  f"propagated {cost['propagated_cpu']*1e6:.1f} us/msg   "
                  f"extra {(cost['propagated_cpu']-cost['plain_cpu'])*1e6:.1f} us/msg")
            print(f"inject+extract alone {cost['inject_extract']*1e6:.1f} us/msg   "
                  f"ratio propagated/plain = {cost['propagated'] / cost['plain']:.3f}")
        finally:
            tracing.reset()
            await agent.stop()
            beat.cancel()
            await bridge.stop()
            ctl.cancel()
            await asyncio.gather(ctl, beat, return_exceptions=True)
            await hypervisor.close()
            await store.close()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100, help="VMIs per round")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between creates")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode (alternating off/on)")
    parser.add_argument("--messages", type=int, default=3000, help="messages for the propagation cost")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
