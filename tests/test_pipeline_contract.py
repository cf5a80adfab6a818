"""Every installed pipeline holds to the same contract: shapes, label order, sharding, seeding.

The dataset here has one image per class, so a label names its sample: what a loader yields
can be checked sample by sample without looking at pixels.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from pipelines import AugmentSpec, PipelineOptions, available_pipelines, create_pipeline

PIPELINES = available_pipelines()
CLASSES = 16


@pytest.fixture(scope="module")
def one_per_class(cache_dir, tmp_path_factory):
    root = ensure_synthetic(SyntheticSpec(classes=CLASSES, train_per_class=1, val_per_class=1, seed=5), cache_dir, progress=False)
    return load_manifest(root, tmp_path_factory.mktemp("m"), progress=False)


def build(name, tmp_path, **options):
    opts = {"batch_size": 4, "workers": 1, "cache_dir": str(tmp_path), **options}
    return create_pipeline(name, AugmentSpec(), PipelineOptions(**opts))


def drain(loader, epoch=0):
    loader.set_epoch(epoch)
    try:
        return [(x, y) for x, y in loader]
    finally:
        loader.close()


@pytest.mark.parametrize("name", PIPELINES)
def test_shapes_dtypes_and_label_order(name, one_per_class, tmp_path):
    p = build(name, tmp_path)
    split = one_per_class.split("val")
    batches = drain(p.eval_loader(split))
    assert torch.cat([y for _, y in batches]).tolist() == list(split.labels)
    x, y = batches[0]
    assert x.shape == (4, 3, 227, 227) and x.dtype == torch.float32 and y.dtype == torch.int64
    views, _ = drain(p.eval_loader(split, ten_crop=True))[0]
    assert views.shape == (4, 10, 3, 227, 227)
    train = drain(p.train_loader(one_per_class.split("train")))
    assert len(train) == CLASSES // 4 and train[0][0].shape == (4, 3, 227, 227)


@pytest.mark.parametrize("name", PIPELINES)
def test_two_ranks_see_every_sample_once(name, one_per_class, tmp_path):
    for split_name, make in (("val", lambda p, s: p.eval_loader(s)), ("train", lambda p, s: p.train_loader(s))):
        split = one_per_class.split(split_name)
        seen: Counter = Counter()
        for rank in range(2):
            p = build(name, tmp_path, rank=rank, world_size=2, batch_size=2)
            seen.update(torch.cat([y for _, y in drain(make(p, split), epoch=1)]).tolist())
        assert seen == Counter(range(CLASSES)), (split_name, seen)


@pytest.mark.parametrize("name", PIPELINES)
def test_same_seed_same_batches_other_seed_other_batches(name, one_per_class, tmp_path):
    split = one_per_class.split("train")
    a = drain(build(name, tmp_path, seed=7).train_loader(split))
    b = drain(build(name, tmp_path, seed=7).train_loader(split))
    c = drain(build(name, tmp_path, seed=8).train_loader(split))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
