"""The course assignment's character-level RNN, function for function.

Kept deliberately plain (column vectors, one example at a time, the global NumPy seed) so a
learner can drop any function into the notebook and get the published numbers back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Params = dict[str, np.ndarray]
_PARAM_NAMES = ("Wax", "Waa", "Wya", "b", "by")
_GRAD_NAMES = ("dWax", "dWaa", "dWya", "db", "dby")


def softmax(x: np.ndarray) -> np.ndarray:
    """Column-wise softmax, shifted by the max for numerical stability."""
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


def smooth(loss: float, cur_loss: float) -> float:
    """Exponential moving average of the loss, as printed by the notebook."""
    return loss * 0.999 + cur_loss * 0.001


def get_initial_loss(vocab_size: int, seq_length: int) -> float:
    """Loss of a uniform model over `seq_length` characters: the smoothing's starting point."""
    return float(-np.log(1.0 / vocab_size) * seq_length)


def initialize_parameters(n_a: int, n_x: int, n_y: int) -> Params:
    """Small random weights and zero biases, seeded exactly as the notebook does."""
    np.random.seed(1)
    Wax = np.random.randn(n_a, n_x) * 0.01  # input to hidden
    Waa = np.random.randn(n_a, n_a) * 0.01  # hidden to hidden
    Wya = np.random.randn(n_y, n_a) * 0.01  # hidden to output
    b = np.zeros((n_a, 1))
    by = np.zeros((n_y, 1))
    return {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}


