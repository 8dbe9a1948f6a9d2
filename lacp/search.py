"""Optimal sequence search (METHOD.md section 4): dense pseudo labels from seeds.

For one video and one class c with at least one action seed, the seeds fix an alternating
transcript of background (0) / action (1) spans, and the search places the span boundaries
so that the mean outer-inner contrast (OIC) over all spans is maximal. Two searches are
offered and score the very same transcript with the very same OIC, so they are comparable:

- ``method="exact"``: dynamic programming over boundary positions (the optimum).
- ``method="beam"``: the released recipe's pruned beam search (an approximation).

Conventions chosen here (METHOD.md leaves them open):

- Background seeds of class c are the pseudo background points plus every action seed of
  another class; a snippet that is an action seed of c is never a background seed of c.
- An action run is a maximal set of action seeds of c at adjacent snippet indices. Two
  action seeds with at least one snippet between them (whatever that snippet is: a
  background seed or no seed at all) belong to two runs, and a background span lies
  between them. Such a background span may hold no seed at all (the released recipe fails
  there); it then only has to be non-empty.
- The first span is background iff a background seed of c lies left of the first action
  run (otherwise the first action span is stretched to snippet 0); the last span likewise.
- A span's seeds are the snippets it must cover: its action run, or every background seed
  of c in its gap. The boundary between span k-1 and span k lies after the last seed of
  span k-1 and at or before the first seed of span k.
- OIC of span [s, e] (inclusive, L = e - s + 1) on a curve a is mean(a[s..e]) minus the
  mean of a over the outer snippets, or minus 0 when there are none. The outer region is
  ``outer="floor"`` (METHOD.md's symmetric "0.25L" on whole snippets): floor(L / 4) snippets on
  each side, clipped to the video; ``outer="ceil"``: ceil(L / 4) on each side (every snippet the
  continuous interval [s - L/4, s) touches, so short spans keep their contrast); or
  ``outer="released"``: ceil(L / 4) on the left and
  floor(L / 4) on the right, which is what the released recipe's int() truncation of
  ``s - 0.25 L`` and ``e + 0.25 L`` amounts to. Action spans use a = q_c, background spans
  a = 1 - q_c.
- Beam pruning, after every snippet: a partial hypothesis is scored by the mean OIC of the
  spans it has completed (+inf while it has completed none). Hypotheses scoring below
  ``prune`` are dropped, except that the best one always survives; then the best
  ``budget`` are kept (ties broken by a stable order; the released recipe keeps every tie
  at the cut, which can grow the beam without bound on saturated scores). The final
  hypotheses are rescored with the full objective and the best one is returned.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np

from core.closing import Closing

Method = Literal["exact", "beam"]
OuterMode = Literal["floor", "ceil", "released"]
VideoItem = tuple[np.ndarray, np.ndarray, np.ndarray]

_METHODS = ("exact", "beam")
_OUTER_MODES = ("floor", "ceil", "released")


class SearchInputError(ValueError):
    """Scores or seeds handed to the sequence search have the wrong shape, type or values."""


@dataclass(frozen=True)
class Transcript:
    """Alternating span labels of one class and where each span may start.

    Attributes:
        labels: (K,) uint8, 0 = background, 1 = action, alternating.
        lo: (K,) int64, earliest start snippet of each span (lo[0] = 0).
        hi: (K,) int64, latest start snippet of each span (hi[0] = 0).
        length: T, the number of snippets of the video.
    """

    labels: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    length: int


@dataclass(frozen=True)
class SpanSequence:
    """One placement of a transcript's spans.

    Attributes:
        labels: (K,) uint8 span labels (0 = background, 1 = action).
        starts: (K,) int64 first snippet of each span; span k ends at starts[k + 1] - 1,
            the last one at length - 1.
        objective: mean OIC over the K spans.
        length: T, the number of snippets of the video.
    """

    labels: np.ndarray
    starts: np.ndarray
    objective: float
    length: int

    def dense(self) -> np.ndarray:
        """Per-snippet labels of the sequence.

        Returns:
            (T,) uint8, 1 on action spans and 0 on background spans.
        """
        lengths = np.diff(np.append(self.starts, self.length))  # (K,)
        return np.repeat(self.labels, lengths).astype(np.uint8)


def class_background_seeds(action_seeds: np.ndarray, bg_seeds: np.ndarray, c: int) -> np.ndarray:
    """Background seeds of class c: pseudo background points plus other classes' action seeds.

    Args:
        action_seeds: (T, C) bool action seeds of every class.
        bg_seeds: (T,) bool pseudo background points.
        c: class index.

    Returns:
        (T,) bool; False wherever c itself has an action seed.
    """
    return (bg_seeds | action_seeds.any(axis=1)) & ~action_seeds[:, c]


def _action_runs(action_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last snippet of each maximal run of adjacent action seeds. Both (R,) int64."""
    idx = np.flatnonzero(action_c)  # (n,)
    breaks = np.flatnonzero(np.diff(idx) > 1)  # (R - 1,)
    return idx[np.concatenate(([0], breaks + 1))], idx[np.concatenate((breaks, [idx.size - 1]))]


