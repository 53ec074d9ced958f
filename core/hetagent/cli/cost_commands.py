"""`hetagent estimate`, `hetagent calibrate`, `hetagent tco`: the cost model and TCO from the command line."""

from __future__ import annotations

import time

from hetagent.cli.output import add_json_flag, console, print_json, print_table


def register(commands) -> None:
    estimate = commands.add_parser("estimate", help="estimate the time of a GEMM or of serving an LLM on a device")
    kinds = estimate.add_subparsers(dest="what", metavar="WHAT", required=True)

    p = kinds.add_parser("gemm", help="one (M×K)·(K×N) GEMM, optionally split over --tp devices")
    p.add_argument("--device", required=True, help="device profile id (see `hetagent devices`)")
    for dim in ("m", "k", "n"):
        p.add_argument(f"--{dim}", type=int, required=True)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree: K is split, the output all-reduced")
    add_json_flag(p)
    p.set_defaults(handler=cmd_estimate_gemm)

    p = kinds.add_parser("llm", help="prefill, TTFT, time between tokens, memory of serving a model")
    p.add_argument("--model", required=True, help="a built-in model id, or a Hugging Face config.json (or its directory)")
    p.add_argument("--device", required=True)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-tokens", type=int, required=True)
    p.add_argument("--output-tokens", type=int, required=True)
    add_json_flag(p)
    p.set_defaults(handler=cmd_estimate_llm)

    p = commands.add_parser("calibrate", help="time a backend's real kernels on this node and fit its efficiency curves")
    p.add_argument("--backend", required=True, help="backend to calibrate (cpu)")
    p.add_argument("--quick", action="store_true", help="fewer, smaller kernels (a few seconds; for tests)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_calibrate)

    p = commands.add_parser("tco", help="run a TCO study: every prefill::decode device pair (examples/studies/paper.toml)")
    p.add_argument("study", help="study TOML file")
    p.add_argument("--pricebook", help="price book TOML replacing the study's")
    p.add_argument("--devices", help="comma-separated device ids replacing the study's")
    p.add_argument("--chart", default=None, help="PNG to write the bar chart to (default: <study name>-tco.png here)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_tco)


def _cost_model(args):
    from hetagent.cost import RooflineModel
    from hetagent.plugins.registry import Registry, requested_backends

    return RooflineModel.from_registry(Registry.load(requested_backends(args.backends)))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.3f}"


def cmd_estimate_gemm(args) -> int:
    from hetagent.cost.gemm import estimate_gemm

    model = _cost_model(args)
    result = estimate_gemm(model, args.device, args.m, args.k, args.n, args.dtype, args.tp)
    data = result.to_dict()
    if args.json:
        print_json(data)
        return 0
    print_table(
        f"GEMM {args.m}×{args.k}×{args.n} {args.dtype} on {args.device} (tp {args.tp})",
        ["", ""],
        [
            ["latency ms", _ms(data["latency_s"])],
            ["bound", data["bound"]],
            ["compute ms", _ms(data["compute_s"])],
            ["memory ms", _ms(data["memory_s"])],
            ["kernel floor ms", _ms(data["fixed_s"])],
            ["all-reduce ms", _ms(data["allreduce_s"])],
            ["achieved TFLOPS", data["achieved_tflops"]],
            ["efficiency from", data["basis"]],
        ],
    )
    return 0


def cmd_estimate_llm(args) -> int:
    from hetagent.cost import estimate_llm, require_some_fit
    from hetagent.cost.llm import TP_DEGREES, memory_use
    from hetagent.models.catalog import resolve

    model = _cost_model(args)
    card = resolve(args.model)
    profile = model.profile(args.device)
    require_some_fit(card, model, args.device, args.dtype)
    result = estimate_llm(model, card, args.device, dtype=args.dtype, tp=args.tp, batch=args.batch,
                          input_tokens=args.input_tokens, output_tokens=args.output_tokens)
    data = result.to_dict()
    if not result.memory.fits:
        context = args.input_tokens + args.output_tokens
        fitting = [tp for tp in TP_DEGREES if card.num_heads % tp == 0
                   and memory_use(card, profile.memory_gb, args.dtype, tp, args.batch, context, args.input_tokens).fits]
        data["hint"] = f"fits from tp {fitting[0]}" if fitting else "fits at no TP degree with this batch; lower --batch"
    if args.json:
        print_json(data)
        return 0
    memory = result.memory
    rows = [
        ["prefill ms", _ms(result.prefill.seconds), result.prefill.bound],
        ["TTFT ms", _ms(result.ttft_s), ""],
        ["time between tokens ms", _ms(result.tbt_s) if result.decode_step else "-", data["decode_bound"] or ""],
        ["request end-to-end s", f"{result.request_s:,.3f}", result.bound],
        ["output tokens/s (all tp devices)", result.output_tokens_per_s, ""],
        ["memory per device GB", f"{memory.total_gb:,.2f} of {memory.usable_gb:,.1f} usable",
         f"weights {memory.weights_gb:,.2f} + KV {memory.kv_cache_gb:,.2f} + activations {memory.activations_gb:,.2f}"],
        ["fits", "yes" if memory.fits else "no", data.get("hint", "")],
    ]
    print_table(
        f"{card.name} {args.dtype} on {args.device} × tp {args.tp}, batch {args.batch}, "
        f"{args.input_tokens} in / {args.output_tokens} out (efficiency: {model.basis(args.device)})",
        ["", "value", "bound / detail"],
        rows,
    )
    return 0


def cmd_calibrate(args) -> int:
    from rich.progress import Progress

    from hetagent.cost.calibrate import calibrate

    start = time.perf_counter()
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task(f"calibrating {args.backend}", total=None)

        def advance(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=f"calibrating {args.backend}: {what}")

        report = calibrate(args.backend, quick=args.quick, progress=advance)
    elapsed = time.perf_counter() - start
    if args.json:
        print_json({**report.to_dict(), "seconds": elapsed})
        return 0
    print_table(
        f"calibration of {report.calibration.device} ({args.backend}) in {elapsed:.1f} s → {report.path}",
        ["op class", "dtype", "points", "efficiency range", "floor µs"],
        [
            [c.op_class, c.dtype, len(c.points), f"{min(e for _, e in c.points):.3f} – {max(e for _, e in c.points):.3f}",
             f"{report.calibration.fixed_s.get(c.op_class, 0.0) * 1e6:.1f}" if c.op_class in report.calibration.fixed_s else "-"]
            for c in report.calibration.curves
        ],
    )
    print_table(
        "predicted vs measured on this host",
        ["check", "measured ms", "predicted ms", "error"],
        [[c.name, _ms(c.measured_s), _ms(c.predicted_s), f"{c.error:+.1%}"] for c in report.checks],
    )
    return 0


def cmd_tco(args) -> int:
    from rich.progress import Progress

    from hetagent.planner.tco_study import load_study, run_study, scenario_count

    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    study = load_study(args.study, pricebook=args.pricebook, devices=devices)
    model = _cost_model(args)
    start = time.perf_counter()
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task(f"study {study.name}", total=scenario_count(study))
        outcome = run_study(study, model, progress=lambda n: progress.advance(task, n))
    chart = _chart_path(args, study.name)
    from hetagent.planner.tco_chart import write_chart

    write_chart(outcome, chart)
    if args.json:
        print_json({"study": study.name, "pricebook": study.pricebook.name, "chart": str(chart),
                    "results": [_result_dict(r) for r in outcome.results]})
        return 0
    for model_name, dtype, workload, sla in outcome.scenarios():
        results = [r for r in outcome.results if (r.model, r.dtype, r.workload, r.sla) == (model_name, dtype, workload, sla)]
        results.sort(key=lambda r: -(r.benefit or 0.0))
        print_table(
            f"{model_name} {dtype}, {workload.name} ({workload.input_tokens} in / {workload.output_tokens} out), "
            f"{sla.name} SLA{_sla_text(sla)}; price book {study.pricebook.name}",
            ["prefill::decode", "prefill tp×batch", "decode tp×batch", "P:D devices", "TTFT ms", "TBT ms",
             "$/M tokens", "$/request", f"benefit vs {'::'.join(study.baseline)}", "binding constraint"],
            [_result_row(r) for r in results],
        )
    console.print(f"{len(outcome.results)} pair results in {time.perf_counter() - start:.1f} s; chart: {chart}", highlight=False)
    return 0


def _chart_path(args, study_name: str):
    from pathlib import Path

    return Path(args.chart) if args.chart else Path(f"{study_name}-tco.png")


def _sla_text(sla) -> str:
    limits = [f"{name} ≤ {value * 1000:g} ms" for name, value in (("TTFT", sla.ttft_s), ("TBT", sla.tbt_s)) if value]
    return f" ({', '.join(limits)})" if limits else " (no latency limit)"


def _result_row(r) -> list:
    if r.prefill is None or r.decode is None:
        return [r.pair, "-", "-", "-", "-", "-", "-", "-", "infeasible", r.infeasible]
    return [
        r.pair,
        f"{r.prefill.tp}×{r.prefill.batch}",
        f"{r.decode.tp}×{r.decode.batch}",
        f"1 : {1 / r.device_ratio:.2f}" if r.device_ratio else "-",
        _ms(r.prefill.latency_s),
        _ms(r.decode.latency_s),
        f"{r.usd_per_m_tokens:.4f}",
        f"{r.usd_per_request:.6f}",
        f"{r.benefit:.2f}×" if r.benefit else "-",
        f"prefill: {r.prefill.binding}; decode: {r.decode.binding}",
    ]


def _result_dict(r) -> dict:
    import dataclasses

    return {
        "model": r.model, "dtype": r.dtype, "workload": dataclasses.asdict(r.workload), "sla": dataclasses.asdict(r.sla),
        "prefill_device": r.prefill_device, "decode_device": r.decode_device,
        "prefill": dataclasses.asdict(r.prefill) if r.prefill else None,
        "decode": dataclasses.asdict(r.decode) if r.decode else None,
        "prefill_per_decode_device": r.device_ratio, "usd_per_request": r.usd_per_request,
        "usd_per_m_tokens": r.usd_per_m_tokens, "benefit": r.benefit, "infeasible": r.infeasible or None,
    }
