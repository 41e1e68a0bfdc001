"""An ensemble of K networks trained side by side as one network with block-diagonal weights.

K members of H hidden units each are laid out as one network of K·H units: unit k·H + u of a
layer is unit u of member k, and a layer's G gates keep their blocks of K·H columns (column
q·K·H + k·H + u is gate q of that unit). Every matrix from one layer's hidden units to the next
(the recurrent Wh, the Wx of every layer but the first) is block-diagonal: member k reads only
its own units, so the members' hidden states are exactly those of K separate networks. The
first layer's Wx (rows: characters) and the biases are dense; the output layer is shared as

    logits = h · Wy + by = (1/K) Σ_k (K·h_k·Wy_k + by)

i.e. the plain network's logits are the average of the members' logits, a logit-averaging
ensemble (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", section 1, and
Lakshminarayanan et al. 2017 for deep ensembles), so sampling, scoring and `eval` use it as any
network of K·H units, with nothing new to store. In training each member's own logits
K·h_k·Wy_k + by (one output bias shared by all) get their own loss, the mean of the members'
cross-entropies, so members learn as separate networks from separate random starts (the source
of an ensemble's gain) and the off-diagonal blocks, which start at zero and get their gradients
zeroed, stay exactly zero under Adam. A training step costs what the dense K·H network's does;
sampling (`stepper`) runs the members' blocks apart, K products of H units in place of one of K·H.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .layers import Params, RecurrentLayer, State


def unit_member(hidden: int, members: int) -> np.ndarray:
    """Member of each of the hidden units (hidden,) of one layer: unit k·H + u is member k's."""
    return np.arange(hidden) // (hidden // members)


def _rows_are_units(n: int, key: str) -> bool:
    """Whether the rows of layer n's `key` are hidden units (block-diagonal), not characters or none."""
    return key == "Wh" or (key == "Wx" and n > 0)


def _gate_columns(gates: int, hidden: int, units: np.ndarray) -> np.ndarray:
    """The columns of `units` in a layer's `gates` blocks of `hidden` columns, gate by gate."""
    return (np.arange(gates)[:, None] * hidden + units[None, :]).ravel()


def block_masks(params: Params, layers: int, members: int) -> dict[str, np.ndarray]:
    """1 where a weight connects a member to itself, 0 elsewhere, for every block-diagonal matrix
    (each layer's Wh and the Wx of layers after the first), as (rows, columns) float32 arrays."""
    masks: dict[str, np.ndarray] = {}
    for n in range(layers):
        for key in ("Wx", "Wh"):
            if _rows_are_units(n, key):
                rows, columns = params[f"l{n}.{key}"].shape
                of_row = unit_member(rows, members)
                of_column = of_row[np.arange(columns) % rows]  # the gates' blocks of `rows` columns
                masks[f"l{n}.{key}"] = (of_row[:, None] == of_column[None, :]).astype(np.float32)
    return masks


def merge(member_params: list[Params], layers: int) -> Params:
    """The network of K members' separate parameters (each of H units): K·H units as laid out in
    the module docstring, Wy = [Wy_1; …; Wy_K] / K and by = the mean of the members' by, so its
    logits are the mean of the members' logits. Inverse of `split`."""
    K = len(member_params)
    H = member_params[0]["Wy"].shape[0]
    merged: Params = {}
    for n in range(layers):
        for key in ("Wx", "Wh", "b"):
            parts = [p[f"l{n}.{key}"] for p in member_params]
            gates = parts[0].shape[-1] // H
            square = _rows_are_units(n, key)
            out = np.zeros(((K * H if square else parts[0].shape[0]),) * (parts[0].ndim - 1) + (gates * K * H,),
                           dtype=parts[0].dtype)
            for k, part in enumerate(parts):
                units = k * H + np.arange(H)
                columns = _gate_columns(gates, K * H, units)
                if part.ndim == 1:
                    out[columns] = part
                elif square:
                    out[np.ix_(units, columns)] = part
                else:
                    out[:, columns] = part
            merged[f"l{n}.{key}"] = out
    merged["Wy"] = np.concatenate([p["Wy"] for p in member_params]) / np.float32(K)
    merged["by"] = np.mean([p["by"] for p in member_params], axis=0).astype(member_params[0]["by"].dtype)
    return merged


