"""Pickle (SPEC §15): Encoder, KMeans and VLAD unpickle to objects that give
the same bits, here and in a process started with "spawn"."""

import multiprocessing
import pickle

import numpy as np
import pytest

import spawned
import vlad
from conftest import codebook, descriptors_near

C = codebook(k=5, f=6, seed=30)
X = descriptors_near(C, 400, seed=31).astype(np.float32)
IMAGES = X.reshape(8, 50, 6)
RNG = np.random.default_rng(32)
W = RNG.normal(size=(5, 6))
B = RNG.normal(size=5)


def encoders():
    return {
        "hard": vlad.Encoder(C, norm="ssr,l2", backend="cpu"),
        "hard-rn-auto": vlad.Encoder(C.astype(np.float32), norm="rn,intra,l2", backend="auto"),
        "soft": vlad.Encoder(C, norm="power=0.3,l2", backend="cpu", assignment="soft", weights=W, bias=B),
        "soft-alpha": vlad.Encoder(C, norm="mass", backend="reference", assignment="soft", alpha=0.037),
    }


@pytest.mark.parametrize("name", ["hard", "hard-rn-auto", "soft", "soft-alpha"])
def test_encoder_round_trip_gives_the_same_bits(name):
    enc = encoders()[name]
    back = pickle.loads(pickle.dumps(enc))
    assert type(back) is vlad.Encoder and back is not enc
    for attribute in ("n_clusters", "dim", "norm", "backend", "assignment"):
        assert getattr(back, attribute) == getattr(enc, attribute), attribute
    assert back.centroids.tobytes() == enc.centroids.tobytes()
    assert back.encode(IMAGES).tobytes() == enc.encode(IMAGES).tobytes()
    assert back.assign(X).tobytes() == enc.assign(X).tobytes()


def test_native_soft_parameters_are_what_was_given():
    soft = encoders()["soft"]._native
    assert soft.weights.tobytes() == W.astype(np.float32).tobytes()
    assert soft.bias.tobytes() == B.astype(np.float32).tobytes()
    assert soft.alpha is None
    alpha = encoders()["soft-alpha"]._native
    assert alpha.weights is None and alpha.bias is None
    assert alpha.alpha == np.float32(0.037)
    hard = encoders()["hard"]._native
    assert hard.weights is None and hard.alpha is None


def test_a_newer_format_is_refused_with_a_message():
    from vlad import _pickle

    state = _pickle.state(encoders()["hard"])
    state["format"] = 99
    with pytest.raises(vlad.InputError, match="format 99"):
        _pickle.rebuild(state)


def fitted():
    return {
        "kmeans": vlad.KMeans(n_clusters=5, seed=4, backend="cpu").fit(X),
        "vlad": vlad.VLAD(n_clusters=5, seed=4, backend="cpu").fit(IMAGES),
    }


def test_estimators_round_trip():
    for name, est in fitted().items():
        back = pickle.loads(pickle.dumps(est))
        assert back.get_params() == est.get_params(), name
        if name == "kmeans":
            assert back.cluster_centers_.tobytes() == est.cluster_centers_.tobytes()
            assert back.predict(X).tobytes() == est.predict(X).tobytes()
            assert back.labels_.tobytes() == est.labels_.tobytes()
        else:
            assert back.transform(IMAGES).tobytes() == est.transform(IMAGES).tobytes()


def test_across_processes_with_spawn():
    objects = dict(encoders())
    objects.update(fitted())
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        for name, obj in objects.items():
            x = X if name == "kmeans" else IMAGES
            theirs = pool.apply(spawned.use, (pickle.dumps(obj), x))
            assert theirs == spawned.use(pickle.dumps(obj), x), name
