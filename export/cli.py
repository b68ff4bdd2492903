"""`abqa export`: the command-line edge of the export stage."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from abqa.core.config import DEFAULT_ARMS, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_MODEL_REPOSITORY
from abqa.export.triton_config import BatchingConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export QA checkpoints to ONNX (validated against PyTorch) into a Triton model repository",
        description="Export each arm (a hub id, a local checkpoint folder, or an offline stand-in) to ONNX with "
        "optimum, validate it against PyTorch, and write it into the Triton model repository.",
    )
    add_export_arguments(parser)
    parser.set_defaults(run=run)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Shared with `abqa benchmark`, which runs this stage first."""
    defaults = ", ".join(f"{name}={source}" for name, source in DEFAULT_ARMS.items())
    parser.add_argument(
        "--arm", action="append", dest="arms", metavar="NAME[=SOURCE]",
        help=f"an arm to export (repeatable): a default name or NAME=hub-id-or-folder. Default: {defaults}",
    )
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY, help="default: %(default)s")
    parser.add_argument(
        "--offline", action="store_true",
        help="do not contact the hub: hub arms become stand-ins (published architecture, seeded random weights; "
        "their accuracy is meaningless). Also on with HF_HUB_OFFLINE=1",
    )
    parser.add_argument("--force", action="store_true", help="replace arms that are already in the repository")
    parser.add_argument("--optimize", action="append", default=[], choices=["O1", "O2", "O3", "O4"],
                        help="also export an ONNX Runtime graph-optimized variant, e.g. bert-O2 (repeatable)")
    parser.add_argument("--quantize", action="append", default=[], choices=["int8"],
                        help="also export a dynamically quantized variant for AVX-512 VNNI, e.g. bert-int8")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: optimum's choice)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Triton max_batch_size (default: %(default)s)")
    parser.add_argument("--queue-delay-us", type=int, default=BatchingConfig.max_queue_delay_us,
                        help="dynamic batching: how long a request may wait for others to join its batch, in "
                        "microseconds; 0 batches only requests that queued while the instance was busy, and a lone "
                        "request never waits (default: %(default)s)")
    parser.add_argument("--max-queue-size", type=int, default=DEFAULT_MAX_QUEUE_SIZE, metavar="N",
                        help="requests the dynamic batcher holds before it rejects more (overload gets fast refusals "
                        "rather than a crash); 0 = unbounded (default: %(default)s)")
    parser.add_argument("--instances", type=int, default=1, help="model instances per arm (default: %(default)s)")
    parser.add_argument("--gpu", action="store_true", help="instance_group KIND_GPU instead of KIND_CPU")
    parser.add_argument(
        "--intra-op-threads", type=int, default=None,
        help="ONNX Runtime threads per instance written into config.pbtxt (default: cores / (arms x instances), "
        "so that the sessions do not fight over the cores; 0 = ONNX Runtime's default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the stand-ins' random weights")


def export_options_from_args(args: argparse.Namespace, n_arms: int):
    from abqa.core.machine import cpu_count
    from abqa.export.pipeline import ExportOptions
    from abqa.export.triton_config import InstanceConfig

    if args.max_batch_size < 0 or args.instances < 1 or args.max_queue_size < 0:
        from abqa.core.errors import AbqaError

        raise AbqaError("--max-batch-size and --max-queue-size must be >= 0 and --instances >= 1")
    threads = args.intra_op_threads
    if threads is None:
        threads = max(1, cpu_count() // max(1, n_arms * args.instances))
    preferred = tuple(size for size in (2, 4, 8, 16, 32) if size <= args.max_batch_size)
    return ExportOptions(
        repository=args.model_repository,
        offline=args.offline,
        force=args.force,
        optimize=tuple(dict.fromkeys(args.optimize)),
        quantize=tuple(dict.fromkeys(args.quantize)),
        opset=args.opset,
        batching=BatchingConfig(args.max_batch_size, preferred, args.queue_delay_us, args.max_queue_size),
        instances=InstanceConfig("KIND_GPU" if args.gpu else "KIND_CPU", args.instances, threads),
        seed=args.seed,
    )


def arm_specs_from_args(args: argparse.Namespace):
    from abqa.core.config import ArmSpec, default_arm_specs

    return [ArmSpec.parse(text) for text in args.arms] if args.arms else default_arm_specs()


def run(args: argparse.Namespace) -> int:
    from abqa.export.pipeline import export_arms

    specs = arm_specs_from_args(args)
    variants_per_arm = 1 + len(set(args.optimize)) + len(set(args.quantize))
    options = export_options_from_args(args, n_arms=len(specs) * variants_per_arm)
    started = time.perf_counter()
    results = export_arms(specs, options)
    print(f"\n{len(results)} arm(s) in {options.repository} after {time.perf_counter() - started:.1f} s:")
    for meta in results:
        standin = "  STAND-IN (random weights: accuracy meaningless)" if meta.standin else ""
        print(f"  {meta.arm:<16} {meta.architecture:<11} {meta.num_layers} layers  "
              f"{(meta.onnx_file_size or 0) / 2**20:7.1f} MB  {meta.source}{standin}")
    return 0
