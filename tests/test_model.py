"""The paper's AlexNet: layers, sizes, parameter counts, initialisation, LRN conventions."""

import pytest
import torch
from torch import nn

import model
from model.alexnet import AlexNet
from model.lrn import LocalResponseNorm


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_lists_the_networks_sorted():
    assert model.list_models() == ["alexnet", "alexnet_torchvision", "conv_local_11pct", "conv_local_13pct", "convnet4"]


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*alexnet, alexnet_torchvision"):
        model.create_model("vgg")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        model.register_model("alexnet")(lambda **_: nn.Identity())


def test_parameter_counts_match_the_paper_and_torchvision():
    assert n_params(model.create_model("alexnet")) == 60_965_224
    assert n_params(model.create_model("alexnet_torchvision")) == 61_100_840


def test_layers_and_groups_as_the_paper_gives_them():
    net = AlexNet()
    f, c = net.features, net.classifier
    assert [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.groups) for m in (f.conv1, f.conv2, f.conv3, f.conv4, f.conv5)] == [
        (96, 11, 4, 0, 1),
        (256, 5, 1, 2, 2),
        (384, 3, 1, 1, 1),
        (384, 3, 1, 1, 2),
        (256, 3, 1, 1, 2),
    ]
    assert [(p.kernel_size, p.stride) for p in (f.pool1, f.pool2, f.pool5)] == [(3, 2)] * 3  # overlapping pooling
    assert isinstance(f.norm1, LocalResponseNorm) and isinstance(f.norm2, LocalResponseNorm)
    assert [type(m).__name__ for m in c] == ["Linear", "ReLU", "OutputDropout", "Linear", "ReLU", "OutputDropout", "Linear"]
    assert c.drop6.p == c.drop7.p == 0.5
    assert (c.fc6.in_features, c.fc6.out_features, c.fc7.out_features, c.fc8.out_features) == (9216, 4096, 4096, 1000)


def test_dropout_drops_the_outputs_of_fc6_and_fc7_not_pool5():
    """The paper (4.2) and Caffe (fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 -> fc8): pool5 reaches fc6 whole."""
    torch.manual_seed(0)
    net = AlexNet(num_classes=10, init="he").double().train()
    inputs, outputs = {}, {}

    def keep(name: str):
        def hook(module, args, out) -> None:
            inputs[name], outputs[name] = args[0], out
        return hook

    for name, layer in [("pool5", net.features.pool5), *net.classifier.named_children()]:
        layer.register_forward_hook(keep(name))
    net(torch.randn(2, 3, 227, 227, dtype=torch.float64))
    assert torch.equal(inputs["fc6"], torch.flatten(outputs["pool5"], 1))  # pool5's features are never dropped
    for act, reader in (("act6", "fc7"), ("act7", "fc8")):  # fc7 reads fc6's dropped outputs, fc8 fc7's
        live = outputs[act] > 0
        seen = inputs[reader][live]
        assert 0.4 < (seen == 0).double().mean().item() < 0.6  # about half of the active units dropped
        assert torch.equal(seen[seen != 0], 2 * outputs[act][live][seen != 0])  # the rest scaled by 1/(1-p)
    net.eval()
    net(torch.randn(2, 3, 227, 227, dtype=torch.float64))
    assert torch.equal(inputs["fc8"], outputs["act7"])  # no dropout when evaluating


@pytest.mark.parametrize("size", [227, 224])
def test_feature_map_sizes(size):
    net = AlexNet(num_classes=10, input_size=size)
    x = torch.zeros(1, 3, size, size)
    sizes = {}
    for name, layer in net.features.named_children():
        x = layer(x)
        sizes[name] = x.shape[-1]
    assert [sizes[k] for k in ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5")] == [55, 27, 13, 13, 13, 6]
    assert net(torch.zeros(2, 3, size, size)).shape == (2, 10)


def test_wrong_input_size_is_refused():
    with pytest.raises(ValueError, match="227 or 224"):
        AlexNet(input_size=256)


def test_paper_initialisation_statistics():
    torch.manual_seed(0)
    net = AlexNet()
    layers = {n.rsplit(".", 1)[-1]: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    for name, layer in layers.items():
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 1e-3, name
        assert w.std().item() == pytest.approx(0.01, rel=0.05 if w.numel() > 30_000 else 0.15), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected_bias), name


def test_caffe_and_he_initialisations_differ_as_documented():
    torch.manual_seed(0)
    caffe = AlexNet(init="caffe")
    assert torch.all(caffe.features.conv2.bias == 0.1) and torch.all(caffe.features.conv1.bias == 0)
    assert caffe.classifier.fc6.weight.std().item() == pytest.approx(0.005, rel=0.02)
    he = AlexNet(init="he")
    fan_in = 3 * 11 * 11
    assert he.features.conv1.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.all(he.classifier.fc7.bias == 0)


def lrn_reference(a: torch.Tensor, *, alpha: float, n: int = 5, k: float = 2.0, beta: float = 0.75, divide_by_n: bool) -> torch.Tensor:
    """The formula, written out: b_i = a_i / (k + a' * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta."""
    channels = a.shape[1]
    scale = alpha / n if divide_by_n else alpha
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = (a[:, lo : hi + 1] ** 2).sum(dim=1)
        out[:, i] = a[:, i] / (k + scale * s) ** beta
    return out


@pytest.mark.parametrize("convention,divide", [("authors", True), ("paper", False)])
def test_lrn_conventions_match_their_formulas(convention, divide):
    torch.manual_seed(0)
    a = torch.randn(2, 12, 5, 5, dtype=torch.float64) * 30  # large enough that the sum matters
    got = LocalResponseNorm(convention)(a)
    assert torch.allclose(got, lrn_reference(a, alpha=1e-4, divide_by_n=divide), rtol=1e-12, atol=0)


def test_lrn_conventions_differ():
    a = torch.randn(1, 8, 3, 3, dtype=torch.float64) * 30
    assert not torch.allclose(LocalResponseNorm("authors")(a), LocalResponseNorm("paper")(a))


def test_grouped_lrn_never_mixes_the_towers():
    a = torch.zeros(1, 8, 1, 1, dtype=torch.float64)
    a[0, 3] = 1.0
    a[0, 4] = 100.0  # first channel of the second tower, adjacent to channel 3
    grouped = LocalResponseNorm("authors", groups=2)(a)
    assert grouped[0, 3].item() == pytest.approx(1.0 / (2.0 + 1e-4 / 5 * 1.0) ** 0.75)


def test_unknown_lrn_convention():
    with pytest.raises(ValueError, match="authors, paper"):
        LocalResponseNorm("caffe")


@pytest.mark.parametrize("name", ["alexnet", "alexnet_torchvision"])
def test_activation_switch_changes_only_the_nonlinearity(name):
    relu = model.create_model(name, num_classes=10, activation="relu")
    tanh = model.create_model(name, num_classes=10, activation="tanh")
    kinds = lambda net: [type(m).__name__ for m in net.modules() if not isinstance(m, (nn.ReLU, nn.Tanh))]  # noqa: E731
    assert kinds(relu) == kinds(tanh)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 7
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert n_params(relu) == n_params(tanh)
