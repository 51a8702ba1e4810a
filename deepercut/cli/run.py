"""``deepercut run``: poses of a video, image folder, camera or stream, as a msgpack stream.

Writes the stream header (skeleton, source and model descriptions) and then one record per
solved frame, in frame order (every decoded frame in file mode; live sources may drop frames
under overload, and those get no record). ``--render`` writes an overlay video at the source
frame rate with exactly one frame per delivered frame (a frame dropped in live mode shows the
previous one again); for an image folder, a folder with one overlay image per input image
(same names), or a video when the target has a video suffix (each image letterboxed into
``--render-size``, default the first image's size). Progress: a bar for files, a status line
(fps, latency, drops) for live sources; a summary at the end.

Identities: every person gets a ``track_id`` from the online tracker (−1 with ``--no-track``,
and by default for an image folder), or, with ``--temporal K``, from a temporal multicut that
solves each frame jointly with the people of the previous K frames (in this process, in frame
order). ``--smooth`` low-passes tracked keypoints with a One-Euro filter (for live display; off
by default).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from deepercut.cli.args import parse_hw, parse_wh
from deepercut.detection import BACKENDS
from deepercut.detection.dynamic_crop import CropConfig
from deepercut.engine.config import EngineConfig
from deepercut.engine.feed import source_queue_size
from deepercut.engine.pipeline import Engine
from deepercut.engine.render import ImageFolderRenderer, VideoRenderer, draw_poses, is_video_path
from deepercut.engine.stats import FrameResult
from deepercut.io.redact import redact_url
from deepercut.outputs import refuse_overwriting_inputs
from deepercut.skeleton import Skeleton
from deepercut.solvers import METHODS
from deepercut.solvers.assemble import DEFAULT_MIN_PARTS
from deepercut.sources import Source, known_fps, list_images, open_source
from deepercut.streams import PoseWriter, TcpSink, make_header
from deepercut.tracking import OneEuroConfig

_STATUS_EVERY_S = 0.5  # live status line refresh


def default_workers() -> int:
    """Solver actors by default: one per core, minus the driver's (0 on a single core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, (cores or 1) - 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="estimate poses on a video, image folder, camera or stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="video file, image folder, camera (0, /dev/video0) or URL")
    for add in (
        _add_source_args,
        _add_detector_args,
        _add_solver_args,
        _add_identity_args,
        _add_output_args,
    ):
        add(p)
    p.set_defaults(func=run)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    """Options of the source: which frames, live or paced."""
    g = p.add_argument_group("source")
    g.add_argument(
        "--live", action="store_true", help="drop frames under overload (default for cameras)"
    )
    g.add_argument(
        "--realtime",
        type=float,
        nargs="?",
        const=-1.0,
        default=None,
        metavar="FPS",
        help="play a file as a virtual camera at its frame rate (or FPS); implies --live",
    )
    g.add_argument("--start", type=int, default=0, help="first frame index")
    g.add_argument("--stop", type=int, default=None, help="frame index to stop before")
    g.add_argument("--stride", type=int, default=1, help="every N-th frame")
    g.add_argument("--max-frames", type=int, default=None, help="at most N frames")


def _add_detector_args(p: argparse.ArgumentParser) -> None:
    """Options of the detector: model, backend, batches, cropping."""
    g = p.add_argument_group("detection")
    g.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    g.add_argument("--backend", choices=BACKENDS, default="auto", help="detector backend")
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    g.add_argument(
        "--precision",
        choices=("fp16", "fp32"),
        default=None,
        help="detector precision (default: fp16 on CUDA, fp32 on the CPU)",
    )
    g.add_argument("--input-size", type=parse_hw, default=None, help="network input HxW")
    g.add_argument("--batch-size", type=int, default=8, help="frames per detector batch")
    g.add_argument(
        "--live-batch",
        type=int,
        default=None,
        help="live mode: newest frames detected at once (default: 1 on CPU, --batch-size on CUDA)",
    )
    g.add_argument(
        "--dynamic-crop",
        type=int,
        nargs="?",
        const=CropConfig.margin,
        default=None,
        metavar="MARGIN",
        help="single/few animals: detect in a crop around the animals of the previous frames, "
        "MARGIN pixels wider on each side (default %(const)s); the full frame when they are "
        "lost",
    )
    g.add_argument(
        "--detector-actors",
        type=int,
        default=0,
        help="detect a video file in N Ray actors (one GPU each when the cluster has GPUs), "
        "in keyframe-aligned chunks; default: in this process",
    )


