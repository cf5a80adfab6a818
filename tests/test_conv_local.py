"""cuda-convnet's conv-conv-local-local CIFAR-10 nets (the paper's "four-layer CNN", section 3.3)
and the locally connected layer they are built from."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import model
from model.conv_local import ConvLocal
from model.local import LocallyConnected2d


def test_a_locally_connected_layer_with_one_filter_everywhere_is_a_convolution():
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, 6, 3, padding=1).double()
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    with torch.no_grad():
        layer.weight.copy_(conv.weight.reshape(1, 4, 27).expand_as(layer.weight))
        layer.bias.copy_(conv.bias.reshape(4, 1, 1).expand_as(layer.bias))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), rtol=0, atol=1e-12)


def test_each_position_has_its_own_filter_and_bias():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, 5, 3, stride=2, padding=1).double()
    assert layer.out_size == 3 and layer.weight.shape == (9, 3, 18) and layer.bias.shape == (3, 3, 3)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    out = layer(x)
    padded = F.pad(x, (1, 1, 1, 1))
    for i in range(3):
        for j in range(3):  # the definition, position by position
            patch = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].reshape(2, 18)
            expected = patch @ layer.weight[i * 3 + j].T + layer.bias[:, i, j]
            assert torch.allclose(out[:, :, i, j], expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        layer.weight[4] += 1.0  # the centre position's filter only
    changed = (layer(x) != out).any(dim=(0, 1))
    assert changed.tolist() == [[False, False, False], [False, True, False], [False, False, False]]


@pytest.mark.parametrize("name,params,local3", [("conv_local_11pct", 3_672_906, 64), ("conv_local_13pct", 1_901_386, 32)])
def test_the_nets_as_cuda_convnet_defines_them(name, params, local3):
    net = model.create_model(name)
    assert sum(p.numel() for p in net.parameters()) == params
    f = net.features
    assert (f.conv1.out_channels, f.conv1.kernel_size, f.conv2.out_channels, f.local3.out_channels, f.local4.out_channels) == (64, (5, 5), 64, local3, 32)
    x = torch.zeros(1, 3, 32, 32)
    sizes = {}
    for key, layer in f.named_children():
        x = layer(x)
        sizes[key] = tuple(x.shape[1:])
    assert (sizes["pool1"], sizes["pool2"], sizes["local3"], sizes["local4"]) == ((64, 16, 16), (64, 8, 8), (local3, 8, 8), (32, 8, 8))
    assert isinstance(f.norm1, nn.LocalResponseNorm if name.endswith("11pct") else nn.Identity)
    stds = {k: getattr(f, k).weight.std().item() for k in ("conv2", "local3", "local4")}
    assert stds == pytest.approx({"conv2": 0.01, "local3": 0.04, "local4": 0.04}, rel=0.05)
    assert all(torch.all(m.bias == 0) for m in (f.conv1, f.conv2, f.local3, f.local4, net.fc10))


def test_cross_map_normalisation_is_cuda_convnets_cmrnorm():
    """b = a / (1 + (0.001 / 9) * sum over the 9 maps centred on a's, clipped at the ends) ** 0.75."""
    torch.manual_seed(0)
    a = torch.randn(1, 12, 2, 2, dtype=torch.float64) * 20
    net = ConvLocal().double()
    got = net.features.norm1(a)
    for c in range(12):
        s = (a[:, max(0, c - 4) : min(12, c + 5)] ** 2).sum(dim=1)
        assert torch.allclose(got[:, c], a[:, c] / (1 + 0.001 / 9 * s) ** 0.75, rtol=1e-12)


def test_relu_and_tanh_differ_only_in_the_units():
    relu, tanh = ConvLocal(activation="relu"), ConvLocal(activation="tanh")
    kinds = lambda net: [type(m).__name__ for m in net.modules() if not isinstance(m, (nn.ReLU, nn.Tanh))]  # noqa: E731
    assert kinds(relu) == kinds(tanh) and sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 4
