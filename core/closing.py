"""`Closing`: the context-manager protocol of a class that holds a resource and has `close()`."""

from __future__ import annotations

from typing import Self

__all__ = ["Closing"]


class Closing:
    """Mixin: `with X(...) as x:` gives x itself and calls `x.close()` on the way out, error or not."""

    def close(self) -> None:
        """Release what the object holds (each subclass says what)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