def split(params: Params, layers: int, members: int) -> list[Params]:
    """Each member's parameters as a separate network of H = hidden / members units (with the
    shared by), whose logits are member k's logits in training (K·h_k·Wy_k + by)."""
    hidden = params["Wy"].shape[0]
    H = hidden // members
    out: list[Params] = []
    for k in range(members):
        units = k * H + np.arange(H)
        p: Params = {}
        for n in range(layers):
            for key in ("Wx", "Wh", "b"):
                whole = params[f"l{n}.{key}"]
                columns = _gate_columns(whole.shape[-1] // hidden, hidden, units)
                if whole.ndim == 1:
                    p[f"l{n}.{key}"] = whole[columns]
                elif _rows_are_units(n, key):
                    p[f"l{n}.{key}"] = whole[np.ix_(units, columns)]
                else:
                    p[f"l{n}.{key}"] = whole[:, columns]
        p["Wy"] = params["Wy"][units] * np.float32(members)
        p["by"] = params["by"].copy()
        out.append(p)
    return out


def is_block_diagonal(params: Params, layers: int, members: int) -> bool:
    """Whether `members` divides the hidden units and every weight between different members'
    units (the off-diagonal blocks of `block_masks`) is exactly zero."""
    hidden = params["Wy"].shape[0]
    if members < 2 or hidden % members:
        return False
    return all(not np.any(params[key][keep == 0]) for key, keep in block_masks(params, layers, members).items())


def stepper(params: Params, layers: int, members: int, layer: RecurrentLayer
            ) -> Callable[[np.ndarray, list[State]], tuple[np.ndarray, list[State]]]:
    """A sampling stepper (model.Stepper: ids (B,) and per-layer states of (B, K·H) arrays -> logits
    (B, V) and the next states) for block-diagonal weights (`is_block_diagonal`) that runs each
    member's blocks apart: the recurrent and between-layer products are K stacked products of H
    units (`np.matmul` over (K, B, ·) arrays) instead of one of K·H, a K-th of the multiply-adds.
    The first layer's input is a row gather of all members at once, the output layer one product
    (its logits are the members' mean, module docstring). Equal to the dense network's stepper up
    to float rounding (the dense products add the off-diagonal zeros in another order)."""
    own = split(params, layers, members)
    K, H = members, params["Wy"].shape[0] // members
    G = own[0]["l0.b"].shape[0]  # a member's gate columns
    first_x = np.concatenate([p["l0.Wx"] for p in own], axis=1)  # (V, K·G): member k's gates at k·G
    first_b = np.concatenate([p["l0.b"] for p in own])
    first_h = np.stack([p["l0.Wh"] for p in own])  # (K, H, G)
    later = [np.stack([np.concatenate([p[f"l{n}.Wx"], p[f"l{n}.Wh"]]) for p in own]) for n in range(1, layers)]
    later_b = [np.stack([p[f"l{n}.b"] for p in own]) for n in range(1, layers)]  # (K, G)
    Wy, by = params["Wy"], params["by"]

    def by_member(state: State, B: int) -> State:
        return tuple(a.reshape(B, K, H) for a in state)

    def run(ids: np.ndarray, state: list[State]) -> tuple[np.ndarray, list[State]]:
        B = len(ids)
        a = first_x[ids]
        a += first_b
        a = a.reshape(B, K, G)
        h = state[0][0].reshape(B, K, H).transpose(1, 0, 2)  # (K, B, H)
        a += np.matmul(h, first_h).transpose(1, 0, 2)
        new = [layer.cell(a, by_member(state[0], B))]
        for n in range(1, layers):  # one product of [x_k, h_k] (K, B, 2H) with [Wx_k; Wh_k] (K, 2H, G)
            xh = np.concatenate([new[-1][0], state[n][0].reshape(B, K, H)], axis=2).transpose(1, 0, 2)
            a = np.matmul(xh, later[n - 1])
            a += later_b[n - 1][:, None, :]
            new.append(layer.cell(a.transpose(1, 0, 2), by_member(state[n], B)))
        flat = [tuple(a.reshape(B, K * H) for a in s) for s in new]
        return flat[-1][0] @ Wy + by, flat

    return run
