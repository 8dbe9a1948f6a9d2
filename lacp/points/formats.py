"""Point-label file formats: the released LACP points CSV, SF-Net click files, THUMOS'14 ground truth.

Formats handled here:
- LACP points CSV (the file released with LACP, `point_labels_gaussian.csv`): columns
  `class,class_index,start_frame,stop_frame,video_id,point`, frames at the source video's fps,
  one row per training instance. The project's `points.csv` adds a `time` column (seconds,
  always `point / fps`). `class_index` is the index of the class in the sorted class list:
  the released THUMOS'14 file uses exactly that order (alphabetical, BaseballPitch = 0 ...
  VolleyballSpiking = 19), which `read_points_csv` checks row by row.
- SF-Net clicks (`manual_THUMOS{1..4}.txt`): `video_id,seconds,class` per line; CRLF line ends,
  blank lines and stray spaces around fields occur in the release and are accepted.
Ground-truth files (THUMOS'14 `gt.json`, fps tables) are read by `sources.annotations`.

All writers write a temporary file beside the target and `os.replace` it into place.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from core.files import write_bytes_atomic

LACP_COLUMNS: tuple[str, ...] = ("class", "class_index", "start_frame", "stop_frame", "video_id", "point")
POINTS_COLUMNS: tuple[str, ...] = LACP_COLUMNS + ("time",)


class PointLabelError(ValueError):
    """Bad point-label input: a parameter, an annotation or a points / clicks file."""


class PointFileError(PointLabelError):
    """A points or clicks file that does not match its format or the annotations.

    The message names the file, the line (1-based, header = line 1 for CSV) and what was expected.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class Point(NamedTuple):
    """One point label: a frame inside (normally) one training instance.

    Attributes:
        video_id: video the point belongs to.
        class_name: action class of the instance.
        class_index: index of `class_name` in the sorted class list.
        start_frame: first frame of the instance, `rint(start_s * fps)`.
        stop_frame: last frame of the instance, `rint(end_s * fps)`.
        point: the labelled frame (source fps; may lie outside the instance for manual
            clicks or with extra offset noise).
        time: the labelled time in seconds, `point / fps`.
    """

    video_id: str
    class_name: str
    class_index: int
    start_frame: int
    stop_frame: int
    point: int
    time: float


class Click(NamedTuple):
    """One human click of an SF-Net annotator file.

    Attributes:
        video_id: video clicked.
        seconds: click time in seconds.
        class_name: class named by the annotator (surrounding spaces removed).
        line: 1-based line number in the file (for error messages and reports).
    """

    video_id: str
    seconds: float
    class_name: str
    line: int