def rnn_step_forward(
    parameters: Params, a_prev: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One time step: new hidden state and the softmax over the next character."""
    Waa, Wax, Wya, by, b = (parameters[k] for k in ("Waa", "Wax", "Wya", "by", "b"))
    a_next = np.tanh(np.dot(Wax, x) + np.dot(Waa, a_prev) + b)
    p_t = softmax(np.dot(Wya, a_next) + by)
    return a_next, p_t


def rnn_forward(
    X: list[Any], Y: list[int], a0: np.ndarray, parameters: Params, vocab_size: int = 27
) -> tuple[float, tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]]:
    """Run the whole sequence; `None` in X is the all-zero start input."""
    x: dict[int, np.ndarray] = {}
    a: dict[int, np.ndarray] = {-1: np.copy(a0)}
    y_hat: dict[int, np.ndarray] = {}
    loss = 0.0
    for t in range(len(X)):
        x[t] = np.zeros((vocab_size, 1))
        if X[t] is not None:
            x[t][X[t]] = 1
        a[t], y_hat[t] = rnn_step_forward(parameters, a[t - 1], x[t])
        loss -= np.log(y_hat[t][Y[t], 0])
    return loss, (y_hat, a, x)


def rnn_step_backward(
    dy: np.ndarray,
    gradients: dict[str, np.ndarray],
    parameters: Params,
    x: np.ndarray,
    a: np.ndarray,
    a_prev: np.ndarray,
) -> dict[str, np.ndarray]:
    """Accumulate one step's gradients and pass `da_next` back to the previous step."""
    gradients["dWya"] += np.dot(dy, a.T)
    gradients["dby"] += dy
    da = np.dot(parameters["Wya"].T, dy) + gradients["da_next"]
    daraw = (1 - a * a) * da  # back through tanh
    gradients["db"] += daraw
    gradients["dWax"] += np.dot(daraw, x.T)
    gradients["dWaa"] += np.dot(daraw, a_prev.T)
    gradients["da_next"] = np.dot(parameters["Waa"].T, daraw)
    return gradients


def rnn_backward(
    X: list[Any], Y: list[int], parameters: Params, cache: tuple[Any, Any, Any]
) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """Backpropagation through time over the whole sequence."""
    y_hat, a, x = cache
    gradients = {"d" + k: np.zeros_like(parameters[k]) for k in _PARAM_NAMES}
    gradients["da_next"] = np.zeros_like(a[0])
    for t in reversed(range(len(X))):
        dy = np.copy(y_hat[t])
        dy[Y[t]] -= 1
        gradients = rnn_step_backward(dy, gradients, parameters, x[t], a[t], a[t - 1])
    return gradients, a


def update_parameters(parameters: Params, gradients: dict[str, np.ndarray], lr: float) -> Params:
    """Plain gradient descent, in place."""
    for name in _PARAM_NAMES:
        parameters[name] += -lr * gradients["d" + name]
    return parameters


def clip(gradients: dict[str, np.ndarray], maxValue: float) -> dict[str, np.ndarray]:
    """Clip each of the five gradients element-wise to [-maxValue, maxValue], in place."""
    for name in _GRAD_NAMES:
        np.clip(gradients[name], -maxValue, maxValue, out=gradients[name])
    return gradients


def sample(parameters: Params, char_to_ix: dict[str, int], seed: int) -> list[int]:
    """Sample one name; the global seed is reset before every draw, as the notebook does."""
    vocab_size = parameters["by"].shape[0]
    n_a = parameters["Waa"].shape[1]
    x = np.zeros((vocab_size, 1))
    a_prev = np.zeros((n_a, 1))
    indices: list[int] = []
    idx = -1
    counter = 0
    newline = char_to_ix["\n"]
    while idx != newline and counter != 50:
        a, y = rnn_step_forward(parameters, a_prev, x)
        np.random.seed(counter + seed)
        idx = int(np.random.choice(range(len(y)), p=y.ravel()))
        indices.append(idx)
        x = np.zeros((vocab_size, 1))
        x[idx] = 1
        a_prev = a
        seed += 1
        counter += 1
    if counter == 50:
        indices.append(newline)
    return indices


def optimize(
    X: list[Any],
    Y: list[int],
    a_prev: np.ndarray,
    parameters: Params,
    learning_rate: float = 0.01,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """One SGD step on one example: forward, backward, clip to 5, update."""
    loss, cache = rnn_forward(X, Y, a_prev, parameters)
    gradients, a = rnn_backward(X, Y, parameters, cache)
    gradients = clip(gradients, 5)
    parameters = update_parameters(parameters, gradients, learning_rate)
    return loss, gradients, a[len(X) - 1]


def _sample_text(indices: list[int], ix_to_char: dict[int, str]) -> str:
    txt = "".join(ix_to_char[ix] for ix in indices)
    return txt[0].upper() + txt[1:]


def model(
    data: str,
    ix_to_char: dict[int, str],
    char_to_ix: dict[str, int],
    num_iterations: int = 35000,
    n_a: int = 50,
    dino_names: int = 7,
    vocab_size: int = 27,
) -> Params:
    """Train on one name per iteration, printing the notebook's progress report."""
    parameters = initialize_parameters(n_a, vocab_size, vocab_size)
    loss = get_initial_loss(vocab_size, dino_names)
    examples = [line.lower().strip() for line in data.split("\n")]
    np.random.seed(0)
    np.random.shuffle(examples)
    a_prev = np.zeros((n_a, 1))
    for j in range(num_iterations):
        name = examples[j % len(examples)]
        X: list[Any] = [None] + [char_to_ix[ch] for ch in name]
        Y = X[1:] + [char_to_ix["\n"]]
        curr_loss, _, a_prev = optimize(X, Y, a_prev, parameters, learning_rate=0.01)
        loss = smooth(loss, curr_loss)
        if j % 2000 == 0:
            print("Iteration: %d, Loss: %f" % (j, loss) + "\n")  # noqa: UP031 (the notebook's format)
            for seed in range(dino_names):
                print(_sample_text(sample(parameters, char_to_ix, seed), ix_to_char), end="")
            print("\n")
    return parameters


def dino_vocab() -> tuple[dict[str, int], dict[int, str]]:
    """The course vocabulary: '\\n' is 0, 'a'..'z' are 1..26."""
    chars = ["\n"] + [chr(ord("a") + i) for i in range(26)]
    return {ch: i for i, ch in enumerate(chars)}, dict(enumerate(chars))