def _seeded_spans(action_c: np.ndarray, background_c: np.ndarray) -> list[tuple[int, int, int]]:
    """Spans in order as (label, first seed, last seed), with -1 seeds for a seedless span."""
    length = action_c.shape[0]
    bg = np.flatnonzero(background_c & ~action_c)  # (B,) sorted
    firsts, lasts = _action_runs(action_c)
    gap_left = np.searchsorted(bg, lasts[:-1], side="right")  # (R - 1,) first seed after run r
    gap_right = np.searchsorted(bg, firsts[1:], side="left")  # (R - 1,) end of seeds before run r + 1
    spans: list[tuple[int, int, int]] = []
    if bg.size and bg[0] < firsts[0]:
        spans.append((0, 0, int(bg[np.searchsorted(bg, firsts[0]) - 1])))
    else:
        firsts[0] = 0  # the first action span is stretched to the start
    trailing_bg = bool(bg.size and bg[-1] > lasts[-1])
    trailing_first = int(bg[np.searchsorted(bg, lasts[-1], side="right")]) if trailing_bg else -1
    if not trailing_bg:
        lasts[-1] = length - 1  # the last action span is stretched to the end
    for r, (first, last) in enumerate(zip(firsts.tolist(), lasts.tolist())):
        if r > 0:
            left, right = int(gap_left[r - 1]), int(gap_right[r - 1])
            spans.append((0, int(bg[left]), int(bg[right - 1])) if right > left else (0, -1, -1))
        spans.append((1, first, last))
    if trailing_bg:
        spans.append((0, trailing_first, length - 1))
    return spans


def build_transcript(action_c: np.ndarray, background_c: np.ndarray) -> Transcript:
    """Transcript of one class from its seeds (rules in the module docstring).

    Args:
        action_c: (T,) bool action seeds of the class; at least one must be set.
        background_c: (T,) bool background seeds of the class (see class_background_seeds);
            snippets that are also action seeds count as action seeds.

    Returns:
        The transcript, with the allowed start range of every span.

    Raises:
        SearchInputError: the class has no action seed.
    """
    if not action_c.any():
        raise SearchInputError("build_transcript: the class has no action seed; expected at least one")
    spans = _seeded_spans(action_c, background_c)
    count = len(spans)
    lo = np.zeros(count, dtype=np.int64)
    hi = np.zeros(count, dtype=np.int64)
    for k in range(1, count):
        last_before = spans[k - 1][2]
        lo[k] = last_before + 1 if last_before >= 0 else lo[k - 1] + 1
    for k in range(count - 1, 0, -1):
        first = spans[k][1]
        hi[k] = first if first >= 0 else hi[k + 1] - 1
    labels = np.array([span[0] for span in spans], dtype=np.uint8)
    return Transcript(labels=labels, lo=lo, hi=hi, length=int(action_c.shape[0]))


