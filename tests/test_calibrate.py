"""Temperature scaling: finds the temperature that generated the data, and keeps the model's API."""

from __future__ import annotations

import numpy as np
import pytest

from app.charlm.calibrate import calibrate, fit_temperature, held_out_logits, nll_at, with_temperature
from app.charlm.evaluate import names_nll, text_nll
from app.charlm.model import CharModel, ModelConfig


def test_fit_recovers_the_temperature_that_drew_the_targets() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20_000, 6))
    p = np.exp(logits / 2.0)
    p /= p.sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(6, p=row) for row in p])
    assert fit_temperature(logits, targets) == pytest.approx(2.0, abs=0.1)
    # by hand: one position, logits (0, log 3), target 1 -> p = 3/4 at T = 1
    assert nll_at(np.array([[0.0, np.log(3)]]), np.array([1]), 1.0) == pytest.approx(-np.log(0.75))


def _tiny() -> tuple[CharModel, dict[str, np.ndarray]]:
    net = CharModel(ModelConfig("lstm", 5, 8, 1))
    return net, {k: v * 4 for k, v in net.init_params(np.random.default_rng(3)).items()}


def test_logits_agree_with_eval_and_the_scaled_weights_divide_them() -> None:
    net, params = _tiny()
    names = [np.array([1, 2, 3]), np.array([4]), np.array([2, 2, 1, 4, 3])]
    logits, targets = held_out_logits(net, params, names, "names")
    total, count = names_nll(net, params, names)
    assert len(targets) == count == 3 + 1 + 1 + 1 + 5 + 1
    assert nll_at(logits, targets, 1.0) == pytest.approx(total / count, rel=1e-5)
    scaled, _ = held_out_logits(net, with_temperature(params, 1.7), names, "names")
    np.testing.assert_allclose(scaled, logits / 1.7, rtol=1e-4, atol=1e-5)
    ids = np.random.default_rng(1).integers(0, 5, 3000)
    logits, targets = held_out_logits(net, params, ids, "text")
    total, count = text_nll(net, params, ids)
    assert len(targets) == count == len(ids) - 1
    assert nll_at(logits, targets, 1.0) == pytest.approx(total / count, rel=1e-4)


def test_calibrate_never_raises_the_validation_loss() -> None:
    net, params = _tiny()
    names = [np.random.default_rng(i).integers(1, 5, 6) for i in range(40)]
    calibrated, info = calibrate(net, params, names, "names")
    assert info["val_nll_after"] <= info["val_nll_before"]
    total, count = names_nll(net, calibrated, names)
    assert total / count == pytest.approx(info["val_nll_after"], rel=1e-5)
