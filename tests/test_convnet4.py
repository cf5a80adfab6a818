"""cuda-convnet's layers-18pct CIFAR-10 net (convnet4), a relu-tanh option: three convolutions and fc10."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import model
from model.convnet4 import INIT_STD, ConvNet4, SpatialResponseNorm


def test_registered_and_sized_as_layers_18pct():
    net = model.create_model("convnet4")
    assert sum(p.numel() for p in net.parameters()) == 89_578
    weights = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weights) == 4  # four weight layers: three hidden by the paper's count (section 3.3), then fc10
    x = torch.zeros(2, 3, 32, 32)
    sizes = {}
    for name, layer in net.features.named_children():
        x = layer(x)
        sizes[name] = tuple(x.shape[1:])
    assert sizes["pool1"] == (32, 16, 16) and sizes["pool2"] == (32, 8, 8) and sizes["pool3"] == (64, 4, 4)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_initial_weights_follow_the_cfg():
    torch.manual_seed(0)
    net = ConvNet4()
    layers = {"conv1": net.features.conv1, "conv2": net.features.conv2, "conv3": net.features.conv3, "fc10": net.fc10}
    for name, layer in layers.items():
        assert layer.weight.std().item() == pytest.approx(INIT_STD[name], rel=0.1), name
        assert torch.all(layer.bias == 0), name


def test_relu_and_tanh_nets_differ_only_in_the_nonlinearity():
    torch.manual_seed(0)
    relu = ConvNet4(activation="relu")
    torch.manual_seed(0)
    tanh = ConvNet4(activation="tanh")
    kinds = lambda net: [type(m).__name__ for m in net.modules() if not isinstance(m, (nn.ReLU, nn.Tanh))]  # noqa: E731
    assert kinds(relu) == kinds(tanh)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 3 == sum(isinstance(m, nn.Tanh) for m in tanh.modules())
    for (name, a), (_, b) in zip(relu.state_dict().items(), tanh.state_dict().items()):
        assert torch.equal(a, b), name  # the same initial weights from the same seed


def test_spatial_response_norm_is_cuda_convnets_formula():
    """b = a / (1 + scale/size^2 * sum of a^2 over the size x size window, clipped at the border) ** pow."""
    torch.manual_seed(0)
    a = torch.randn(2, 3, 6, 7, dtype=torch.float64) * 50
    size, scale, power = 3, 5e-5, 0.75
    expected = torch.empty_like(a)
    for i in range(a.shape[2]):
        for j in range(a.shape[3]):
            window = a[:, :, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2]
            expected[:, :, i, j] = a[:, :, i, j] / (1 + scale / size**2 * (window**2).sum(dim=(2, 3))) ** power
    assert torch.allclose(SpatialResponseNorm(size, scale, power)(a), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("act", [torch.relu, torch.tanh])
def test_nonlinearity_after_max_pooling_is_the_same_function(act):
    """cuda-convnet puts conv1's nonlinearity on pool1; max pooling commutes with monotonic functions."""
    x = torch.randn(2, 4, 32, 32)
    assert torch.equal(act(F.max_pool2d(x, 3, 2, ceil_mode=True)), F.max_pool2d(act(x), 3, 2, ceil_mode=True))
