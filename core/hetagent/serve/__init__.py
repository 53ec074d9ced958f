"""`hetagent serve`: an agent behind an OpenAI-compatible HTTP API (`spec/serve.md`).

    service    the engine, owned by one background thread, fed by concurrent HTTP requests
    metrics    Prometheus metrics: per-op and per-request latency, SLA attainment, queue depths, $/request
    api        the FastAPI app: /v1/chat/completions (streamed or not), /v1/models, /health, /metrics

FastAPI, uvicorn and prometheus_client (the `hetagent[serve]` extra) are imported only by these modules, which
only `hetagent serve` imports.
"""
