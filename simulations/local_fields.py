"""Local receptive fields: non-convolutional layers whose units each see one patch.

A *local* layer is a dense layer ``h = relu(W x)`` whose weight matrix is multiplied, once
at initialisation and on every update, by a fixed 0/1 mask ``M``:

    W ← W ⊙ M   (initialisation),        ΔW ← ΔW ⊙ M   (every step)

so ``W_ij = 0`` wherever unit ``i`` does not see input ``j``, for ever. There is no weight
sharing (each unit has its own filter, unlike a convolution). The forward pass is the dense
matmul with zeros in it, so a local layer costs the same as the dense layer of the same
shape plus one elementwise product of the update per step (``O(d_out d_in)`` against the
matmul's ``O(batch · d_out d_in)``).

Layout (how patch centres are placed)
-------------------------------------
Every layer is a *topographic map*: ``channels × side × side`` units, flattened channel-major
(index ``c·side² + i·side + j``), like a CIFAR-10 image (3 × 32 × 32) or an MNIST image
(1 × 28 × 28). The input map is read off the input width ``d = side²`` (one channel) or
``d = 3 side²`` (three channels). A local layer is given by its ``grid`` (side ``g`` of its
own map) and its ``field`` (side ``f`` of the square patch its units see in the map below);
its width ``d_ℓ`` must be a multiple of ``g²``, and ``k = d_ℓ / g²`` units (channels) sit at
each grid point. Grid point ``i`` (``0 ≤ i < g``) of a layer above a map of side ``s`` has its
centre at ``c_i = (i + ½) s/g − ½`` in the coordinates of the map below (the centres are
spread evenly, symmetric about the middle of the map), and its patch covers rows
``r_i … r_i + f − 1`` with ``r_i = round(c_i − (f − 1)/2)`` *clamped to* ``[0, s − f]``: near the
border the patch is shifted inwards rather than truncated, so every unit sees exactly
``f² × channels_below`` inputs (and He initialisation uses that fan-in). Columns likewise.
All channels of the map below inside the patch are seen. The patch must fit: ``f > s`` is a
``ValueError``.

A local layer above a *dense* layer has no map to look at (a dense layer has no topography):
that is a ``ValueError`` too. Local layers may follow each other (the second looks at the
first one's ``g × g`` map, as in the FF paper's MNIST network: 10 × 10 patches of the image,
then squares of adjacent grid points of the layer below).

``always_seen``: input components every unit of the first layer sees whatever its patch
(supervised FF writes its label into the first pixels; without this only the units whose
patch covers the top-left corner would know the label).

Specification (``local_fields`` in configs): a list with one entry per hidden layer, each
``{"field": f, "grid": g}`` or ``null`` (dense); a shorter list leaves the remaining layers
dense. Output layers (softmax read-outs) are always dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LocalField",
    "parse_local_fields",
    "input_map",
    "patch_matrix",
    "layer_mask",
    "build_masks",
    "init_masked",
    "apply_mask",
]


@dataclass(frozen=True)
class LocalField:
    """One local layer: ``grid`` (side of its map), ``field`` (patch side in the map below)."""

    field: int
    grid: int


def parse_local_fields(spec, n_hidden: int):
    """A list of ``n_hidden`` entries, each :class:`LocalField` or None, from a config value.

    ``spec`` : None (all dense) or a list of ``{"field": f, "grid": g}`` / None entries
    (at most ``n_hidden``; missing trailing entries are dense).
    """
    if spec is None:
        return [None] * n_hidden
    if not isinstance(spec, (list, tuple)):
        raise ValueError(
            f"local_fields must be a list of {{'field': f, 'grid': g}} or null "
            f"entries (one per hidden layer), got {spec!r}"
        )
    if len(spec) > n_hidden:
        raise ValueError(
            f"local_fields has {len(spec)} entries but the network has only "
            f"{n_hidden} hidden layers"
        )
    out = []
    for i, s in enumerate(spec):
        if s is None:
            out.append(None)
            continue
        if isinstance(s, LocalField):
            out.append(s)
            continue
        if not isinstance(s, dict) or set(s) != {"field", "grid"}:
            raise ValueError(
                f"local_fields[{i}] must be {{'field': f, 'grid': g}} or null, got {s!r}"
            )
        f, g = s["field"], s["grid"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (f, g)):
            raise ValueError(
                f"local_fields[{i}]: field and grid must be positive integers, "
                f"got field={f!r}, grid={g!r}"
            )
        out.append(LocalField(int(f), int(g)))
    return out + [None] * (n_hidden - len(out))


def input_map(d: int):
    """(channels, side) of an input of width ``d = side²`` or ``3 side²``."""
    side = int(round(math.sqrt(d)))
    if side * side == d:
        return 1, side
    side = int(round(math.sqrt(d / 3)))
    if 3 * side * side == d:
        return 3, side
    raise ValueError(
        f"local receptive fields need square images (input width s² or 3 s²); "
        f"input width {d} is neither"
    )


def patch_matrix(side: int, grid: int, field: int) -> np.ndarray:
    """``A[i, p] = 1`` if row ``p`` of the map below lies in grid point ``i``'s patch,
    shape ``(grid, side)`` (see the module docstring for the placement rule)."""
    if field > side:
        raise ValueError(
            f"receptive field {field}×{field} is larger than the map it looks at "
            f"({side}×{side}); allowed: field <= {side}"
        )
    A = np.zeros((grid, side), np.float32)
    for i in range(grid):
        c = (i + 0.5) * side / grid - 0.5
        r = int(round(c - (field - 1) / 2))
        r = min(max(r, 0), side - field)
        A[i, r : r + field] = 1.0
    return A


def layer_mask(in_channels: int, in_side: int, width: int, lf: LocalField) -> np.ndarray:
    """0/1 mask ``(width, in_channels · in_side²)`` of one local layer (channel-major maps)."""
    g = lf.grid
    if width % (g * g):
        raise ValueError(
            f"a local layer of width {width} cannot sit on a {g}×{g} grid: the "
            f"width must be a multiple of grid² = {g * g}"
        )
    A = patch_matrix(in_side, g, lf.field)
    spatial = np.kron(A, A)  # [(i g + j), (p s + q)] = A[i, p] A[j, q]
    return np.kron(np.ones((width // (g * g), in_channels), np.float32), spatial)


def build_masks(d0: int, hidden, spec, always_seen=()):
    """Masks of the hidden layers of a network with input width ``d0``.

    Returns a list (one entry per hidden layer) of float32 0/1 masks ``(d_ℓ, d_{ℓ−1})`` or
    None for dense layers; None overall if every layer is dense.
    """
    hidden = [int(h) for h in hidden]
    fields = parse_local_fields(spec, len(hidden))
    if all(f is None for f in fields):
        return None
    masks = []
    prev = input_map(d0)  # (channels, side) of the map below, or None (dense below)
    for l, (width, lf) in enumerate(zip(hidden, fields)):
        if lf is None:
            masks.append(None)
            prev = None
            continue
        if prev is None:
            raise ValueError(
                f"local layer {l} sits on a dense layer, which has no map to look "
                f"at; put local layers first (on the image) or on local layers"
            )
        M = layer_mask(prev[0], prev[1], width, lf)
        if l == 0 and len(always_seen):
            M[:, np.asarray(always_seen, int)] = 1.0
        masks.append(M)
        prev = (width // (lf.grid**2), lf.grid)
    return masks


def init_masked(W: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``W ⊙ M`` rescaled row by row from the dense fan-in to the unit's own fan-in.

    ``W`` is He-uniform with limit ``√(6/d_in)``; the result has limit ``√(6/fan_in_i)``
    with ``fan_in_i = Σ_j M_ij``, so a local unit starts with the same pre-activation scale
    as a dense one. In place; returns ``W``.
    """
    fan = M.sum(1, keepdims=True)
    W *= M * np.sqrt(W.shape[1] / np.maximum(fan, 1.0)).astype(W.dtype)
    return W


def apply_mask(G: np.ndarray, M) -> np.ndarray:
    """``G ⊙ M`` (``G`` unchanged if ``M`` is None)."""
    return G if M is None else G * M
