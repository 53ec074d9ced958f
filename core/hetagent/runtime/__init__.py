"""The node runtime (`spec/runtime.md`): run an agent's requests on this node's devices.

    program      the placed agent as plain Python nodes (no MLIR in workers)
    layout       which worker processes, on which cores, serve which ops
    engine       Engine: the router (admission, control flow, routing, retries, pools, accounting, snapshot)
                 over a transport; LocalEngine = Engine over worker processes
    transport    the Transport protocol; ProcessTransport: worker processes, each spoken to through a channel
    channel      framed pickles over two pipes: the messages between the router and a worker
    ray_engine   RayTransport: workers as Ray actors (extra hetagent[ray]), RayEngine; ray_worker: the actor
    replan       the slow path: resize pools when measured rate and latencies drift from the plan
    worker       the worker loop: deadline queue, continuous batching, executors
    executor     the interface backends' executor classes implement
    kv_format    the KV-cache exchange format (spec/kv-format.md): shared memory, object-store buffers
    run, report, trace, workload   `hetagent run` as functions
"""