def outer_widths(span_len, outer: OuterMode):
    """(left, right) widths in snippets of the OIC outer region of spans of length `span_len`.

    Works on Python ints and on numpy or torch integer arrays (the losses share it).
    "floor": floor(L/4) each side; "ceil": ceil(L/4) each side, so even a 1-snippet span is
    contrasted with its neighbours; "released": ceil on the left, floor on the right (the
    released recipe's int() truncation).
    """
    floor, ceil = span_len // 4, (span_len + 3) // 4
    if outer == "floor":
        return floor, floor
    if outer == "ceil":
        return ceil, ceil
    return ceil, floor


def _oic(prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, outer: OuterMode) -> np.ndarray:
    """OIC of spans [starts, ends] (inclusive) on q (label 1) or 1 - q (label 0).

    Args:
        prefix: (T + 1,) float64 cumulative sum of q with a leading 0.
        starts, ends, labels: int arrays of one broadcast shape S; 0 <= ends < T.
        outer: outer-region convention (module docstring).

    Returns:
        float64 array of shape S; -inf where a span is empty (ends < starts).
    """
    length = prefix.shape[0] - 1
    span_len = ends - starts + 1
    valid = span_len >= 1
    span_len = np.maximum(span_len, 1)
    left, right = outer_widths(span_len, outer)
    left_width = np.minimum(starts, left)
    right_width = np.minimum(length - 1 - ends, right)
    inner_sum = prefix[ends + 1] - prefix[starts]
    outer_sum = prefix[starts] - prefix[starts - left_width] + prefix[ends + 1 + right_width] - prefix[ends + 1]
    outer_count = left_width + right_width
    inner = inner_sum / span_len
    has_outer = outer_count > 0
    outer_mean = np.where(has_outer, outer_sum / np.maximum(outer_count, 1), 0.0)
    action = inner - outer_mean
    background = (1.0 - inner) - np.where(has_outer, 1.0 - outer_mean, 0.0)
    return np.where(valid, np.where(labels == 1, action, background), -np.inf)


def _candidate_grid(transcript: Transcript) -> tuple[np.ndarray, ...]:
    """Every (start, end) pair the DP scores, span after span, flattened.

    Returns:
        rows (K,) start candidates per span, cols (K,) end candidates per span, offsets
        (K + 1,) into the flat arrays, and flat starts, ends (inclusive) and labels (N,).
    """
    count = transcript.labels.shape[0]
    rows = transcript.hi - transcript.lo + 1  # (K,)
    cols = np.append(rows[1:], 1)  # (K,) ends of span k = starts of span k + 1 minus 1
    sizes = rows * cols
    offsets = np.concatenate(([0], np.cumsum(sizes)))  # (K + 1,)
    block = np.repeat(np.arange(count), sizes)  # (N,)
    position = np.arange(offsets[-1]) - offsets[block]
    end_lo = np.append(transcript.lo[1:], transcript.length)  # (K,) first exclusive end
    starts = transcript.lo[block] + position // cols[block]
    ends = end_lo[block] + position % cols[block] - 1
    return rows, cols, offsets, starts, ends, transcript.labels[block]


def _exact_search(prefix: np.ndarray, transcript: Transcript, outer: OuterMode) -> SpanSequence:
    """Dynamic programming over span starts: exact maximum of the summed span OIC."""
    rows, cols, offsets, starts, ends, labels = _candidate_grid(transcript)
    scores = _oic(prefix, starts, ends, labels, outer)  # (N,)
    best = np.zeros(1)  # best score of spans 0..k-1 per start candidate of span k
    back = []
    for k in range(rows.shape[0]):
        total = best[:, None] + scores[offsets[k] : offsets[k + 1]].reshape(rows[k], cols[k])
        choice = total.argmax(axis=0)  # (cols[k],)
        best = total[choice, np.arange(cols[k])]
        back.append(choice)
    span_starts = np.zeros(rows.shape[0], dtype=np.int64)
    pick = 0
    for k in range(rows.shape[0] - 1, -1, -1):
        pick = int(back[k][pick])
        span_starts[k] = transcript.lo[k] + pick
    return SpanSequence(
        labels=transcript.labels,
        starts=span_starts,
        objective=float(best[0] / rows.shape[0]),
        length=transcript.length,
    )


