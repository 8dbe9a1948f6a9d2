"""Reports published to Prefect carry their pictures: relative PNG links become data URIs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from pipeline.prefect_artifacts import embed_pngs, png_data_uri

# The smallest valid PNG header is enough: the bytes are carried, not decoded.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _decoded(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix) :])


def test_png_data_uri_round_trips(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(PNG)
    assert _decoded(png_data_uri(tmp_path / "a.png")) == PNG


def test_relative_links_are_embedded_and_the_rest_kept(tmp_path: Path):
    (tmp_path / "timelines").mkdir()
    (tmp_path / "map.png").write_bytes(PNG)
    (tmp_path / "timelines" / "v1.png").write_bytes(PNG[::-1])
    report = (
        "# Evaluation\n\n```\ntable\n```\n\n"
        "![mAP vs tIoU](map.png)\n"
        "![v1](timelines/v1.png)\n"
        "![remote](https://example.org/x.png)\n"
        "[a link, not an image](map.png)\n"
    )
    out = embed_pngs(report, base_dir=tmp_path)
    images = dict(re.findall(r"!\[([^\]]*)\]\(([^)]*)\)", out))
    assert _decoded(images["mAP vs tIoU"]) == PNG
    assert _decoded(images["v1"]) == PNG[::-1]
    assert images["remote"] == "https://example.org/x.png"
    assert out.startswith("# Evaluation\n\n```\ntable\n```\n\n")
    assert out.endswith("[a link, not an image](map.png)\n")


def test_missing_picture_names_the_link(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"'timelines/gone\.png'.*does not exist"):
        embed_pngs("![gone](timelines/gone.png)\n", base_dir=tmp_path)


def test_published_evaluate_report_embeds_its_pictures(tmp_path: Path):
    """The evaluate stage's real report.md layout: every picture it links is embedded."""
    from stages.evaluate import write_report

    for name in ("map_vs_tiou.png", "per_class_ap.png", "timelines/v1.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    write_report(tmp_path, "tIoU 0.1\nmAP 50.0\n", ["v1"])
    out = embed_pngs((tmp_path / "report.md").read_text(), base_dir=tmp_path)
    uris = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", out)
    assert len(uris) == 3 and all(_decoded(u) == PNG for u in uris)
