"""RayEngine on a real multi-node Ray cluster, all of it on loopback.

The module runs in a network namespace of its own with only `lo` up (Ray would otherwise pick the host's interface
address), and starts one cluster for all its tests: a head node for the driver (no CPUs for workers), a node that
offers `h100: 1` and a node that offers `gaudi3: 2` — custom resources standing in for device classes. The host
CPU's prompt-side partition asks for `h100` and its decode side for `gaudi3`, so prefill and decode run on
different nodes and every KV cache crosses the object store.
"""

import ctypes
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from conftest import ROOT
from test_runtime import _options, _prepare, _requests

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Tip. In future versions of Ray:FutureWarning")  # see RayEngine

CLONE_NEWNET = 0x40000000
NODE = {"include_dashboard": False, "object_store_memory": 80 * 1024 * 1024, "node_ip_address": "127.0.0.1"}
STAND_INS = {"host-cpu:0": {"h100": 1.0}, "host-cpu:1": {"gaudi3": 1.0}}  # prompt side, decode side


def test_without_ray_the_ray_engine_is_a_clear_error():
    hide_ray = "import sys; sys.modules['ray'] = None; from hetagent.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", hide_ray, "run", "--engine", "ray"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2 and "install hetagent[ray]" in done.stderr


def test_address_without_the_ray_engine_is_an_error(cli):
    code, _, err = cli("run", "--address", "127.0.0.1:6379")
    assert code == 2 and "--engine ray" in err


def test_device_classes_map_to_ray_resources():
    from hetagent.backend import Registry
    from hetagent.runtime.layout import ray_resources

    profiles = Registry.load(["cpu", "cuda", "gaudi"])
    assert ray_resources(profiles.profile("h100-sxm")) == {"h100-sxm": 1.0, "GPU": 1.0}  # a GPU of its own
    assert ray_resources(profiles.profile("gaudi3-oam")) == {"gaudi3-oam": 1.0}