def write_points_csv(points: Iterable[Point], path: str | Path) -> None:
    """Write points as the LACP CSV plus a `time` column (seconds, 6 decimals), atomically.

    Rows are written in the order given (`sample_points` orders them by video, start, class).
    The bytes depend only on the points, so equal points give identical files.

    Args:
        points: the rows to write.
        path: the CSV file to create or replace.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(POINTS_COLUMNS)
    for p in points:
        writer.writerow(
            [p.class_name, p.class_index, p.start_frame, p.stop_frame, p.video_id, p.point, f"{p.time:.6f}"]
        )
    write_bytes_atomic(path, buf.getvalue().encode())


def _parse_int(path: Path, line: int, column: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PointFileError(path, line, f"column '{column}' must be an integer frame, got {text!r}") from None


def _parse_float(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PointFileError(path, line, f"column '{column}' must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise PointFileError(path, line, f"column '{column}' must be finite, got {text!r}")
    return value


def read_points_csv(path: str | Path, annotations: Mapping[str, Any]) -> list[Point]:
    """Read and validate a points file in the LACP format (with or without `time`).

    Checks, per row: the video exists in `annotations` and is a training video; the class is
    one of `annotations["classes"]` and `class_index` is its index there (the released
    THUMOS'14 file uses the sorted class order); frames are integers with
    `0 <= start_frame < stop_frame` and `point >= 0`. Without a `time` column the time is
    `point / fps` (the video's source fps from the annotations).

    Args:
        path: the CSV file.
        annotations: the annotations dict (`database`, `classes`).

    Returns:
        The points in file order.

    Raises:
        PointFileError: naming the file, line and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise PointFileError(path, None, "points file not found")
    database = annotations["database"]
    class_index = {name: i for i, name in enumerate(annotations["classes"])}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in LACP_COLUMNS if c not in header]
        extra = [c for c in header if c not in POINTS_COLUMNS]
        if missing or extra:
            raise PointFileError(
                path,
                1,
                f"header must hold the columns {list(LACP_COLUMNS)} (+ optional 'time'); "
                f"missing {missing}, unknown {extra}",
            )
        col = {name: header.index(name) for name in header}
        points = []
        for line, fields in enumerate(reader, start=2):
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise PointFileError(path, line, f"expected {len(header)} fields, got {len(fields)}")
            points.append(_point_from_fields(path, line, [f.strip() for f in fields], col, database, class_index))
    return points


def _point_from_fields(
    path: Path,
    line: int,
    fields: list[str],
    col: dict[str, int],
    database: Mapping[str, Any],
    class_index: dict[str, int],
) -> Point:
    vid, name = fields[col["video_id"]], fields[col["class"]]
    if vid not in database:
        raise PointFileError(path, line, f"video '{vid}' is not in the annotations")
    if database[vid].get("subset") != "train":
        raise PointFileError(
            path,
            line,
            f"video '{vid}' is a '{database[vid].get('subset')}' video; points may only label training videos",
        )
    if name not in class_index:
        raise PointFileError(
            path, line, f"class '{name}' (video '{vid}') is not one of the annotation classes {sorted(class_index)}"
        )
    index = _parse_int(path, line, "class_index", fields[col["class_index"]])
    if index != class_index[name]:
        raise PointFileError(
            path,
            line,
            f"class_index {index} of class '{name}' should be {class_index[name]} (the index in the sorted class list)",
        )
    start = _parse_int(path, line, "start_frame", fields[col["start_frame"]])
    stop = _parse_int(path, line, "stop_frame", fields[col["stop_frame"]])
    point = _parse_int(path, line, "point", fields[col["point"]])
    if not 0 <= start < stop:
        raise PointFileError(
            path, line, f"video '{vid}' class '{name}': expected 0 <= start_frame < stop_frame, got {start}, {stop}"
        )
    if point < 0:
        raise PointFileError(path, line, f"video '{vid}' class '{name}': point must be >= 0, got {point}")
    if "time" in col:
        time = _parse_float(path, line, "time", fields[col["time"]])
    else:
        time = point / float(database[vid]["fps"])
    return Point(vid, name, index, start, stop, point, time)


def read_sfnet_clicks(path: str | Path) -> list[Click]:
    """Read an SF-Net annotator file: `video_id,seconds,class` per line.

    CRLF or LF line ends, blank lines and spaces around fields are accepted (all occur in the
    THUMOS'14 release). Which videos and classes the clicks name is checked later, against
    the annotations, by the sampler.

    Args:
        path: the click file.

    Returns:
        The clicks in file order.

    Raises:
        PointFileError: a line without exactly three fields, an empty id or class, or a time
            that is not a finite number >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise PointFileError(path, None, "click file not found")
    clicks = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3 or not fields[0] or not fields[2]:
            raise PointFileError(path, line, f"expected 'video_id,seconds,class', got {text.strip()!r}")
        seconds = _parse_float(path, line, "seconds", fields[1])
        if seconds < 0:
            raise PointFileError(path, line, f"click time must be >= 0 s, got {seconds}")
        clicks.append(Click(fields[0], seconds, fields[2], line))
    return clicks
