"""The update rule, bias decay and the learning-rate schedule, tested directly: make_optimizer,
make_scheduler, step_schedule and bench.optim.PaperSGD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.optim import PaperSGD
from bench.train import make_optimizer, make_scheduler, step_schedule


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def grads(step: int, params) -> None:
    g = torch.Generator().manual_seed(step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def run(opt_cls, lrs: list[float], momentum=0.9, weight_decay=5e-4) -> list[torch.Tensor]:
    m = net()
    opt = opt_cls(m.parameters(), lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    for step, lr in enumerate(lrs):
        opt.param_groups[0]["lr"] = lr
        grads(step, m.parameters())
        opt.step()
    return [p.detach().clone() for p in m.parameters()]


def paper_rule(lrs: list[float], momentum=0.9, weight_decay=5e-4) -> list[torch.Tensor]:
    """Section 5, written out: v <- 0.9 v - 0.0005 eps w - eps g; w <- w + v."""
    ws = [p.detach().clone() for p in net().parameters()]
    vs = [torch.zeros_like(w) for w in ws]
    for step, eps in enumerate(lrs):
        holders = [nn.Parameter(w.clone()) for w in ws]
        grads(step, holders)
        for i, (w, h) in enumerate(zip(ws, holders)):
            vs[i] = momentum * vs[i] - weight_decay * eps * w - eps * h.grad
            ws[i] = w + vs[i]
    return ws


def test_the_paper_rule_equals_torch_sgd_bit_for_bit_at_a_constant_rate():
    lrs = [0.01] * 6
    assert all(torch.equal(a, b) for a, b in zip(run(PaperSGD, lrs), run(torch.optim.SGD, lrs)))


def test_across_a_drop_the_paper_rule_keeps_the_velocity_and_torch_divides_it():
    lrs = [0.01] * 3 + [0.001] * 3
    paper, torch_form, formula = run(PaperSGD, lrs), run(torch.optim.SGD, lrs), paper_rule(lrs)
    assert all(torch.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(paper, formula))
    assert not any(torch.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(torch_form, formula))
    # torch's form is the formula with the carried velocity divided by 10 at the drop
    m = net()
    ws = [p.detach().clone() for p in m.parameters()]
    vs = [torch.zeros_like(w) for w in ws]
    for step, eps in enumerate(lrs):
        holders = [nn.Parameter(w.clone()) for w in ws]
        grads(step, holders)
        carried = 0.1 if step == 3 else 1.0
        for i, (w, h) in enumerate(zip(ws, holders)):
            vs[i] = 0.9 * carried * vs[i] - 5e-4 * eps * w - eps * h.grad
            ws[i] = w + vs[i]
    assert all(torch.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(torch_form, ws))


def test_the_paper_rule_survives_a_checkpoint_across_a_drop():
    lrs = [0.01] * 2 + [0.001] * 2
    m = net()
    opt = PaperSGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for step in range(2):
        grads(step, m.parameters())
        opt.step()
    state = {"model": m.state_dict(), "optimizer": opt.state_dict()}
    m2 = net()
    m2.load_state_dict(state["model"])
    opt2 = PaperSGD(m2.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt2.load_state_dict(state["optimizer"])
    for step in (2, 3):
        opt2.param_groups[0]["lr"] = 0.001
        grads(step, m2.parameters())
        opt2.step()
    assert all(torch.allclose(a, b, rtol=1e-13, atol=1e-15) for a, b in zip(m2.parameters(), paper_rule(lrs)))


def config(**kw) -> RunConfig:
    return RunConfig(**kw)


@pytest.mark.parametrize("rule,cls", [("paper", PaperSGD), ("torch", torch.optim.SGD)])
def test_make_optimizer_as_configured_biases_not_decayed(rule, cls):
    m = net()
    opt = make_optimizer(m, config(update_rule=rule, lr=0.02, momentum=0.8, weight_decay=1e-3))
    assert type(opt) is cls
    weights, biases = opt.param_groups
    assert [p.dim() for p in weights["params"]] == [2, 2] and [p.dim() for p in biases["params"]] == [1, 1]
    assert (weights["lr"], weights["momentum"], weights["weight_decay"]) == (0.02, 0.8, 1e-3)
    assert (biases["lr"], biases["momentum"], biases["weight_decay"]) == (0.02, 0.8, 0.0)


def test_decay_biases_puts_every_parameter_under_weight_decay():
    opt = make_optimizer(net(), config(decay_biases=True, weight_decay=1e-3))
    [group] = opt.param_groups
    assert len(group["params"]) == 4 and group["weight_decay"] == 1e-3
    assert config().decay_biases is False and config().update_rule == "paper"


def test_a_bias_really_is_not_decayed():
    m = net()
    opt = make_optimizer(m, config(weight_decay=0.5, lr=0.1))
    before = [p.detach().clone() for p in m.parameters()]
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    w0, b0, w1, b1 = (p.detach() for p in m.parameters())
    assert torch.equal(b0, before[1]) and torch.equal(b1, before[3])
    assert torch.allclose(w0, before[0] * (1 - 0.1 * 0.5), rtol=1e-15)


def schedule(errors: list[float], **kw) -> tuple[list[int], list[float]]:
    """The accuracy harness's loop: the epochs after which the rate dropped (curves.lr_drops) and the rate each epoch used."""
    opt = make_optimizer(net(), config(**kw))
    scheduler = make_scheduler(opt, config(**kw))
    drops, used = [], []
    for epoch, err in enumerate(errors):
        used.append(opt.param_groups[0]["lr"])
        if step_schedule(scheduler, err):
            drops.append(epoch + 1)
    assert all(g["lr"] == opt.param_groups[0]["lr"] for g in opt.param_groups)  # biases follow the same schedule
    return drops, used


def test_patience_divides_by_ten_after_that_many_epochs_without_a_lower_error():
    # patience 2: two epochs without a lower error are tolerated, the third drops the rate (then the count restarts)
    drops, used = schedule([0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7], lr_patience=2)
    assert drops == [5, 9]
    assert used == pytest.approx([0.01] * 5 + [0.001] * 4)
    assert schedule([0.9, 0.8, 0.7, 0.6, 0.5], lr_patience=0)[0] == []  # always improving: never


def test_at_most_max_lr_drops_divisions():
    drops, used = schedule([0.5] * 9, lr_patience=0)
    assert drops == [2, 3, 4]
    assert used[-1] == pytest.approx(1e-5) and len(set(used[4:])) == 1
    assert schedule([0.5] * 9, lr_patience=0, max_lr_drops=1)[0] == [2]
    assert schedule([0.5] * 9, lr_patience=0, max_lr_drops=0)[0] == []


def test_a_rerun_of_a_record_from_before_the_update_rule_existed_keeps_torchs_rule_and_bias_decay(tmp_path):
    import json

    from bench.records import SCHEMA_VERSION
    from bench.run import config_from_args

    old = {k: v for k, v in RunConfig().to_dict().items() if k not in ("update_rule", "decay_biases")}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "config": old}))
    again = config_from_args(["--rerun", str(path)])
    assert (again.update_rule, again.decay_biases) == ("torch", True)
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "config": RunConfig().to_dict()}))
    assert (config_from_args(["--rerun", str(new)]).update_rule, config_from_args(["--rerun", str(new)]).decay_biases) == ("paper", False)