def _prune(scores: np.ndarray, *, budget: int, threshold: float) -> np.ndarray:
    """Indices of the hypotheses that survive pruning, best first (module docstring)."""
    order = np.argsort(-scores, kind="stable")
    above = int(np.count_nonzero(scores >= threshold))
    return order[: min(max(above, 1), budget)]


def _sequence_objectives(
    prefix: np.ndarray, transcript: Transcript, span_starts: np.ndarray, outer: OuterMode
) -> np.ndarray:
    """Mean span OIC of complete sequences. span_starts (H, K) -> (H,)."""
    exclusive_ends = np.concatenate(
        (span_starts[:, 1:], np.full((span_starts.shape[0], 1), transcript.length)), axis=1
    )  # (H, K)
    return _oic(prefix, span_starts, exclusive_ends - 1, transcript.labels[None, :], outer).mean(axis=1)


def _beam_step(
    prefix: np.ndarray,
    transcript: Transcript,
    outer: OuterMode,
    t: int,
    state: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extend every hypothesis by snippet t: stay in its span, or start the next one at t.

    Args:
        state: span index (H,), running score (H,), span starts (H, K) of each hypothesis.

    Returns:
        The extended state, stayers first, then movers (H' <= 2 H).
    """
    span, score, history = state
    last = transcript.labels.shape[0] - 1
    following = np.minimum(span + 1, last)
    movable = span < last
    move = movable & (t >= transcript.lo[following])
    stay = ~(movable & (t == transcript.hi[following]))
    movers = np.flatnonzero(move)
    current = span[movers]
    gain = _oic(prefix, history[movers, current], np.full(movers.shape, t - 1), transcript.labels[current], outer)
    done = current.astype(np.float64)
    previous = np.where(current == 0, 0.0, score[movers])  # +inf before the first span ends
    moved_history = history[movers].copy()
    moved_history[np.arange(movers.shape[0]), current + 1] = t
    return (
        np.concatenate((span[stay], current + 1)),
        np.concatenate((score[stay], (previous * done + gain) / (done + 1.0))),
        np.concatenate((history[stay], moved_history)),
    )


def _beam_search(
    prefix: np.ndarray, transcript: Transcript, outer: OuterMode, *, budget: int, prune: float
) -> SpanSequence:
    """The released recipe's pruned beam search over the transcript's boundary placements."""
    count = transcript.labels.shape[0]
    state = (np.zeros(1, dtype=np.int64), np.full(1, np.inf), np.zeros((1, count), dtype=np.int64))
    for t in range(1, transcript.length):
        span, score, history = _beam_step(prefix, transcript, outer, t, state)
        keep = _prune(score, budget=budget, threshold=prune)
        state = (span[keep], score[keep], history[keep])
    history = state[2]  # every surviving hypothesis has reached the last span
    objectives = _sequence_objectives(prefix, transcript, history, outer)  # (H,)
    best = int(objectives.argmax())
    return SpanSequence(
        labels=transcript.labels, starts=history[best], objective=float(objectives[best]), length=transcript.length
    )


def _check_options(method: str, budget: int, outer: str) -> None:
    """Raise SearchInputError for an unknown method or outer mode, or a budget below 1."""
    if method not in _METHODS:
        raise SearchInputError(f"method={method!r}: expected one of {_METHODS}")
    if outer not in _OUTER_MODES:
        raise SearchInputError(f"outer={outer!r}: expected one of {_OUTER_MODES}")
    if budget < 1:
        raise SearchInputError(f"budget={budget}: expected an integer >= 1")


def search_class(
    q_c: np.ndarray,
    action_c: np.ndarray,
    background_c: np.ndarray,
    *,
    method: Method = "exact",
    budget: int = 25,
    prune: float = 0.1,
    outer: OuterMode = "floor",
) -> SpanSequence:
    """Best span sequence of one class.

    Args:
        q_c: (T,) fused score of the class.
        action_c: (T,) bool action seeds of the class (at least one).
        background_c: (T,) bool background seeds of the class (see class_background_seeds).
        method: "exact" (dynamic programming) or "beam" (released recipe).
        budget: beam width (beam only).
        prune: beam pruning threshold on the running mean OIC (beam only).
        outer: OIC outer-region convention, "floor", "ceil" or "released".

    Returns:
        The chosen sequence, its span starts and its mean OIC.
    """
    _check_options(method, budget, outer)
    transcript = build_transcript(np.asarray(action_c, dtype=bool), np.asarray(background_c, dtype=bool))
    prefix = np.concatenate(([0.0], np.cumsum(np.asarray(q_c, dtype=np.float64))))  # (T + 1,)
    if method == "exact":
        return _exact_search(prefix, transcript, outer)
    return _beam_search(prefix, transcript, outer, budget=budget, prune=prune)


def _as_seeds(seeds: np.ndarray, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    """Validate a seed mask (bool, or integers in {0, 1}) of the given shape; return it as bool."""
    seeds = np.asarray(seeds)
    if seeds.shape != shape:
        raise SearchInputError(f"{where}: {name} has shape {seeds.shape}, expected {shape}")
    if seeds.dtype != bool and not (np.issubdtype(seeds.dtype, np.integer) and np.isin(seeds, (0, 1)).all()):
        raise SearchInputError(f"{where}: {name} must be bool (or 0/1 integers), got dtype {seeds.dtype}")
    return seeds.astype(bool, copy=False)


def _validated(q: np.ndarray, action_seeds: np.ndarray, bg_seeds: np.ndarray, where: str) -> VideoItem:
    """Check one video's inputs; return q (float, as given) and the seeds as bool arrays."""
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[0] < 1 or q.shape[1] < 2 or not np.issubdtype(q.dtype, np.floating):
        raise SearchInputError(
            f"{where}: q has shape {q.shape} and dtype {q.dtype}, expected float (T, C + 1) with T >= 1, C >= 1"
        )
    if not np.isfinite(q).all():
        raise SearchInputError(f"{where}: q holds non-finite values")
    length, channels = q.shape
    action = _as_seeds(action_seeds, (length, channels - 1), "action_seeds", where)
    background = _as_seeds(bg_seeds, (length,), "bg_seeds", where)
    return q, action, background


def dense_pseudo_labels(
    q: np.ndarray,
    action_seeds: np.ndarray,
    bg_seeds: np.ndarray,
    *,
    method: Method = "exact",
    budget: int = 25,
    prune: float = 0.1,
    outer: OuterMode = "floor",
    where: str = "video",
) -> np.ndarray:
    """Dense pseudo labels Y^ of one video (METHOD.md section 4).

    Args:
        q: (T, C + 1) fused scores; channel C is background.
        action_seeds: (T, C) bool, points plus pseudo action points per class.
        bg_seeds: (T,) bool pseudo background points.
        method: "exact" or "beam".
        budget: beam width (beam only).
        prune: beam pruning threshold (beam only).
        outer: OIC outer-region convention, "floor", "ceil" or "released".
        where: name of the video, used in error messages.

    Returns:
        (T, C) uint8; the columns of classes without action seeds are all zero.

    Raises:
        SearchInputError: wrong shapes, dtypes or non-finite scores, or bad options.
    """
    _check_options(method, budget, outer)
    q, action, background = _validated(q, action_seeds, bg_seeds, where)
    labels = np.zeros(action.shape, dtype=np.uint8)  # (T, C)
    for c in np.flatnonzero(action.any(axis=0)).tolist():
        sequence = search_class(
            q[:, c],
            action[:, c],
            class_background_seeds(action, background, c),
            method=method,
            budget=budget,
            prune=prune,
            outer=outer,
        )
        labels[:, c] = sequence.dense()
    return labels


def _search_chunk(
    chunk: list[VideoItem], *, method: Method, budget: int, prune: float, outer: OuterMode
) -> list[np.ndarray]:
    """Worker entry point: dense pseudo labels of a list of videos."""
    return [
        dense_pseudo_labels(q, action, background, method=method, budget=budget, prune=prune, outer=outer)
        for q, action, background in chunk
    ]


class SearchPool(Closing):
    """A reusable process pool for search_videos (spawning workers costs far more than a search).

    Use as a context manager, or call close(). Training keeps one open across searches.
    """

    def __init__(self, *, workers: int, context: str = "spawn") -> None:
        """Start the pool.

        Args:
            workers: number of worker processes (>= 1).
            context: multiprocessing start method ("spawn", "forkserver" or "fork"). "spawn"
                is safe next to torch's and Prefect's threads; "fork" starts faster.
        """
        if workers < 1:
            raise SearchInputError(f"SearchPool: workers={workers}, expected >= 1")
        self.workers = workers
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(context))

    def search(
        self,
        items: Sequence[VideoItem],
        *,
        method: Method = "exact",
        budget: int = 25,
        prune: float = 0.1,
        outer: OuterMode = "floor",
    ) -> list[np.ndarray]:
        """Dense pseudo labels of many videos on the pool, in input order (see search_videos)."""
        prepared = _prepare_items(items, method=method, budget=budget, outer=outer)
        chunks = [list(part) for part in _split(prepared, self.workers * 4)]
        work = partial(_search_chunk, method=method, budget=budget, prune=prune, outer=outer)
        return [labels for chunk in self._executor.map(work, chunks) for labels in chunk]

    def close(self) -> None:
        """Stop the worker processes."""
        self._executor.shutdown()


def _split(items: list[VideoItem], parts: int) -> list[list[VideoItem]]:
    """Contiguous chunks of roughly equal total snippet count, at most `parts` of them."""
    lengths = np.cumsum([item[0].shape[0] for item in items])  # (N,)
    if lengths.size == 0:
        return []
    cuts = np.searchsorted(lengths, lengths[-1] * np.arange(1, parts) / parts, side="right")
    bounds = np.unique(np.concatenate(([0], cuts, [len(items)])))
    return [items[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def _prepare_items(items: Sequence[VideoItem], *, method: str, budget: int, outer: str) -> list[VideoItem]:
    """Validate every video up front (errors name its index) and cast q to float32."""
    _check_options(method, budget, outer)
    prepared = []
    for index, item in enumerate(items):
        if len(item) != 3:
            raise SearchInputError(f"item {index}: expected a (q, action_seeds, bg_seeds) tuple")
        q, action, background = _validated(*item, where=f"item {index}")
        prepared.append((np.ascontiguousarray(q, dtype=np.float32), action, background))
    return prepared


def search_videos(
    items: Sequence[VideoItem],
    *,
    method: Method = "exact",
    budget: int = 25,
    prune: float = 0.1,
    outer: OuterMode = "floor",
    workers: int = 0,
    context: str = "spawn",
) -> list[np.ndarray]:
    """Dense pseudo labels of many videos, optionally across processes.

    Scores are cast to float32 first in both paths, so that workers=0 and workers=2 give
    identical labels. For repeated searches keep a SearchPool open instead.

    Args:
        items: per video (q (T, C + 1) float, action_seeds (T, C) bool, bg_seeds (T,) bool).
        method, budget, prune, outer: as in dense_pseudo_labels.
        workers: 0 or 1 -> in this process; more -> a temporary SearchPool of that size.
        context: multiprocessing start method of the temporary pool.

    Returns:
        One (T, C) uint8 array per video, in input order.

    Raises:
        SearchInputError: a bad item (named by its index) or bad options.
    """
    if workers < 0:
        raise SearchInputError(f"search_videos: workers={workers}, expected >= 0")
    if workers <= 1:
        prepared = _prepare_items(items, method=method, budget=budget, outer=outer)
        return _search_chunk(prepared, method=method, budget=budget, prune=prune, outer=outer)
    with SearchPool(workers=workers, context=context) as pool:
        return pool.search(items, method=method, budget=budget, prune=prune, outer=outer)
