"""From a run's ``--data`` setting to a checked manifest and the colour statistics to use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.config import RunConfig
from bench.data.colour_stats import load_colour_stats
from bench.data.manifest import Manifest, load_manifest, missing_split_folder
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from bench.errors import UserError
from pipelines.spec import ColourStats

WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class Dataset:
    name: str  # "embedded" or the root folder's name
    manifest: Manifest
    colour: ColourStats

    def describe(self) -> dict:
        m = self.manifest
        bad = m.bad()
        return {
            "name": self.name,
            "root": m.root,
            "fingerprint": m.fingerprint,
            "classes": len(m.classes),
            "counts": m.counts(),
            "bad_count": len(bad),
            "bad": [{"split": e.split, "path": e.path, "reason": e.reason} for e in bad],
            "empty_classes": m.empty_classes("train"),
            "classes_missing_from_val": m.empty_classes("val"),
            "colour_stats": self.colour.source,
            "embedded": self.name == "embedded",
        }


def looks_like_imagenet(manifest: Manifest) -> bool:
    """1000 classes named by WordNet ids: ILSVRC-2012 in ImageFolder layout."""
    return len(manifest.classes) == 1000 and all(WNID.fullmatch(c) for c in manifest.classes)


def open_dataset(config: RunConfig) -> Dataset:
    if config.embedded:
        spec = SyntheticSpec(config.embedded_classes, config.embedded_train_per_class, config.embedded_val_per_class, seed=0)
        root = ensure_synthetic(spec, Path(config.cache_dir), progress=config.progress)
        name = "embedded"
    else:
        root = Path(config.data).expanduser()
        name = root.resolve().name
        if (root / "train").is_dir() and not (root / "val").is_dir():  # issue 16: say the folder is missing
            raise UserError(missing_split_folder(root, "val"))
    manifest = load_manifest(root, config.cache_dir, progress=config.progress, max_pixels=config.max_pixels)
    bad = manifest.bad()
    if config.strict and bad:
        raise UserError(f"--strict: {len(bad)} bad file(s) in {manifest.root}; the first is {bad[0].path}: {bad[0].reason}")
    use_imagenet = config.lighting_stats == "imagenet" or (config.lighting_stats == "auto" and looks_like_imagenet(manifest))
    colour = ColourStats() if use_imagenet else load_colour_stats(manifest, config.cache_dir, progress=config.progress)
    return Dataset(name, manifest, colour)