def _add_solver_args(p: argparse.ArgumentParser) -> None:
    """Options of the solvers, their Ray pool and the people they keep."""
    g = p.add_argument_group("solving")
    g.add_argument("--solver", choices=METHODS, default="3stage", help="default: %(default)s")
    g.add_argument("--time-limit", type=float, default=1.0, help="seconds per frame's solve")
    g.add_argument(
        "--max-people",
        type=int,
        default=None,
        metavar="N",
        help="at most N people (animals) per frame, the highest-scoring; 1 for a single-animal "
        "project (default: all)",
    )
    g.add_argument(
        "--min-parts",
        type=int,
        default=DEFAULT_MIN_PARTS,
        metavar="N",
        help="drop people with fewer than N parts, e.g. a detached forearm (default: %(default)s)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="solver processes (Ray actors); 0 = in this process (default: cores − 1 = "
        "%(default)s)",
    )
    g.add_argument("--ray-address", default=None, help="Ray cluster: auto, HOST:PORT, ray://...")
    g.add_argument("--max-in-flight", type=int, default=None, help="frames being solved at once")
    g.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds a Ray actor may take to start (default: %(default)s)",
    )


def _add_identity_args(p: argparse.ArgumentParser) -> None:
    """Options of the track ids and smoothing."""
    g = p.add_argument_group("identities")
    g.add_argument(
        "--track",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stable person ids across frames with the online tracker (default: on, but off "
        "for an image folder, whose images are usually unrelated)",
    )
    g.add_argument(
        "--temporal",
        type=int,
        default=0,
        metavar="K",
        help="decide ids in the solve: temporal multicut with the previous K frames' people "
        "(solved in this process, in frame order; replaces the online tracker)",
    )
    g.add_argument("--temporal-model", default=None, help="temporal cost model (.npz)")
    g.add_argument(
        "--smooth",
        type=float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="MIN_CUTOFF",
        help="One-Euro smoothing of tracked keypoints (cut-off at rest in Hz, default 1.0)",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Options of what the run writes: stream, overlay, server, messages."""
    g = p.add_argument_group("output")
    g.add_argument("-o", "--out", default=None, help="pose stream to write (.msgpack)")
    g.add_argument(
        "--render",
        default=None,
        metavar="PATH",
        help="overlay video to write (.mp4); for an image folder, a folder of overlay images "
        "with the input's file names, or a video when PATH has a video suffix",
    )
    g.add_argument(
        "--render-size",
        type=parse_wh,
        default=None,
        metavar="WxH",
        help="overlay video canvas; each frame is letterboxed into it (default: the first "
        "frame's size)",
    )
    g.add_argument(
        "--serve",
        default=None,
        help="publish the stream at tcp://HOST:PORT (a loopback host, e.g. 127.0.0.1)",
    )
    g.add_argument(
        "--serve-public",
        action="store_true",
        help="let --serve bind a non-loopback address (e.g. tcp://0.0.0.0:PORT): the stream "
        "has no authentication",
    )
    g.add_argument("--quiet", action="store_true", help="no progress and no summary")


def run(args: argparse.Namespace) -> int:
    """Run the engine on ``args.source``; returns the exit code."""
    config = engine_config(args)  # checks the settings before anything is opened
    realtime: bool | float = False
    if args.realtime is not None:
        realtime = True if args.realtime < 0 else args.realtime
    say = _printer(args.quiet)
    refuse_overwriting_inputs(
        {"-o": args.out, "--render": args.render},
        {"source": args.source, "--model": args.model, "--temporal-model": args.temporal_model},
    )
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(_open(args, realtime))
        engine = stack.enter_context(
            Engine(config, live=source.is_live, smooth=_smoothing(args.smooth, source.fps))
        )
        say(_describe(args, source, engine))
        header = make_header(
            engine.skeleton, source=_source_info(source, args), model=engine.info()
        )
        sinks, server = _open_sinks(args, header, stack, say)
        renderer = None
        if args.render:
            renderer = stack.enter_context(
                _Overlay(args.render, source, engine.skeleton, args, os.path.isdir(args.source))
            )
        progress = stack.enter_context(_Progress(source, engine, disabled=args.quiet))
        results = engine.run_opened(
            source,
            args.source,
            keep_images=renderer is not None,
            start=args.start,
            stop=args.stop,
            stride=args.stride,
            max_frames=args.max_frames,
            realtime=realtime,
        )
        interrupted = _deliver(results, sinks, renderer, progress)
        if server is not None:
            server.check()  # a server that died after the last record fails the run too
        counts = _footer_counts(engine, source)
        for sink in sinks:  # the footer: the run finished (or was interrupted)
            sink.close("interrupted" if interrupted else "complete", counts=counts)
        if interrupted:
            say("interrupted")
        say(engine.stats.summary())
        if server is not None:
            say(server.summary())
        if renderer is not None:
            say(f"wrote {renderer.frames} {renderer.unit} to {args.render}")
    return 0


def _open(args: argparse.Namespace, realtime: bool | float) -> Source:
    """The source of ``args.source``, its queue sized as the engine will consume it."""
    live = True if args.live else None
    return open_source(
        args.source,
        start=args.start,
        stop=args.stop,
        stride=args.stride,
        max_frames=args.max_frames,
        queue_size=source_queue_size(args.source, live, realtime, args.batch_size),
        live=live,
        realtime=realtime,
    )


def _describe(args: argparse.Namespace, source: Source, engine: Engine) -> str:
    """The run's first status line: source, detector, solver and identities."""
    detector = f"{engine.backend} ({engine.backend_reason}) on {engine.device}"
    if args.detector_actors:
        detector = f"{args.detector_actors} Ray actors for files, else {detector}"
    ids = engine.tracking_info()["mode"]
    return (
        f"source: {source!r}; detector: {detector}; solver: {args.solver}, "
        f"{_workers_text(engine.workers)}; ids: {ids}"
    )


def _open_sinks(
    args: argparse.Namespace,
    header: dict[str, Any],
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
) -> tuple[list[Any], TcpSink | None]:
    """The pose sinks asked for (``-o``, ``--serve``), closed with ``stack``; and the server."""
    sinks: list[Any] = []
    server: TcpSink | None = None
    if args.out:
        sinks.append(stack.enter_context(PoseWriter(args.out, header)))
    if args.serve:
        server = stack.enter_context(TcpSink(args.serve, header, public=args.serve_public))
        sinks.append(server)
        host, port = server.address
        say(f"serving poses at tcp://{host}:{port}")
    if not (sinks or args.render):
        say("no -o, --render or --serve given: poses are not kept")
    return sinks, server


def _deliver(
    results: Iterable[FrameResult],
    sinks: list[Any],
    renderer: _Overlay | None,
    progress: _Progress,
) -> bool:
    """Hand every result to the sinks and the overlay; whether Ctrl-C interrupted the run."""
    try:
        for result in results:
            if result.poses is not None:
                for sink in sinks:
                    sink.write(result.poses)
            if renderer is not None:
                renderer.write(result)
            progress.update(result)
    except KeyboardInterrupt:  # stopping a camera with Ctrl-C is a normal end
        return True
    finally:
        progress.close()
    return False


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine settings of ``deepercut run``'s arguments (those that do not depend on the
    opened source: ``live`` and ``smooth`` come with it)."""
    return EngineConfig(
        model=args.model,
        solver=args.solver,
        workers=args.workers,
        ray_address=args.ray_address,
        startup_timeout=args.startup_timeout,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        live_batch_size=args.live_batch,
        input_hw=args.input_size,
        time_limit=args.time_limit,
        max_people=args.max_people,
        min_parts=args.min_parts,
        max_in_flight=args.max_in_flight,
        detector_actors=args.detector_actors,
        track=args.track if args.track is not None else not os.path.isdir(args.source),
        temporal=args.temporal,
        temporal_model=args.temporal_model,
        dynamic_crop=False if args.dynamic_crop is None else CropConfig(margin=args.dynamic_crop),
    )


def _footer_counts(engine: Engine, source: Source) -> dict[str, Any]:
    """The run's counters for the stream footer: the engine's, and the source's under
    ``source`` (its integer counters, whatever they are)."""
    counts = engine.stats.counts()
    source_stats = getattr(source, "stats", None)
    if dataclasses.is_dataclass(source_stats):
        counts["source"] = {
            k: v for k, v in dataclasses.asdict(source_stats).items() if isinstance(v, int)
        }
    return counts


def _smoothing(min_cutoff: float | None, fps: float) -> OneEuroConfig | bool:
    """``--smooth``'s One-Euro settings at the source's frame rate (``False``: off)."""
    if min_cutoff is None:
        return False
    return OneEuroConfig(min_cutoff=min_cutoff, fps=known_fps(fps))


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    return say


def _workers_text(workers: int) -> str:
    return "in-process" if workers == 0 else f"{workers} Ray worker{'s' * (workers > 1)}"


def _source_info(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "spec": redact_url(str(args.source)),
        "description": source.description,
        "fps": source.fps,
        "frame_size": list(source.frame_size) if source.frame_size else None,
        "num_frames": source.num_frames,
        "live": source.is_live,
        "start": args.start,
        "stop": args.stop,
        "stride": args.stride,
    }


class _Progress:
    """A tqdm bar (frames, fps, ETA) for files; a status line (fps, latency, drops) for live
    sources."""

    def __init__(self, source: Source, engine: Engine, disabled: bool) -> None:
        self.engine = engine
        self.live = source.is_live
        self._last_status = 0.0
        if self.live:
            self.bar = tqdm(
                unit="frame", disable=disabled, bar_format="{n_fmt} frames {elapsed}{postfix}"
            )
        else:
            self.bar = tqdm(total=source.num_frames, unit="frame", disable=disabled)

    def update(self, result: FrameResult) -> None:
        self.bar.update(1)
        now = time.monotonic()
        if self.live and now - self._last_status >= _STATUS_EVERY_S:
            self._last_status = now
            self.bar.set_postfix_str(self.engine.stats.status_line(), refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Overlay:
    """The ``--render`` output: each frame with its poses drawn.

    A video: one output frame per source frame from ``start`` on, at the source frame rate
    (÷ stride, so it plays at real speed; 25 fps for a folder), each letterboxed into the
    canvas (``--render-size``, default the first frame's size); a frame the source dropped
    (live) repeats the previous output frame (the first delivered one, for drops before it).
    For an image folder and a target without a video suffix: a folder with one overlay image
    per delivered input image, under its file name.
    """

    def __init__(
        self,
        path: str,
        source: Source,
        skeleton: Skeleton,
        args: argparse.Namespace,
        folder_source: bool,
    ) -> None:
        self._draw = draw_poses
        self.skeleton = skeleton
        self.stride = args.stride
        self.frames = 0
        self._next_index = args.start
        self._last_image: np.ndarray | None = None
        self.renderer: VideoRenderer | ImageFolderRenderer
        if folder_source and not is_video_path(path):
            if args.render_size is not None:
                raise ValueError(
                    f"--render-size is for a video overlay; {path!r} is written as a folder of "
                    "images (name a .mp4 for a video)"
                )
            names = [p.name for p in list_images(Path(args.source))]
            self.renderer = ImageFolderRenderer(path, names, source_folder=args.source)
            self.unit = "images"
            return
        canvas = args.render_size or source.frame_size
        if canvas is None:
            raise ValueError(f"{source.description}: unknown frame size; pass --render-size")
        self.renderer = VideoRenderer(
            path, known_fps(source.fps) / self.stride, canvas, letterbox=True
        )
        self.unit = "frames"

    def write(self, result: FrameResult) -> None:
        assert result.image is not None
        image = result.image
        if result.poses is not None:
            image = self._draw(image, result.poses, self.skeleton)
        if not isinstance(self.renderer, VideoRenderer):
            self.renderer.write(result.index, image)
            self.frames += 1
            return
        missed = (result.index - self._next_index) // self.stride
        for _ in range(missed):
            self._emit(image if self._last_image is None else self._last_image)
        self._emit(image)
        self._last_image = image
        self._next_index = result.index + self.stride

    def _emit(self, image: np.ndarray) -> None:
        self.renderer.write(image)
        self.frames += 1

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> _Overlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
