"""The course-faithful RNN reproduces every value published in the course notebook."""

import numpy as np
import pytest

from app.charlm import course


def test_softmax_smooth_initial_loss() -> None:
    p = course.softmax(np.array([[1.0], [2.0], [3.0]]))
    assert p.sum() == pytest.approx(1.0)
    assert p[2, 0] == pytest.approx(np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3)))
    assert course.smooth(10.0, 20.0) == pytest.approx(10.01)
    assert course.get_initial_loss(27, 7) == pytest.approx(7 * np.log(27))


def test_initialize_parameters_shapes_and_seed() -> None:
    p = course.initialize_parameters(50, 27, 27)
    np.random.seed(1)
    assert np.array_equal(p["Wax"], np.random.randn(50, 27) * 0.01)
    assert p["Waa"].shape == (50, 50) and p["Wya"].shape == (27, 50)
    assert not p["b"].any() and not p["by"].any()


def test_clip_published_values() -> None:
    np.random.seed(3)
    grads = {
        "dWax": np.random.randn(5, 3) * 10,
        "dWaa": np.random.randn(5, 5) * 10,
        "dWya": np.random.randn(2, 5) * 10,
        "db": np.random.randn(5, 1) * 10,
        "dby": np.random.randn(2, 1) * 10,
    }
    g = course.clip(grads, 10)
    assert g["dWaa"][1][2] == 10.0
    assert g["dWax"][3][1] == -10.0
    assert g["dWya"][1][2] == pytest.approx(0.29713815361)
    assert g["db"][4] == pytest.approx([10.0])
    assert g["dby"][1] == pytest.approx([8.45833407])


def test_sample_published_indices() -> None:
    char_to_ix, _ = course.dino_vocab()
    np.random.seed(2)
    n_a = 100
    Wax, Waa, Wya = np.random.randn(n_a, 27), np.random.randn(n_a, n_a), np.random.randn(27, n_a)
    b, by = np.random.randn(n_a, 1), np.random.randn(27, 1)
    params = {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}
    indices = course.sample(params, char_to_ix, 0)
    published = [12, 17, 24, 14, 13, 9, 10, 22, 24, 6, 13, 11, 12, 6, 21, 15, 21, 14, 3, 2, 1, 21, 18, 24,
                 7, 25, 6, 25, 18, 10, 16, 2, 3, 8, 15, 12, 11, 7, 1, 12]
    assert indices[: len(published)] == published
    assert indices[-1] == char_to_ix["\n"] and len(indices) <= 51


def test_optimize_published_values() -> None:
    np.random.seed(1)
    a_prev = np.random.randn(100, 1)
    Wax, Waa, Wya = np.random.randn(100, 27), np.random.randn(100, 100), np.random.randn(27, 100)
    b, by = np.random.randn(100, 1), np.random.randn(27, 1)
    params = {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}
    loss, g, a_last = course.optimize([12, 3, 5, 11, 22, 3], [4, 14, 11, 22, 25, 26], a_prev, params, 0.01)
    assert loss == pytest.approx(126.503975722)
    assert g["dWaa"][1][2] == pytest.approx(0.194709315347)
    assert np.argmax(g["dWax"]) == 93
    assert g["dWya"][1][2] == pytest.approx(-0.007773876032)
    assert g["db"][4] == pytest.approx([-0.06809825])
    assert g["dby"][1] == pytest.approx([0.01538192])
    assert a_last[4] == pytest.approx([-1.0])


def test_rnn_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.5, s) for k, s in
              {"Wax": (4, 27), "Waa": (4, 4), "Wya": (27, 4), "b": (4, 1), "by": (27, 1)}.items()}
    X, Y = [None, 3, 7, 1], [3, 7, 1, 0]
    a0 = rng.normal(0, 0.5, (4, 1))
    _, cache = course.rnn_forward(X, Y, a0, params)
    grads, _ = course.rnn_backward(X, Y, params, cache)
    for name in ("Wax", "Waa", "Wya", "b", "by"):
        p = params[name]
        numeric = np.zeros_like(p)
        for ix in np.ndindex(p.shape):
            old = p[ix]
            p[ix] = old + 1e-6
            up = course.rnn_forward(X, Y, a0, params)[0]
            p[ix] = old - 1e-6
            down = course.rnn_forward(X, Y, a0, params)[0]
            p[ix] = old
            numeric[ix] = (up - down) / 2e-6
        err = np.abs(numeric - grads["d" + name]).max() / (np.abs(numeric).max() + 1e-12)
        assert err < 1e-6, name


def test_model_report_matches_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    char_to_ix, ix_to_char = course.dino_vocab()
    with open("data/dinos.txt") as fh:
        data = fh.read().lower()
    course.model(data, ix_to_char, char_to_ix, num_iterations=2001)
    out = capsys.readouterr().out
    first = ["Nkzxwtdmfqoeyhsqwasjkjvu", "Kneb", "Kzxwtdmfqoeyhsqwasjkjvu", "Neb", "Zxwtdmfqoeyhsqwasjkjvu",
             "Eb", "Xwtdmfqoeyhsqwasjkjvu"]
    second = ["Liusskeomnolxeros", "Hmdaairus", "Hytroligoraurus", "Lecalosapaus", "Xusicikoraurus",
              "Abalpsamantisaurus", "Tpraneronxeros"]
    expected = ("Iteration: 0, Loss: 23.087336\n\n" + "\n".join(first) + "\n\n\n"
                + "Iteration: 2000, Loss: 27.884160\n\n" + "\n".join(second) + "\n\n\n")
    assert out == expected
