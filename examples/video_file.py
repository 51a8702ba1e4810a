"""Poses of a video file: a msgpack pose stream plus an overlay video.

    python examples/video_file.py examples/data/sample.mp4 -o poses.msgpack --render overlay.mp4

The same as ``deepercut run VIDEO -o ... --render ...``, written with the Python API:
:class:`deepercut.engine.pipeline.Engine` yields one result per frame, in frame order; the
pose stream and the renderer consume them. Read the stream back with
``deepercut.read_poses`` (or convert it: ``deepercut convert poses.msgpack -o
poses.csv``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from deepercut.engine.pipeline import Engine
from deepercut.engine.render import VideoRenderer, draw_poses
from deepercut.sources import open_source
from deepercut.streams import PoseWriter, make_header


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="input video file")
    parser.add_argument("-o", "--out", default="poses.msgpack", help="pose stream to write")
    parser.add_argument("--render", default=None, help="overlay video to write (.mp4)")
    parser.add_argument("--model", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--workers", type=int, default=1, help="solver processes (0: in-process)")
    parser.add_argument("--solver", default="3stage", help="3stage, 2stage, exact, heuristic")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(args.video, max_frames=args.max_frames))
        engine = stack.enter_context(Engine(args.model, solver=args.solver, workers=args.workers))
        header = make_header(
            engine.skeleton,
            source={"spec": args.video, "fps": source.fps, "frame_size": source.frame_size},
            model=engine.info(),
        )
        writer = stack.enter_context(PoseWriter(args.out, header))
        renderer = None
        if args.render:
            renderer = stack.enter_context(
                VideoRenderer(args.render, source.fps, source.frame_size)
            )
        for result in engine.run_frames(source, keep_images=renderer is not None):
            writer.write(result.poses)  # file mode: every frame has poses, in order
            if renderer is not None:
                renderer.write(draw_poses(result.image, result.poses, engine.skeleton))
        print(engine.stats.summary())
    print(f"wrote {writer.frames} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
