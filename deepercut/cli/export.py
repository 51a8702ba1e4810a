"""``deepercut export onnx|tensorrt``: the detector as an ONNX file or a TensorRT program."""

from __future__ import annotations

import argparse

from deepercut.cli.args import parse_hw


def _parse_batches(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` (min, opt, max) or ``"8"`` → a batch range."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX or N, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand (``export onnx`` and ``export tensorrt``)."""
    p = subparsers.add_parser("export", help="export the detector (ONNX, TensorRT)")
    formats = p.add_subparsers(dest="format", required=True)

    onnx = formats.add_parser(
        "onnx",
        help="ONNX with a dynamic batch (checked with onnxruntime when installed)",
        description="Float32 images [batch, 3, H, W] in [0, 1] → scmap, locref, pairwise, "
        "intermediate (raw DetectorOutput tensors).",
    )
    _common(onnx)
    onnx.add_argument("--max-batch", type=int, default=32, help="largest batch (default 32)")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    onnx.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter (dynamo needs onnxscript; default dynamo)",
    )
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    onnx.set_defaults(func=run_export_onnx)

    trt = formats.add_parser(
        "tensorrt",
        help="torch-tensorrt ExportedProgram (.ep; needs a GPU and torch-tensorrt)",
        description="Load with: import torch_tensorrt; torch.export.load(path).module().",
    )
    _common(trt)
    trt.add_argument(
        "--batch", type=_parse_batches, default=(1, 8, 32), help="MIN,OPT,MAX (default 1,8,32)"
    )
    trt.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    trt.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    trt.set_defaults(func=run_export_tensorrt)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="file to write")
    p.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument(
        "--hw", type=parse_hw, default=None, help="static input HxW (default: the model's)"
    )


def run_export_onnx(args: argparse.Namespace) -> int:
    from deepercut.model.io import load_model
    from deepercut.tensorrt.export import export_onnx

    model = load_model(args.model)
    hw = args.hw or model.input_hw
    report = export_onnx(
        model.net,
        args.output,
        hw,
        max_batch=args.max_batch,
        opset=args.opset,
        exporter=args.exporter,
        check=not args.no_check,
    )
    print(
        f"wrote {report.path}: opset {report.opset} ({report.exporter} exporter), input "
        f"images [1..{report.max_batch}, 3, {hw[0]}, {hw[1]}], outputs "
        f"{', '.join(report.outputs)}; {report.checked}"
    )
    return 0


def run_export_tensorrt(args: argparse.Namespace) -> int:
    from deepercut.model.io import load_model
    from deepercut.tensorrt.export import export_tensorrt

    model = load_model(args.model)
    hw = args.hw or model.input_hw
    path = export_tensorrt(model.net, args.output, hw, args.batch, args.precision, args.device)
    lo, opt, hi = args.batch
    print(
        f"wrote {path}: TensorRT {args.precision}, input images [{lo}..{hi} (opt {opt}), 3, "
        f"{hw[0]}, {hw[1]}]"
    )
    return 0
