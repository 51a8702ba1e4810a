"""Poses of a folder of videos, with the solvers spread over a Ray cluster.

    python examples/ray_cluster.py VIDEOS/ --address HEAD:6379 --workers 16 -o poses/

Setting up a cluster (every node needs the same Python environment with ``deepercut``
installed, ``pip install 'deepercut[ray]'``)::

    head$    ray start --head --port=6379 --num-cpus=8
    node$    ray start --address=HEAD:6379 --num-cpus=8     # on every other machine
    driver$  python examples/ray_cluster.py VIDEOS/ --address HEAD:6379 --workers 15

``--address`` also takes ``auto`` (run on a cluster node) or ``ray://HEAD:10001`` (Ray client
from outside the cluster). Recent Ray (2.60 here) starts clusters with token authentication
when a token exists (``~/.ray/auth_token``); the driver then needs ``RAY_AUTH_MODE=token`` and
the same token (that file, or ``RAY_AUTH_TOKEN``), or the connection is refused. Without a
shared environment, ship the package with a runtime environment instead:
``Engine(..., ray_init_kwargs={"runtime_env": {"py_modules": [deepercut]}})``.

How the work is spread: the driver decodes each video and runs the detector (batched; on its
GPU if it has one); only the compact per-frame candidates go to the ``--workers`` solver actors,
which Ray places on any node with a free CPU (one CPU each). The driver keeps at most
``--max-in-flight`` frames out (default 3 per worker), re-orders results by frame index and
writes ``poses/<video>.msgpack`` (one record per frame, in order). If an actor or its node dies,
a new actor replaces it and the frames it held are solved again, so no frame is lost or
duplicated. Videos are processed one after the other by the same actors (built once).

Scaling detection: the driver's detector becomes the bottleneck once ``--workers`` is large
(the run summary shows the time per stage). With ``--detector-actors N`` each video is cut
into keyframe-aligned chunks that N detector actors decode and detect in parallel, one GPU
each when the cluster has GPUs (the videos must then be at the same path on every node, e.g.
a shared file system); the driver merges their candidates in frame order into the solver
actors. Several drivers can also share one cluster, each on its own part of the folder
(``--shard K/N``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deepercut.engine.pipeline import Engine
from deepercut.sources import open_source
from deepercut.streams import PoseWriter, make_header

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` → ``(2, 4)``: the second of four equal shares (1-based)."""
    k, _, n = text.partition("/")
    try:
        shard = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, got {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= K <= N, got {text!r}")
    return shard


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", help="folder of videos")
    parser.add_argument("-o", "--out", default="poses", help="output folder")
    parser.add_argument("--address", default="auto", help="Ray cluster address")
    parser.add_argument("--workers", type=int, default=2, help="solver actors in the cluster")
    parser.add_argument("--max-in-flight", type=int, default=None, help="frames out at once")
    parser.add_argument("--detector-actors", type=int, default=0, help="detect in N actors")
    parser.add_argument("--model", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--solver", default="3stage", help="3stage, 2stage, exact, heuristic")
    parser.add_argument("--shard", type=parse_shard, default=(1, 1), help="K/N: this share")
    parser.add_argument("--max-frames", type=int, default=None, help="per video")
    args = parser.parse_args(argv)

    folder = Path(args.videos)
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    k, n = args.shard
    videos = videos[k - 1 :: n]
    if not videos:
        raise SystemExit(f"no videos ({', '.join(VIDEO_SUFFIXES)}) for shard {k}/{n} in {folder}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with Engine(
        args.model,
        solver=args.solver,
        workers=args.workers,
        ray_address=args.address,
        max_in_flight=args.max_in_flight,
        detector_actors=args.detector_actors,
    ) as engine:
        for video in videos:
            target = out / f"{video.stem}.msgpack"
            with open_source(video, max_frames=0) as probe:  # the header's facts, no decoding
                source = {"spec": str(video), "fps": probe.fps, "frame_size": probe.frame_size}
            header = make_header(engine.skeleton, source=source, model=engine.info())
            with PoseWriter(target, header) as writer:
                # A path (not an opened source), so detector actors can open it themselves.
                for poses in engine.run(str(video), max_frames=args.max_frames):
                    writer.write(poses)
            stats = engine.stats
            print(
                f"{video.name}: {stats.solved} frames, {stats.fps:.1f} fps, "
                f"{stats.people_per_frame:.1f} people/frame, actor restarts "
                f"{stats.pool.actor_restarts} -> {target}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
