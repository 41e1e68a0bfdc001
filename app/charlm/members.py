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
zeroed, stay exactly zero under Adam. The cost of a step is that of the dense K·H network.
"""

from __future__ import annotations

import numpy as np

from .layers import Params


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
                of_row, of_column = unit_member(rows, members), unit_member(rows, members)[np.arange(columns) % rows]
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
