"""`hetagent estimate`, `hetagent calibrate`, `hetagent tco`: the cost model and TCO from the command line."""

from __future__ import annotations

import time
from pathlib import Path

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

    p = kinds.add_parser("llm", help="prefill, TTFT, time between tokens, memory of serving a model; or its maximum "
                         "throughput (--max-throughput)")
    p.add_argument("--model", required=True, help="a built-in model id, or a Hugging Face config.json (or its directory)")
    p.add_argument("--device", help="device profile id (not with --disaggregated)")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--tp", type=int, default=None, help="TP degree (default 1; with --max-throughput: searched over 1, 2, 4, 8)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-tokens", type=int, required=True)
    p.add_argument("--output-tokens", type=int, required=True)
    p.add_argument("--max-throughput", action="store_true",
                   help="the most output tokens/s per device over TP degree and batch (prefill and decode sharing the devices)")
    p.add_argument("--ttft-ms", type=float, help="with --max-throughput: time-to-first-token limit")
    p.add_argument("--tbt-ms", type=float, help="with --max-throughput: time-between-tokens limit")
    p.add_argument("--disaggregated", metavar="P::D", help="with --max-throughput: prefill on device P, decode on device D")
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
    p.add_argument("--report", metavar="DIR", help="write a Markdown report with one chart per workload and the "
                   "paper's findings checked (holds or not, deciding input, flip value) into DIR")
    p.add_argument("--compare-pricebook", default="cloud-2026-03", metavar="BOOK",
                   help="with --report: a second price book the ranking and findings are re-priced under "
                   "(default: the shipped cloud-2026-03; a shipped name or a TOML path)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_tco)


def _cost_model(args):
    from hetagent.cost import RooflineModel
    from hetagent.backend.registry import Registry, requested_backends

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
    from hetagent.cost.phases import TP_DEGREES, memory_use
    from hetagent.errors import HetagentError
    from hetagent.models.catalog import resolve

    if args.max_throughput:
        return _max_throughput(args)
    for flag in ("ttft_ms", "tbt_ms", "disaggregated"):
        if getattr(args, flag) is not None:
            raise HetagentError(f"--{flag.replace('_', '-')} needs --max-throughput")
    if not args.device:
        raise HetagentError("--device is required (the device profile to estimate on; see `hetagent devices`)")
    args.tp = 1 if args.tp is None else args.tp
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


def _max_throughput(args) -> int:
    from hetagent.cost.phases import TP_DEGREES
    from hetagent.cost.serving import Workload, max_throughput, max_throughput_disaggregated
    from hetagent.errors import HetagentError
    from hetagent.models.catalog import resolve

    for name in ("ttft_ms", "tbt_ms"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise HetagentError(f"--{name.replace('_', '-')} = {value!r} must be a positive number of milliseconds")
    if args.tp is not None and args.tp not in TP_DEGREES:
        raise HetagentError(f"--tp {args.tp}: with --max-throughput one of {', '.join(map(str, TP_DEGREES))}")
    tp_degrees = (args.tp,) if args.tp else TP_DEGREES
    workload = Workload(args.input_tokens, args.output_tokens,
                        args.ttft_ms / 1000 if args.ttft_ms else None, args.tbt_ms / 1000 if args.tbt_ms else None)
    model = _cost_model(args)
    card = resolve(args.model)
    if args.disaggregated:
        if args.device:
            raise HetagentError("give either --device or --disaggregated P::D, not both")
        prefill, sep, decode = args.disaggregated.partition("::")
        if not sep or not prefill or not decode:
            raise HetagentError(f"--disaggregated {args.disaggregated!r} must read PREFILL::DECODE, e.g. h100-sxm::gaudi3-pcie")
        model.profile(prefill), model.profile(decode)
        point = max_throughput_disaggregated(model, card, prefill, decode, dtype=args.dtype, workload=workload,
                                             tp_degrees=tp_degrees)
        basis = f"{prefill}: {model.basis(prefill)}; {decode}: {model.basis(decode)}"
    else:
        if not args.device:
            raise HetagentError("--device (or --disaggregated P::D) is required")
        model.profile(args.device)
        point = max_throughput(model, card, args.device, dtype=args.dtype, workload=workload, tp_degrees=tp_degrees)
        basis = model.basis(args.device)
    data = {**point.to_dict(), "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
            "ttft_limit_ms": args.ttft_ms, "tbt_limit_ms": args.tbt_ms, "efficiency_basis": basis}
    if args.json:
        print_json(data)
        return 0
    rows = [
        ["output tokens/s per device", f"{point.output_tokens_per_s_per_device:,.1f}"],
        ["output tokens/s (one group)", f"{point.output_tokens_per_s:,.1f}"],
        ["TP degree × batch" + (" (decode)" if point.prefill_tp else ""), f"{point.tp} × {point.batch}"],
        ["TTFT ms", _ms(point.ttft_s)],
        ["time between tokens ms", _ms(point.tbt_s)],
        ["memory per device GB", f"{point.memory_gb:,.2f}"],
        ["binding limit", point.binding],
    ]
    if point.prefill_tp:
        rows.insert(3, ["prefill TP × prompts per chunk", f"{point.prefill_tp} × {point.prefill_batch}"])
        rows.insert(4, ["prefill devices per decode device", f"{point.prefill_devices_per_decode_device:.3f}"])
    print_table(f"maximum throughput: {card.name} {args.dtype} on {point.device}, {args.input_tokens} in / "
                f"{args.output_tokens} out (efficiency: {basis})", ["", "value"], rows)
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
    report = None
    if args.report:
        from hetagent.planner.tco_report import write_report
        from hetagent.hardware.pricebook import find_pricebook

        second = find_pricebook(args.compare_pricebook, Path.cwd())
        report = write_report(outcome, model, args.report, second=second)
        chart = None
    else:
        chart = _chart_path(args, study.name)
        from hetagent.planner.tco_chart import write_chart

        write_chart(outcome, chart)
    if args.json:
        from hetagent.planner.tco_findings import findings

        print_json({"study": study.name, "pricebook": study.pricebook.name, "chart": str(chart) if chart else None,
                    "report": str(report) if report else None,
                    "findings": [f.to_dict() for f in findings(outcome, model)],
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
    if report:
        from hetagent.planner.tco_findings import findings

        _print_findings(findings(outcome, model))
    where = f"report: {report}" if report else f"chart: {chart}"
    console.print(f"{len(outcome.results)} pair results in {time.perf_counter() - start:.1f} s; {where}", highlight=False)
    return 0


def _print_findings(found) -> None:
    rows = []
    for f in found:
        ours = "-" if f.figure is None else (f"{f.figure:.0%}" if f.unit == "share" else f"{f.figure:.2f}")
        flip = "-" if f.flip_usd_per_hour is None else f"${f.flip_usd_per_hour:.3f}/h" + (
            f" (≈ ${f.flip_purchase_usd:,.0f})" if f.flip_purchase_usd is not None else "")
        holds = "n/a" if f.holds is None else ("holds" if f.holds else "does not hold")
        rows.append([f.id, f.claim, f.paper, ours, holds, f"{f.deciding_device} $/h", f"${f.price_usd_per_hour:.3f}", flip])
    print_table("the paper's findings", ["#", "claim", "paper", "ours", "", "deciding input", "today", "flips at"], rows)


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
