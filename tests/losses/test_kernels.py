"""Tests for denseloss.losses.kernels: window shifts, border term, dense and lattice filters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denseloss.losses.kernels import (
    GaussianKernel,
    PermutohedralLattice,
    border_term,
    dense_gaussian_filter,
    half_window_shifts,
    parse_kernels,
    shift_slices,
)
from tests.helpers import assert_close


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_half_window_shifts_cover_window_once(radius):
    half = half_window_shifts(radius)
    full = set(half) | {(-dy, -dx) for dy, dx in half}
    assert len(half) == ((2 * radius + 1) ** 2 - 1) // 2
    assert len(full) == (2 * radius + 1) ** 2 - 1
    assert (0, 0) not in full


def test_shift_slices_pair_pixels():
    x = torch.arange(12.0).reshape(3, 4)
    a, b = shift_slices(1, -2, 3, 4)
    # i = (y, x) in a pairs with j = (y + 1, x - 2) in b.
    assert_close(x[a] + 4 - 2, x[b])
    assert shift_slices(3, 0, 3, 4) is None
    assert shift_slices(0, -4, 3, 4) is None


def test_parse_kernels_errors():
    with pytest.raises(TypeError, match="kernels"):
        parse_kernels("f", {"weight": 1.0, "xy": 1.0})
    with pytest.raises(TypeError, match="kernels"):
        parse_kernels("f", [3.0])
    with pytest.raises(ValueError, match="weight"):
        parse_kernels("f", [{"xy": 1.0}])
    with pytest.raises(ValueError, match="weight"):
        parse_kernels("f", [{"weight": -1.0, "xy": 1.0}])
    with pytest.raises(ValueError, match="modality"):
        parse_kernels("f", [{"weight": 1.0}])
    with pytest.raises(ValueError, match="sigma"):
        parse_kernels("f", [{"weight": 1.0, "xy": 0.0}])
    assert parse_kernels("f", [{"weight": 2, "xy": 3}]) == (GaussianKernel(2.0, (("xy", 3.0),)),)


def test_border_term_matches_unfold_padding():
    # Out-of-image neighbours of the unfold reference: feature 0, so K(i, pad) per missing one.
    g = torch.Generator().manual_seed(0)
    n, h, w, r = 2, 3, 4, 2
    rgb = torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    kernels = parse_kernels(
        "t", [{"weight": 0.7, "xy": 2.0, "rgb": 0.5}, {"weight": 0.3, "rgb": 1.5}]
    )
    got = border_term({"rgb": rgb}, kernels, r, (n, h, w), dtype=torch.float64, device=rgb.device)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    want = torch.zeros(n, h, w, dtype=torch.float64)
    inside = F.unfold(torch.ones(1, 1, h, w, dtype=torch.float64), 2 * r + 1, padding=r)
    n_out = (2 * r + 1) ** 2 - inside.sum(1).reshape(h, w)
    for weight, s_xy, s_rgb in ((0.7, 2.0, 0.5), (0.3, None, 1.5)):
        e = (rgb / s_rgb).square().sum(1)
        if s_xy is not None:
            e = e + ((xs.square() + ys.square()) / s_xy**2).double()
        want += weight * torch.exp(-0.5 * e) * n_out
    assert_close(got, want)


def test_dense_gaussian_filter_brute_force_and_chunking():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 30, 5, generator=g, dtype=torch.float64)
    v = torch.rand(2, 30, 4, generator=g, dtype=torch.float64)
    w = torch.exp(-0.5 * (f[:, :, None] - f[:, None]).square().sum(-1))
    assert_close(dense_gaussian_filter(f, v), w @ v)
    assert_close(dense_gaussian_filter(f, v, chunk_elements=7), w @ v)  # 1-row chunks


def test_lattice_filter_is_symmetric_and_linear():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(40, 5, generator=g, dtype=torch.float64) * 2
    lat = PermutohedralLattice.build(f, torch.zeros(40, dtype=torch.long))
    w = lat.filter(torch.eye(40, dtype=torch.float64))  # the implied matrix Ŵ
    assert_close(w, w.t())
    assert bool((w >= 0).all())
    assert_close(torch.diagonal(w).mean(), torch.tensor(1.0, dtype=torch.float64), rtol=0.2, atol=0)


def test_lattice_separates_batch_items():
    f = torch.zeros(2, 5, dtype=torch.float64)  # identical features, different images
    lat = PermutohedralLattice.build(f, torch.tensor([0, 1]))
    w = lat.filter(torch.eye(2, dtype=torch.float64))
    assert float(w[0, 1]) == 0.0
    assert float(w[0, 0]) > 0


def test_lattice_kernel_profile_close_to_gaussian():
    # Mean Ŵ_ij over random positions/directions at distance 0.5 follows exp(-r²/2) within 10%.
    g = torch.Generator().manual_seed(3)
    vals = []
    for _ in range(100):
        base = torch.randn(5, generator=g, dtype=torch.float64) * 10
        u = torch.randn(5, generator=g, dtype=torch.float64)
        f = torch.stack([base, base + 0.5 * u / u.norm()])
        lat = PermutohedralLattice.build(f, torch.zeros(2, dtype=torch.long))
        vals.append(lat.filter(torch.eye(2, dtype=torch.float64))[0, 1])
    assert abs(float(torch.stack(vals).mean()) / math.exp(-0.125) - 1) < 0.1


def test_window_potts_bands_and_dot_distance_match_unbanded(monkeypatch):
    # Several row bands (2 rows each) and a 12-channel modality (dot-product distance) must give
    # the value and gradients of one band with the direct squared difference.
    from denseloss.losses import kernels as kmod

    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64), 1)
    deep = torch.randn(2, 12, 7, 6, generator=g, dtype=torch.float64)
    valid = (torch.rand(2, 1, 7, 6, generator=g) > 0.3).double()
    kernels = parse_kernels("t", [{"weight": 0.7, "xy": 2.0, "deep": 1.5}])

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = probs.clone().requires_grad_()
        f = deep.clone().requires_grad_()
        e = kmod.window_potts_energy(p, {"deep": f}, kernels, 2, valid)
        return (e, *torch.autograd.grad(e, (p, f)))

    got = run()
    monkeypatch.setattr(kmod, "_band_rows", lambda shape, radius: shape[-2])
    monkeypatch.setattr(kmod, "_DOT_MIN_CHANNELS", 10**9)
    want = run()
    monkeypatch.setattr(kmod, "_band_rows", lambda shape, radius: 2)
    banded = run()
    for a, b, c in zip(got, want, banded):
        assert_close(a, b)
        assert_close(c, b)


def test_lattice_count_and_offsets():
    from denseloss.losses._lattice import lattice_count, lattice_offsets

    # 2^16 / n shifted lattices, at least 1 and at most 8: 8 at 64², 4 at 128², 1 from 256².
    assert [lattice_count(s * s) for s in (16, 64, 128, 256, 512)] == [8, 8, 4, 1, 1]
    offsets = lattice_offsets(5, 8)
    assert len(set(offsets)) == 8
    assert all(0 <= v < 3 for o in offsets for v in o)


def test_averaged_lattice_filter_is_symmetric_and_matches_pytorch(monkeypatch):
    # The compiled filter of a (1, 3, 6, 7) image, averaged over its 8 shifted lattices, equals
    # the PyTorch lattice's and is a symmetric operator (so 2 Ŵ S is the exact gradient).
    from denseloss.losses import _lattice, _native

    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 6, 7, generator=g, dtype=torch.float64) * 255
    eye = torch.eye(42, dtype=torch.float64)[None]
    compiled = _lattice.lattice_filter(eye, image, 3.0, 20.0)[0]
    with monkeypatch.context() as m:
        m.setattr(_native, "available", lambda *t: False)
        reference = _lattice.lattice_filter(eye, image, 3.0, 20.0)[0]
    assert_close(compiled, reference)
    assert_close(compiled, compiled.t())
    assert float(compiled.diagonal().min()) > 0
