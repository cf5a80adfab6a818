"""What a run's seed guarantees, as recorded: sample order, augmentation draws, bitwise curves."""

from __future__ import annotations

from typing import Any, Sequence


def guarantees(pipeline_info: dict[str, Any], devices: Sequence[str]) -> dict[str, Any]:
    """Combine the pipeline's own claims (``describe()["determinism"]``) with what the devices allow."""
    claims = pipeline_info.get("determinism", {})
    order = bool(claims.get("order"))
    augmentation = bool(claims.get("augmentation"))
    on_cpu = all(str(d).startswith("cpu") for d in devices)
    notes = [claims["note"]] if claims.get("note") else []
    if not on_cpu:
        notes.append("on CUDA the training itself is not bitwise reproducible (cuDNN algorithm choice, atomic adds); "
                     "order and augmentation draws still follow the seed as stated")
    return {"sample_order": order, "augmentation": augmentation, "bitwise_curves": order and augmentation and on_cpu, "notes": notes}
