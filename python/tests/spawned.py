"""What a process started with multiprocessing's "spawn" does with a
pickled vlad object (a module of its own, so that the child can import it)."""

import pickle


def use(blob, x):
    """Unpickle ``blob`` in this (fresh) process and use it on ``x``:
    an Encoder encodes, a KMeans predicts, a VLAD transforms."""
    obj = pickle.loads(blob)
    if hasattr(obj, "encode"):
        return obj.encode(x).tobytes()
    if hasattr(obj, "transform"):
        return obj.transform(x).tobytes()
    return obj.cluster_centers_.tobytes() + obj.predict(x).tobytes()
