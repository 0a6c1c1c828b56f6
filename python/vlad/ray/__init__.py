"""vlad on Ray (SPEC §13): encoding and codebook training over a Ray
Dataset, on a local cluster (``ray.init()``) or an existing one
(``RAY_ADDRESS``). Needs ``pip install "vlad-gpu[ray]"``; ``import vlad`` alone
never imports Ray.

    import ray, vlad.ray
    ds = ray.data.read_parquet("shards/", include_paths=True)
    km = vlad.ray.kmeans(ds, 256, dim=128, concurrency=4)
    out = vlad.ray.encode(ds, km.cluster_centers_, concurrency=4)
    out.write_parquet("encoded/")

Command line: ``python -m vlad.ray encode|kmeans --help``.
"""

from ._encode import encode
from ._kmeans import kmeans, sample

__all__ = ["encode", "kmeans", "sample"]
