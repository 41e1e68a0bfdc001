"""An ensemble trained as one block-diagonal network (members.py) is K separate networks: each
member's logits equal those of a network of its own size computed on its own, the plain network's
logits are their mean, gradients equal finite differences, and the blocks stay apart in training."""

from __future__ import annotations

import numpy as np
import pytest

from app.charlm.checkpoint import TrainedModel, recorded_members
from app.charlm.members import block_masks, is_block_diagonal, merge, split
from app.charlm.model import CharModel, ModelConfig, cross_entropy
from app.charlm.train import TrainConfig, train
from app.charlm.vocab import Vocab

from .test_model_gradients import numeric_grad, rel_error


def _members_net(arch: str, dropout: float = 0.0, weight_drop: float = 0.0) -> tuple[CharModel, CharModel]:
    """(3 members of 4 units as one network of 12, one member on its own); 2 layers, 7 characters."""
    config = ModelConfig(arch, vocab_size=7, hidden=12, layers=2, dropout=dropout, weight_drop=weight_drop)
    return CharModel(config, members=3), CharModel(ModelConfig(arch, 7, 4, 2))


@pytest.mark.parametrize("arch", ["lstm", "rnn"])
def test_each_member_is_a_network_of_its_own(arch: str) -> None:
    net, alone = _members_net(arch)
    params = net.init_params(np.random.default_rng(0), np.float64)
    ids = np.random.default_rng(1).integers(0, 7, (5, 2))
    trained, _, _ = net.forward(params, ids, net.zero_state(2, np.float64), np.random.default_rng(2))
    plain, _, _ = net.forward(params, ids, net.zero_state(2, np.float64))
    own = [alone.forward(p, ids, alone.zero_state(2, np.float64))[0] for p in split(params, 2, 3)]
    for k in range(3):  # member k of sequence b is column b*3 + k
        np.testing.assert_allclose(trained[:, k::3], own[k], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(plain, np.mean(own, axis=0), rtol=1e-12, atol=1e-12)
    back = merge(split(params, 2, 3), 2)
    assert all(np.array_equal(back[k], params[k]) for k in params)


@pytest.mark.parametrize("arch", ["lstm", "rnn"])
def test_member_gradients_equal_finite_differences(arch: str) -> None:
    net, _ = _members_net(arch, dropout=0.3, weight_drop=0.4)
    rng = np.random.default_rng(0)
    params = net.init_params(rng, np.float64)
    masks = block_masks(params, 2, 3)
    for key, v in params.items():
        v += rng.normal(0, 0.3, v.shape) * masks.get(key, 1.0)  # off-diagonal blocks stay zero
    ids, targets = rng.integers(0, 7, (4, 3)), rng.integers(0, 7, (4, 3))
    active = [3, 3, 2, 1]  # packed: sequences of lengths 4, 3, 2
    mask = np.arange(3)[None, :] < np.array(active)[:, None]

    def loss() -> float:  # the mean of the members' cross-entropies; the same dropout masks every call
        logits, _, _ = net.forward(params, ids, net.zero_state(3, np.float64), np.random.default_rng(5), active)
        return cross_entropy(logits, np.repeat(targets, 3, axis=1), np.repeat(mask, 3, axis=1))[0]

    logits, _, cache = net.forward(params, ids, net.zero_state(3, np.float64), np.random.default_rng(5), active)
    grads = net.backward(params, cache, cross_entropy(logits, np.repeat(targets, 3, axis=1),
                                                      np.repeat(mask, 3, axis=1))[1])
    assert set(grads) == set(params)
    for key in params:
        keep = masks.get(key, 1.0)
        assert rel_error(numeric_grad(loss, params[key]) * keep, grads[key]) < 1e-6, key
        assert not np.any(grads[key] * (1 - keep)), key  # nothing flows between members


def test_training_keeps_the_members_apart() -> None:
    names = "\n".join(f"{a}{b}saurus" for a in "bcdfghk" for b in "aeiou") * 30  # over 1,000 names
    model = train(names, TrainConfig(hidden=12, layers=2, members=3, epochs=2, batch_size=16, seed=1))
    masks = block_masks(model.params, 2, 3)
    for key, keep in masks.items():
        assert not np.any(model.params[key] * (1 - keep)), key
        assert np.count_nonzero(model.params[key] * keep) == keep.sum(), key
    assert model.meta["training"]["options"]["members"] == 3 and model.config.hidden == 12
    assert model.members == 3 and model.net.members == 3  # sampling runs the members apart


@pytest.mark.parametrize("arch", ["lstm", "rnn"])
def test_the_members_stepper_equals_each_member_stepped_on_its_own(arch: str) -> None:
    net, alone = _members_net(arch)
    rng = np.random.default_rng(3)
    params = net.init_params(rng, np.float64)
    ids = rng.integers(0, 7, 5)
    state = [tuple(rng.uniform(-1, 1, (5, 12)) for _ in range(net.layer.state_size)) for _ in range(2)]
    logits, new = net.stepper(params)(ids, state)
    dense_logits, dense_new = CharModel(net.config).stepper(params)(ids, state)
    own = [alone.stepper(p)(ids, [tuple(a[:, 4 * k : 4 * k + 4] for a in s) for s in state])
           for k, p in enumerate(split(params, 2, 3))]
    # the plain network's logits are the mean of the members' (K·h_k·Wy_k + by each), module docstring
    np.testing.assert_allclose(logits, np.mean([o[0] for o in own], axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logits, dense_logits, rtol=1e-12, atol=1e-12)
    for n in range(2):
        for j in range(net.layer.state_size):
            np.testing.assert_allclose(new[n][j], np.concatenate([o[1][n][j] for o in own], axis=1), atol=1e-12)
            np.testing.assert_allclose(new[n][j], dense_new[n][j], atol=1e-12)


def test_only_block_diagonal_weights_are_stepped_as_members() -> None:
    net, _ = _members_net("lstm")
    params = net.init_params(np.random.default_rng(0))
    assert is_block_diagonal(params, 2, 3)
    assert not is_block_diagonal(params, 2, 5)  # 5 does not divide 12 units
    assert not is_block_diagonal(params, 2, 2)  # halves of 6 units would read units of two members
    recorded = {"training": {"options": {"members": 3}}}
    model = TrainedModel("names", net.config, Vocab(tuple("\nabcdef")), params, meta=recorded)
    assert model.members == 3
    params["l1.Wh"][0, 4 * 12 - 1] = 0.5  # member 0's unit 0 feeds member 2's last g gate
    assert not is_block_diagonal(params, 2, 3)
    # a model.json that records members its weights do not have samples as the plain network
    assert TrainedModel("names", net.config, Vocab(tuple("\nabcdef")), params, meta=recorded).members == 1


@pytest.mark.parametrize("training, expected", [
    ({"options": {"members": 3}}, 3), ({"options": {"members": 4}}, 4), ({"options": {}}, 1), (None, 1),
    ({"options": None}, 1), ({"options": [1]}, 1), ("x", 1), ({"options": {"members": "3"}}, 1),
    ({"options": {"members": True}}, 1), ({"options": {"members": 3.0}}, 1), ({"options": {"members": 0}}, 1),
    ({"options": {"members": -3}}, 1), ({"options": {"members": 5}}, 1), ({"options": {"members": 24}}, 1),
    ({"options": {"members": 2**70}}, 1),
])
def test_members_recorded_in_a_damaged_model_json_count_as_one(training: object, expected: int) -> None:
    meta = {"training": training}
    assert recorded_members(meta, 12) == expected  # 12 units: 1, 2, 3, 4, 6 or 12 members split them evenly
    net, _ = _members_net("lstm")
    model = TrainedModel("names", net.config, Vocab(tuple("\nabcdef")), net.init_params(np.random.default_rng(0)),
                         meta=meta)
    assert model.members == (3 if expected == 3 else 1)  # the weights are 3 members' (4 and 1 do not fit them)
    model.stepper(np.array([1, 2]), model.net.zero_state(2))  # it samples either way
