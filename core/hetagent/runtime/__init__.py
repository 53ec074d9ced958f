"""The node runtime (`spec/runtime.md`): run an agent's requests on this node's devices.

    program      the placed agent as plain Python nodes (no MLIR in workers)
    layout       which worker processes, on which cores, serve which ops
    engine       LocalEngine: router, admission control, control flow, retries, pools; worker processes
    ray_engine   RayEngine: the same router over Ray actors (extra hetagent[ray]); ray_worker: the actor
    replan       the slow path: resize pools when measured rate and latencies drift from the plan
    worker       the worker loop: deadline queue, continuous batching, executors
    executor     the interface backends' executor classes implement
    kv_format    the KV-cache exchange format (spec/kv-format.md): shared memory, object-store buffers
    run, report, trace, workload   `hetagent run` as functions
"""
