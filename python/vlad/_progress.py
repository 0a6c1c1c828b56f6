"""Progress like the ecosystem's: ``verbose=`` as scikit-learn has it.

``verbose`` 0 (or False): nothing. 1 (or True): a tqdm bar over the Lloyd
iterations (or over the images of an encode) when tqdm is installed, else
one line per event. 2 or more:
one line per event always (what ``vlad kmeans`` prints when its stderr is
not a terminal), with or without tqdm. Everything goes to ``sys.stderr``
(so notebooks and pytest see it), never to stdout.
"""

from __future__ import annotations

import sys
from typing import Any, Optional


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class KMeansProgress:
    """The ``progress`` callback of ``_vlad.kmeans_fit``: called with
    ``(stage, iteration, max_iterations, text)`` for each event."""

    def __init__(self, verbose: Any, what: str = "kmeans") -> None:
        level = int(verbose)
        tqdm = _tqdm() if level == 1 else None
        self._what = what
        self._tqdm = tqdm
        self._bar: Optional[Any] = None

    def __call__(self, stage: str, iteration: int, max_iterations: int, text: str) -> None:
        if self._tqdm is None:
            print(f"{self._what}: {text}", file=sys.stderr, flush=True)
            return
        if stage == "iteration":
            if self._bar is None:
                self._bar = self._tqdm(
                    total=max_iterations, desc=self._what, unit="iter", file=sys.stderr
                )
            self._bar.update(iteration - self._bar.n)
            self._bar.set_postfix_str(text.split(": ", 1)[-1], refresh=False)
        elif stage == "finished":
            self.close()
            print(f"{self._what}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar (training can stop before ``max_iterations``)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def kmeans_progress(verbose: Any, what: str = "kmeans") -> Optional[KMeansProgress]:
    """The callback for ``verbose``, or None when it asks for nothing."""
    if not verbose:
        return None
    return KMeansProgress(verbose, what)


class EncodeProgress:
    """The ``progress`` callback of ``_vlad.Encoder.encode``: called with
    ``(images done, images)`` before the encode and after each group of
    whole images."""

    def __init__(self, verbose: Any, what: str = "encode") -> None:
        level = int(verbose)
        self._what = what
        self._tqdm = _tqdm() if level == 1 else None
        self._bar: Optional[Any] = None

    def __call__(self, done: int, total: int) -> None:
        if self._tqdm is None:
            print(f"{self._what}: {done}/{total} images", file=sys.stderr, flush=True)
            return
        if self._bar is None:
            self._bar = self._tqdm(total=total, desc=self._what, unit="img", file=sys.stderr)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar (an encode that fails stops short of the total)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def encode_progress(verbose: Any, what: str = "encode") -> Optional[EncodeProgress]:
    """The callback for an encode's ``verbose``, or None for nothing."""
    if not verbose:
        return None
    return EncodeProgress(verbose, what)
