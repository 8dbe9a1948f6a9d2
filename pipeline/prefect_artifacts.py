"""Markdown for Prefect artifacts, with its pictures inside.

A report on disk links its pictures by paths relative to its folder (`![AP](per_class_ap.png)`),
which is what a file viewer or git host needs. The Prefect UI renders an artifact in the
browser, far from that folder, so the same links would show as broken images there; the
published copy carries each PNG as a data URI instead.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

# ![alt](relative/path.png): an image link to a local PNG (no scheme, no spaces).
_PNG_LINK = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<path>(?![a-z][a-z0-9+.-]*:)[^)\s]+\.png)\)", re.IGNORECASE)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def png_data_uri(path: Path) -> str:
    """The PNG at `path` as a `data:image/png;base64,...` URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def embed_pngs(markdown: str, *, base_dir: Path) -> str:
    """Replace every relative PNG image link in `markdown` with the picture itself.

    Args:
        markdown: the report text.
        base_dir: the folder the links are relative to (the report's own folder).

    Returns:
        The text with each `![alt](x.png)` written as `![alt](data:image/png;base64,...)`;
        links with a scheme (http:, data:) are left as they are.

    Raises:
        FileNotFoundError: a linked picture is missing (the message names the report's link).
    """

    def inline(match: re.Match[str]) -> str:
        path = base_dir / match["path"]
        if not path.is_file():
            raise FileNotFoundError(f"report links {match['path']!r}, but {path} does not exist")
        return f"![{match['alt']}]({png_data_uri(path)})"

    return _PNG_LINK.sub(inline, markdown)
