"""Tier e — distributed: the fixture agent of tier d on a local Ray cluster (`RayEngine`) gives what it gives
on `LocalEngine`. Skipped when Ray or the Ray engine is not installed."""

from __future__ import annotations

import pytest

from hetagent_conformance.agents import everything_on, run


@pytest.fixture(scope="session")
def ray_engine(backend):
    backend.need_device()  # before starting a cluster
    try:
        import ray

        from hetagent.runtime.ray_engine import RayEngine
    except ImportError as exc:
        pytest.skip(f"Ray engine not available ({exc})")
    owned = not ray.is_initialized()  # a cluster the caller joined stays up
    if owned:  # a new local one ("local": never a stale cluster from /tmp/ray), on the loopback interface
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
    yield RayEngine
    if owned:
        ray.shutdown()


def test_ray_engine_matches_local_engine(backend, registry, agent, ray_engine):
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id

    local, prepared, prompts = run(backend, registry, agent, everything_on(backend))
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(backend.cache.root))
    with ray_engine(prepared.program, prepared.workers, prepared.device_of, options,
                    kernels_of=prepared.kernels_of) as engine:
        records = engine.run([Request(i, {"query": p}, 0.0, seed=i) for i, p in enumerate(prompts)])
    assert [r.status for r in records] == ["ok"] * len(prompts), [r.error for r in records]
    assert [r.outputs for r in records] == [r.outputs for r in local.records]
