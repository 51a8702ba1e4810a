"""Save a few frames of a rendered overlay video as PNGs (for the README).

    python examples/openfield/frames.py out/openfield.mp4 --frames 100 700 1300 1900 \
        -o examples/openfield
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, nargs="+", required=True, help="frame indices")
    parser.add_argument("--scale", type=float, default=1.0, help="resize factor")
    parser.add_argument("-o", "--out", default=".", help="folder for frame_NNNN.png")
    args = parser.parse_args()
    wanted = set(args.frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with av.open(args.video) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                image = frame.to_image()
                if args.scale != 1.0:
                    size = (round(image.width * args.scale), round(image.height * args.scale))
                    image = image.resize(size, Image.Resampling.LANCZOS)
                path = out / f"frame_{index:04d}.png"
                image.save(path, optimize=True)
                print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
                wanted.discard(index)
            if not wanted:
                break
    if wanted:
        raise SystemExit(f"the video has no frames {sorted(wanted)}")


if __name__ == "__main__":
    main()
