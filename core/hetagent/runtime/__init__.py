"""The node runtime (`spec/runtime.md`): run an agent's requests on this node's devices.

    program      the placed agent as plain Python nodes (no MLIR in workers)
    layout       which worker processes, on which cores, serve which ops
    engine       LocalEngine: router, admission control, control flow, retries
    worker       a worker process: deadline queue, continuous batching, executors
    executor     the interface backends' executor classes implement
    kv_format    the KV-cache exchange format in shared memory (spec/kv-format.md)
    run, report, trace, workload   `hetagent run` as functions
"""
