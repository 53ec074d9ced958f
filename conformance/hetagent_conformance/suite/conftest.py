"""Shared fixtures of the suite: kernels built once per session, fresh random generators, the fixture agent."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from hetagent_conformance.agents import AGENT
from hetagent_conformance.kernels import MODEL, clean_source, model_function


@pytest.fixture(scope="session")
def kernel(backend):
    """kernel(function, dtype) -> (KernelRef, numpy weights in call order): built for this node's device."""
    from hetagent.models.catalog import card
    from hetagent.models.weight_names import weight_shapes
    from hetagent.backend.executor import KernelRef
    from hetagent.backend.weights import load_weights, prepare_weights

    built = {}

    def get(function: str, dtype: str):
        device = backend.need_device()
        fn = model_function(function, dtype)
        if fn not in built:
            artifact = backend.build(clean_source(fn), fn.symbol, device)
            names = tuple(weight_shapes(card(MODEL)))
            weights = load_weights(MODEL, prepare_weights(MODEL, dtype, model_dir=None, cache_dir=backend.cache.root))
            built[fn] = (KernelRef(fn.symbol, str(artifact), asdict(fn), names), [weights[n] for n in names])
        return built[fn]

    return get


@pytest.fixture
def rng(request):
    """Fresh random inputs on every run, the seed reported so a failure can be replayed."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    path = tmp_path_factory.mktemp("agent") / "conformance_chat.mlir"
    path.write_text(AGENT)
    return path


@pytest.fixture(scope="session")
def registry(backend):
    """The backend with the reference backend (the one that provides the host device) beside it."""
    from hetagent.backend import Registry

    reference = backend.reference
    return backend.registry if backend.name == reference else Registry.load([backend.name, reference])
