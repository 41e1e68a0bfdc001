"""Analytical gradients of every layer and model equal finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from app.charlm.layers import ARCHS
from app.charlm.model import CharModel, ModelConfig, cross_entropy
from app.charlm.packing import Packing


def numeric_grad(f, array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(array)
    for ix in np.ndindex(array.shape):
        old = array[ix]
        array[ix] = old + eps
        up = f()
        array[ix] = old - eps
        down = f()
        array[ix] = old
        grad[ix] = (up - down) / (2 * eps)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(a).max() + np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize(("int_input", "sizes"), [(True, None), (False, None), (True, (11, 10, 9, 3, 1)),
                                                  (False, (11, 11, 9, 3, 2))])
def test_layer_gradients_including_input_and_initial_state(arch: str, int_input: bool,
                                                           sizes: tuple[int, ...] | None) -> None:
    """Full batches, and packed ones whose step sizes are not whole blocks of 8 (layers._rows)."""
    layer = ARCHS[arch]
    rng = np.random.default_rng(1)
    T, B, D, H = (4, 3, 5, 6) if sizes is None else (len(sizes), sizes[0], 5, 6)
    packing = Packing.of(T, B, sizes)
    N = packing.rows
    p = layer.init(D, H, rng, np.float64)
    for v in p.values():
        v += rng.normal(0, 0.3, v.shape)
    x = rng.integers(0, D, N) if int_input else rng.normal(size=(N, D))
    state = tuple(rng.normal(0, 0.5, (B, H)) for _ in range(layer.state_size))
    w = rng.normal(size=(N, H))  # loss = sum(w * h): every output, through all steps

    def loss() -> float:
        return float((w * layer.forward(p, x, state, packing)[0]).sum())

    _, _, cache = layer.forward(p, x, state, packing)
    dh = w
    dx, grads, dstate0 = layer.backward(p, cache, dh)
    for key in p:
        assert rel_error(numeric_grad(loss, p[key]), grads[key]) < 1e-6, key
    for s, ds in zip(state, dstate0, strict=False):
        assert rel_error(numeric_grad(loss, s), ds) < 1e-6
    if not int_input:
        assert dx is not None
        assert rel_error(numeric_grad(loss, x), dx) < 1e-6


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_stacked_model_gradients_with_carried_state_and_dropout(arch: str) -> None:
    net = CharModel(ModelConfig(arch, vocab_size=7, hidden=5, layers=2, dropout=0.3, weight_drop=0.4))
    rng = np.random.default_rng(0)
    params = net.init_params(rng, np.float64)
    for v in params.values():
        v += rng.normal(0, 0.3, v.shape)
    ids, targets = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
    mask = rng.random((5, 3)) > 0.2
    carried = [tuple(rng.normal(0, 0.5, (3, 5)) for _ in range(net.layer.state_size)) for _ in range(2)]

    def loss() -> float:  # the same dropout masks every call: the seed is fixed
        logits, _, _ = net.forward(params, ids, carried, np.random.default_rng(5))
        return cross_entropy(logits, targets, mask)[0]

    logits, _, cache = net.forward(params, ids, carried, np.random.default_rng(5))
    _, dlogits = cross_entropy(logits, targets, mask)
    grads = net.backward(params, cache, dlogits)
    assert set(grads) == set(params)
    for key in params:
        assert rel_error(numeric_grad(loss, params[key]), grads[key]) < 1e-6, key


def test_step_matches_forward() -> None:
    for arch in ARCHS:
        net = CharModel(ModelConfig(arch, vocab_size=9, hidden=8, layers=2))
        params = net.init_params(np.random.default_rng(2), np.float64)
        ids = np.random.default_rng(3).integers(0, 9, (6, 2))
        logits, _, _ = net.forward(params, ids, net.zero_state(2, np.float64))
        state = net.zero_state(2, np.float64)
        step = net.stepper(params)
        for t in range(6):
            step_logits, state = step(ids[t], state)
            np.testing.assert_allclose(step_logits, logits[t], rtol=1e-10, atol=1e-12)


def test_overfits_one_batch() -> None:
    from app.charlm.optim import Adam

    net = CharModel(ModelConfig("lstm", vocab_size=6, hidden=32, layers=1))
    params = net.init_params(np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(1, 6, (8, 4))
    targets = np.roll(ids, -1, axis=0)
    opt = Adam(params)
    first = None
    for _ in range(300):
        logits, _, cache = net.forward(params, ids, net.zero_state(4))
        loss, dlogits = cross_entropy(logits, targets)
        first = loss if first is None else first
        opt.step(params, net.backward(params, cache, dlogits), 0.01)
    assert first > 1.5 and loss < 0.05


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_skipping_padding_gives_the_masked_loss_and_its_gradients(arch: str) -> None:
    """`active` (names longest first) computes only running rows; on a masked loss the result must
    equal the padded computation over every row, which finite differences checked above."""
    net = CharModel(ModelConfig(arch, 7, 6, 2))
    rng = np.random.default_rng(3)
    params = net.init_params(rng, np.float64)
    lengths = [5, 5, 3, 1]  # per batch column, longest first
    T, B = max(lengths), len(lengths)
    ids = rng.integers(1, 7, (T, B))
    targets = rng.integers(0, 7, (T, B))
    mask = np.array([[t < n for n in lengths] for t in range(T)])
    active = mask.sum(axis=1).tolist()
    assert active == [4, 3, 3, 2, 2]
    results = []
    for act in (None, active):
        logits, _, cache = net.forward(params, ids, net.zero_state(B, np.float64), active=act)
        loss, dlogits = cross_entropy(logits, targets, mask)
        results.append((loss, net.backward(params, cache, dlogits)))
    (loss_full, grads_full), (loss_skip, grads_skip) = results
    assert loss_skip == pytest.approx(loss_full, rel=1e-12)
    for k in grads_full:
        np.testing.assert_allclose(grads_skip[k], grads_full[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_packing_keeps_the_rows_that_hold_data() -> None:
    packing = Packing.of(3, 3, [3, 2, 1])  # three sequences of lengths 3, 2 and 1
    a = np.arange(9).reshape(3, 3)  # a[t, b] = 3t + b
    assert packing.pack(a).tolist() == [0, 1, 2, 3, 4, 6]
    assert packing.unpack(packing.pack(a)).tolist() == [[0, 1, 2], [3, 4, 0], [6, 0, 0]]
    stacked = np.array([-1, -2, -3, *packing.pack(a)])  # the initial state, then the packed rows
    assert packing.previous(stacked).tolist() == [-1, -2, -3, 0, 1, 3]
    assert packing.scale(np.ones(6), np.array([1.0, 2.0, 3.0])).tolist() == [1, 2, 3, 1, 2, 1]
    full = Packing.of(2, 2)
    assert full.full and full.previous(np.arange(6)).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="sorted longest first"):
        Packing.of(3, 3, [3, 3, 4])
