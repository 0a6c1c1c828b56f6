"""Mean average precision, the standard definition (as Holidays and
Oxford report it, without "junk" images).

Each image in turn is the query; the database is every other image of the
same set (the query itself is left out); an image is relevant to the query
when it is of the same family. The database is ranked by decreasing inner
product with the query (the encodings are L2-normalized, so it is the
cosine). Ties are broken against the query: among equal scores the
irrelevant images rank first, so an image without descriptors (a row of
zeros, equal scores everywhere) never gains from the database's order,
which groups each family. The average precision of one query is
the mean, over its relevant images, of the precision at the rank of each;
the mAP is the mean over queries that have at least one relevant image.
"""

from __future__ import annotations

import numpy as np


def average_precision(ranked_relevance: np.ndarray) -> float:
    """AP of one ranked list: ``ranked_relevance[r]`` is whether the image
    at rank ``r`` (0 = best) is relevant. At least one must be."""
    relevant = np.asarray(ranked_relevance, dtype=bool)
    hits = np.flatnonzero(relevant)
    if len(hits) == 0:
        raise ValueError("average precision needs at least one relevant item")
    # The k-th hit (1-based) at 0-based rank r has precision k / (r + 1).
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def mean_average_precision(encodings: np.ndarray, family: np.ndarray) -> float:
    """mAP of every image as a query against all the others, ``encodings``
    ``(T, D)`` and ``family`` ``(T,)``."""
    x = np.asarray(encodings, dtype=np.float64)
    family = np.asarray(family)
    if x.ndim != 2 or len(x) != len(family):
        raise ValueError(f"encodings {x.shape} and families {family.shape} do not match")
    scores = x @ x.T
    aps = []
    for q in range(len(x)):
        others = np.delete(np.arange(len(x)), q)
        relevant_others = family[others] == family[q]
        # Sorted by score, descending; on ties the relevant last.
        order = np.lexsort((relevant_others, -scores[q, others]))
        relevant = relevant_others[order]
        if relevant.any():
            aps.append(average_precision(relevant))
    if not aps:
        raise ValueError("no query has a relevant image: every family has one member")
    return float(np.mean(aps))
