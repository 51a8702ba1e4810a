"""Live poses from a camera or stream, with bounded latency; optionally published over TCP.

    python examples/camera.py 0                                  # /dev/video0 (Linux)
    python examples/camera.py rtsp://192.168.1.20/stream --serve tcp://127.0.0.1:5555
    python examples/camera.py examples/data/sample.mp4 --realtime   # a file as a virtual camera

In live mode nothing waits for the slowest stage: when detection falls behind, the source drops
its oldest queued frame; when the solvers fall behind, the engine drops the oldest frame not yet
being solved. Every drop is counted, and a status line shows fps, p50/p99 latency (frame
decoded → poses out) and drops. A tight ``--time-limit`` keeps each frame's solve short (the
heuristic answers when the exact solver runs out of time). Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence

from deepercut.engine.pipeline import Engine
from deepercut.sources import open_source
from deepercut.streams import TcpSink, make_header
from deepercut.types import Poses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="0", help="camera, URL, or a file")
    parser.add_argument(
        "--realtime",
        type=float,
        nargs="?",
        const=0.0,
        default=None,
        metavar="FPS",
        help="play a file as a camera at its frame rate (or FPS)",
    )
    parser.add_argument("--serve", default=None, help="publish poses at tcp://127.0.0.1:PORT")
    parser.add_argument(
        "--serve-public",
        action="store_true",
        help="allow --serve on a non-loopback address (the stream has no authentication)",
    )
    parser.add_argument("--model", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--workers", type=int, default=1, help="solver processes (0: in-process)")
    parser.add_argument("--solver", default="3stage", help="3stage, 2stage, exact, heuristic")
    parser.add_argument("--time-limit", type=float, default=0.25, help="seconds per solve")
    parser.add_argument("--batch-size", type=int, default=2, help="small batches: low latency")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args(argv)
    realtime: bool | float = False
    if args.realtime is not None:
        realtime = args.realtime or True

    def on_poses(poses: Poses) -> None:
        """Where an application would act on each frame's people."""

    with contextlib.ExitStack() as stack:
        # A short queue: every frame waiting in it adds latency before the oldest is dropped.
        source = stack.enter_context(
            open_source(args.source, live=True, realtime=realtime, queue_size=args.batch_size)
        )
        engine = stack.enter_context(
            Engine(
                args.model,
                solver=args.solver,
                workers=args.workers,
                live=True,
                time_limit=args.time_limit,
                batch_size=args.batch_size,
            )
        )
        server = None
        if args.serve:
            header = make_header(
                engine.skeleton,
                source={"spec": args.source, "fps": source.fps},
                model=engine.info(),
            )
            server = stack.enter_context(TcpSink(args.serve, header, public=args.serve_public))
            print("serving poses at tcp://{}:{}".format(*server.address), flush=True)
        started = last_status = time.monotonic()
        try:
            for result in engine.run_frames(source):
                if result.poses is not None:
                    on_poses(result.poses)
                    if server is not None:
                        server.write(result.poses)
                now = time.monotonic()
                if now - last_status >= 1.0:
                    last_status = now
                    print(engine.stats.status_line(), flush=True)
                if args.seconds is not None and now - started >= args.seconds:
                    break
        except KeyboardInterrupt:
            pass
        print(engine.stats.summary())
        if server is not None:
            print(server.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
