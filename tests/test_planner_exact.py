"""The MILP is exact: on random small instances its optimum equals exhaustive enumeration's.

The enumeration is written here independently of the solver (numpy over every choice of options): longest path
with transfer times on the DAG, dedicated devices summed, pooled classes rounded up, device limits, conflicts, a
hard or soft (penalised) end-to-end SLA.
"""

import itertools
import math

import numpy as np
import pytest

from hetagent.planner.instance import Conflict, DeviceClass, Edge, Instance, Option
from hetagent.planner.milp import Infeasible, solve

INSTANCES = 240
MAX_CHOICES = 40_000


def random_instance(rng: np.random.Generator) -> Instance:
    n_classes = int(rng.integers(1, 5))
    classes = {}
    for j in range(n_classes):
        pooled = bool(rng.random() < 0.3)
        limit = int(rng.integers(1, 6)) if rng.random() < 0.4 else None
        classes[f"c{j}"] = DeviceClass(f"c{j}", float(rng.uniform(0.1, 5.0)), pooled, limit)
    names = list(classes)
    while True:
        n_tasks = int(rng.integers(2, 9))
        per_task = [int(rng.integers(1, 3)) for _ in range(n_tasks)]
        options = []
        for task in range(n_tasks):
            allowed = [c for c in names if rng.random() < 0.8] or [names[0]]
            for c in allowed:
                for _ in range(per_task[task]):
                    tp = int(rng.choice([1, 2, 4]))
                    groups = int(rng.integers(1, 3))
                    options.append(Option(
                        task, c, latency_s=float(rng.uniform(0.01, 1.0)),
                        devices=0 if classes[c].pooled else tp * groups,
                        demand=float(rng.uniform(0.05, 1.5)) if classes[c].pooled else 0.0,
                        penalty_usd_per_hour=float(rng.uniform(0, 1)) if rng.random() < 0.2 else 0.0, tp=tp))
        counts = [sum(1 for o in options if o.task == t) for t in range(n_tasks)]
        if math.prod(counts) <= MAX_CHOICES:
            break
    edges = []
    for v in range(1, n_tasks):
        for u in range(v):
            if rng.random() < 0.35 or (u == v - 1 and rng.random() < 0.5):
                transfer = {}
                if rng.random() < 0.6:
                    for o, option in enumerate(options):
                        if option.task == u:
                            for c in names:
                                if c != option.device or rng.random() < 0.2:
                                    transfer[(o, c)] = float(rng.uniform(0.0, 0.3)) / option.tp
                edges.append(Edge(u, v, transfer))
    conflicts = []
    if rng.random() < 0.3 and edges:
        edge = edges[int(rng.integers(len(edges)))]
        u_options = [o for o, option in enumerate(options) if option.task == edge.src]
        conflicts.append(Conflict(int(rng.choice(u_options)), edge.dst, str(rng.choice(names))))
    sla = float(rng.uniform(0.3, 3.0)) if rng.random() < 0.8 else None
    penalty = float(rng.uniform(0.5, 20.0)) if sla is not None and rng.random() < 0.4 else None
    return Instance([f"t{i}" for i in range(n_tasks)], options, edges, classes, sla, penalty, conflicts)


def enumerate_optimum(instance: Instance) -> float | None:
    """Minimum objective over every choice of options (None: none is feasible), vectorised over choices."""
    per_task = [instance.by_task[t] for t in range(len(instance.tasks))]
    choices = np.array(list(itertools.product(*per_task)), dtype=np.int64)  # (M, tasks)
    latency = np.array([o.latency_s for o in instance.options])[choices]
    names = list(instance.classes)
    class_of = np.array([names.index(o.device) for o in instance.options])
    chosen_class = class_of[choices]
    feasible = np.ones(len(choices), dtype=bool)
    for c in instance.conflicts:
        feasible &= ~((choices[:, instance.options[c.option].task] == c.option) & (chosen_class[:, c.task] == names.index(c.device)))
    start = np.zeros(choices.shape, dtype=float)
    for v in range(len(instance.tasks)):  # tasks are numbered in topological order
        for edge in (e for e in instance.edges if e.dst == v):
            table = np.zeros((len(instance.options), len(names)))
            for (o, c), t in edge.transfer_s.items():
                table[o, names.index(c)] = t
            ready = start[:, edge.src] + latency[:, edge.src] + table[choices[:, edge.src], chosen_class[:, v]]
            start[:, v] = np.maximum(start[:, v], ready)
    makespan = (start + latency).max(axis=1)
    cost = np.zeros(len(choices))
    penalty = np.array([o.penalty_usd_per_hour for o in instance.options])[choices].sum(axis=1)
    for j, name in enumerate(names):
        device_class = instance.classes[name]
        on = chosen_class == j
        if device_class.pooled:
            demand = np.where(on, np.array([o.demand for o in instance.options])[choices], 0.0).sum(axis=1)
            count = np.where(on.any(axis=1), np.maximum(1, np.ceil(demand - 1e-9)), 0)
        else:
            count = np.where(on, np.array([o.devices for o in instance.options])[choices], 0).sum(axis=1)
        if device_class.max_count is not None:
            feasible &= count <= device_class.max_count
        cost += count * device_class.usd_per_hour
    if instance.sla_s is not None:
        over = np.maximum(makespan - instance.sla_s, 0.0)
        if instance.slack_penalty is None:
            feasible &= makespan <= instance.sla_s * (1 + 1e-9)
        else:
            penalty = penalty + instance.slack_penalty * over
    objective = np.where(feasible, cost + penalty, np.inf)
    best = objective.min()
    return None if math.isinf(best) else float(best)


def test_milp_matches_exhaustive_enumeration_on_random_small_instances():
    rng = np.random.default_rng(20250604)
    feasible = infeasible = 0
    for index in range(INSTANCES):
        instance = random_instance(rng)
        expected = enumerate_optimum(instance)
        try:
            solution = solve(instance)
        except Infeasible:
            assert expected is None, f"instance {index}: the MILP says infeasible, enumeration finds {expected}"
            infeasible += 1
            continue
        assert expected is not None, f"instance {index}: the MILP found {solution.objective}, enumeration nothing"
        assert solution.objective == pytest.approx(expected, rel=1e-6, abs=1e-9), f"instance {index}"
        feasible += 1
    assert feasible >= 150 and infeasible >= 5, (feasible, infeasible)  # both outcomes are exercised