@pytest.fixture(scope="module")
def ray():
    """The `ray` module, connected to the module's cluster."""
    ray = pytest.importorskip("ray")
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(home)
        pytest.skip(f"no private network namespace for the Ray cluster: {os.strerror(ctypes.get_errno())}")
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    previous = {k: os.environ.get(k) for k in quiet}
    os.environ.update(quiet)
    from ray.cluster_utils import Cluster

    started = None
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        started = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0})
        started.add_node(**NODE, num_cpus=1, resources={"h100": 1})
        started.add_node(**NODE, num_cpus=2, resources={"gaudi3": 2})
        ray.init(address=started.address, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        if started is not None:
            started.shutdown()
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def split(registry, cache_dir, agent_files):  # noqa: F811
    prepared = _prepare(agent_files["calculator"], registry, cache_dir, partitions=2)
    return prepared, replace(prepared, workers=[replace(w, resources=STAND_INS[w.name]) for w in prepared.workers])


def _run(prepared, registry, cache_dir, requests, engine_class, hook=None, **options):  # noqa: F811
    from hetagent.runtime.run import run_prepared

    return run_prepared(prepared, requests, registry=registry, options=_options(cache_dir, **options), engine_hook=hook,
                        engine_class=engine_class)


def test_the_cluster_is_on_loopback(ray):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 3
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_prefill_and_decode_on_different_nodes_give_the_local_tokens(ray, split, registry, cache_dir):  # noqa: F811
    from hetagent.runtime.engine import LocalEngine
    from hetagent.runtime.ray_engine import RayEngine

    local, spread = split
    reference = _run(local, registry, cache_dir, _requests(3), LocalEngine)
    nodes = {}

    def where(engine):
        if not nodes:
            nodes.update({w.plan.name: engine.node_of(w.plan.name) for w in engine.workers})

    result = _run(spread, registry, cache_dir, _requests(3), RayEngine, hook=where)
    assert [r.status for r in result.records] == ["ok"] * 3
    assert [r.tokens for r in result.records] == [r.tokens for r in reference.records]
    assert [r.outputs for r in result.records] == [r.outputs for r in reference.records]
    resources = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    assert nodes["host-cpu:0"] != nodes["host-cpu:1"]
    assert "h100" in resources[nodes["host-cpu:0"]] and "gaudi3" in resources[nodes["host-cpu:1"]]
    where_ran = {o["kind"]: o["workers"] for o in result.ops}
    assert where_ran["llm.prefill"] == ["host-cpu:0"] and where_ran["llm.decode"] == ["host-cpu:1"]


def test_a_killed_actor_loses_no_request(ray, split, registry, cache_dir):  # noqa: F811
    from hetagent.runtime.ray_engine import RayEngine

    _, spread = split
    killed = []

    def kill_decoder(engine):
        decoder = next(w for w in engine.workers if w.plan.name == "host-cpu:1")
        if not killed and any(t.node.op == "llm.decode" for t in decoder.tasks.values()):
            engine.kill_worker("host-cpu:1")
            killed.append(time.monotonic())

    result = _run(spread, registry, cache_dir, _requests(4), RayEngine, hook=kill_decoder)
    assert killed, "the decode worker was never seen busy"
    assert [r.status for r in result.records] == ["ok"] * 4
    assert sum(o["retries"] for o in result.ops) >= 1


def test_pools_follow_the_offered_load_and_lose_nothing(ray, split, registry, cache_dir):  # noqa: F811
    from hetagent.runtime.engine import Request
    from hetagent.runtime.ray_engine import RayEngine
    from hetagent.runtime.replan import Expectations, OpExpectation, Replanner

    _, spread = split
    # planned: 1 request/s; prefill on the one `h100` node. The re-planner sizes a pool from the measured run time
    # scaled by busy_s / latency_s: replicas = ⌈rate · 4 · decode run time / 0.8⌉, which is 2 in the burst
    # (16/s) and 1 in the trickle (at most 2 arrivals in a 2 s window) for any decode between 13 and 200 ms (22
    # on a quiet machine, 50-100 loaded)
    expected = Expectations(1.0, 0.8, {"answer.prefill": OpExpectation(1, 0.01, 0.01),
                                       "answer.decode": OpExpectation(1, 0.0125, 0.05)})
    replanner = Replanner(expected, window_s=2.0, interval_s=0.25)
    # 16 requests/s for 3 s, then a trickle: whether the added replica (a Ray actor, ~3 s to start on an idle
    # 2-core machine, far longer under load) is up before the burst ends is timing, not this test's concern — the
    # next test pins that down; this one checks the decisions and that scaling up and down loses nothing
    burst = [Request(i, {"query": f"burst {i}: 2 + {i}"}, i / 16, seed=i) for i in range(48)]
    trickle = [Request(48 + i, {"query": f"trickle {i}"}, 6.5 + 1.5 * i, seed=i) for i in range(3)]  # 0.67/s
    sizes = []

    def control(engine):
        replanner.tick(engine)
        sizes.append(len(engine.pools()["host-cpu:1"]))

    # admission "limit": on a loaded machine the SLA predictor would turn burst requests away, which is refusal,
    # not loss, but not what this test is about
    result = _run(spread, registry, cache_dir, burst + trickle, RayEngine, hook=control, admission="limit",
                  max_inflight=512)
    assert [r.status for r in result.records] == ["ok"] * 51, [r.error for r in result.records if r.error]
    # up to the gaudi3 node's 2 in the burst, back to 1 in the trickle (in between, on a loaded machine, measured
    # run times can swing a decision or two more); the one `h100` always holds its one prefill worker
    replicas = [d.replicas for d in replanner.decisions]
    assert replicas[0] == {"host-cpu:0": 1, "host-cpu:1": 2} and replicas[-1] == {"host-cpu:0": 1, "host-cpu:1": 1}
    assert all(r["host-cpu:0"] == 1 for r in replicas), replicas
    assert max(sizes) == 2 and sizes[-1] == 1


def test_an_added_replica_takes_part_of_the_load(ray, split, registry, cache_dir):  # noqa: F811
    from hetagent.runtime.engine import Request
    from hetagent.runtime.ray_engine import RayEngine

    _, spread = split
    started = []

    def scale_up_and_wait(engine):  # the first tick comes before the requests arrive (at 0.5 s)
        if started:
            return
        engine.scale("host-cpu:1", 2)
        limit = time.monotonic() + 180
        while not all(w.ready for w in engine.workers):
            assert time.monotonic() < limit, "the added replica did not start within 180 s"
            engine.poll(0.5)
        started.append(engine.pools()["host-cpu:1"])

    # eight requests at once: each decode (tens of steps) outlasts a prefill, so the second decode finds the first
    # worker busy and the least-loaded choice is the replica
    requests = [Request(i, {"query": f"together {i}: 3 * {i}"}, 0.5, seed=i) for i in range(8)]
    result = _run(spread, registry, cache_dir, requests, RayEngine, hook=scale_up_and_wait)
    assert started == [["host-cpu:1", "host-cpu:1#1"]]
    assert [r.status for r in result.records] == ["ok"] * 8, [r.error for r in result.records if r.error]
    decoders = next(o["workers"] for o in result.ops if o["kind"] == "llm.decode")
    assert decoders == ["host-cpu:1", "host-cpu:1#1"]


def test_capacity_and_bad_placements_are_clear(ray, split, registry, cache_dir):  # noqa: F811
    from hetagent.errors import HetagentError
    from hetagent.runtime.ray_engine import RayEngine

    _, spread = split
    nowhere = [replace(w, resources={"mi300x": 1.0}) for w in spread.workers]
    with pytest.raises(HetagentError, match=r"needs Ray resources \{CPU: 1, mi300x: 1\}.*--resources '\{\"mi300x\": 1\}'"):
        RayEngine(spread.program, nowhere, _options(cache_dir), kernels_of=spread.kernels_of)
    with RayEngine(spread.program, spread.workers, _options(cache_dir),
                   kernels_of=spread.kernels_of) as engine:
        assert (engine.capacity("host-cpu:0"), engine.capacity("host-cpu:1")) == (1, 2)  # h100: 1; gaudi3: 2
        with pytest.raises(HetagentError, match=r"the pools: host-cpu:0 \(1 to 1\), host-cpu:1 \(1 to 2\)"):
            engine.scale("host-cpu:0", 2)
        with pytest.raises(HetagentError, match="cannot scale 'gpu-7'"):
            engine.scale("gpu-7", 1)
