"""The paper's update rule (section 5), as an optimizer.

    v <- 0.9 v - 0.0005 eps w - eps dL/dw
    w <- w + v

Caffe's SGD has the same form (its history holds ``lr * gradient`` terms). torch's ``SGD``
keeps ``b <- 0.9 b + dL/dw + 0.0005 w`` and steps ``w <- w - eps b``: eps sits outside the
velocity, so when eps is divided by 10 the velocity carried over is in effect divided by 10
too. The two rules are the same while eps is constant.

``PaperSGD`` is torch's ``SGD`` with one change: when a group's learning rate differs from
the one its last step used, its momentum buffers are rescaled by old/new first, so that the
velocity ``v = -eps b`` carries over unchanged, exactly as the paper's rule says. At constant
eps it runs torch's own code on torch's own state, so it equals ``torch.optim.SGD`` bit for bit.
"""

from __future__ import annotations

import torch


class PaperSGD(torch.optim.SGD):
    """SGD with momentum and weight decay in the paper's (and Caffe's) form: eps inside the velocity."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            last = group.get("last_lr")
            if last is not None and last != group["lr"]:
                for p in group["params"]:
                    buf = self.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(last / group["lr"])
            group["last_lr"] = group["lr"]  # in param_groups, so checkpoints keep it
        return super().step(closure)
