"""A lexicon scorer with injected faults, loaded by jobs as the plugin ``tests.support.faulty_scorer:FaultyScorer``.

``options.die_dir`` and ``options.deaths``: the first ``deaths`` calls to ``score`` across all
processes (counted with marker files created atomically in ``die_dir``) kill their process
outright, as the kernel's out-of-memory killer would. ``options.poison``: any batch holding a text
with this word raises, every time (a deterministic failure).
"""

from __future__ import annotations

import os

import numpy as np

from affalign.scorers.lexicon import LexiconScorer


class FaultyScorer(LexiconScorer):
    name = "faulty"
    option_keys = frozenset({"die_dir", "deaths", "poison"})  # a plugin declares the options it reads

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        opts = self.spec.options
        die_dir, deaths = opts.get("die_dir"), int(opts.get("deaths", 0))
        if die_dir:
            for i in range(deaths):
                try:
                    fd = os.open(os.path.join(die_dir, f"died-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.close(fd)
                os._exit(137)
        poison = opts.get("poison")
        if poison and any(poison in (t or "") for t in texts):
            raise ValueError(f"poisoned text ({poison})")
        return super().score(texts)


class HalfFailingScorer(LexiconScorer):
    """The lexicon scorer, except that every second text is a failure (a NaN row), as an LM judge's
    malformed answers are."""

    name = "half_failing"

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        out = super().score(texts)
        for m in out.values():
            m[1::2] = np.nan
        return out


class RecordingScorer(LexiconScorer):
    """The lexicon scorer, appending the wall-clock time and batch size of every call to
    ``options.log`` (so a test can see when scoring ran, from any process)."""

    name = "recording"
    option_keys = frozenset({"log"})

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        import time

        with open(self.spec.options["log"], "a") as f:
            f.write(f"{time.time():.6f} {len(texts)}\n")
        return super().score(texts)
