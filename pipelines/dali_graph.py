"""The paper's augmentation as DALI graph functions over DataNodes, and the two graphs built
from them (the shape of DALI's ResNet-50 example: plain functions over DataNodes, reused by
graph-only ``@pipeline_def`` functions; batch size, threads, device and seed given at the call).

Every operator here is a DALI operator: there is no Python callback anywhere in the graph.
The random operators (crop position, flip, lighting coefficients) run on the CPU in both the
``cpu`` and the ``mixed`` graph, so a seed gives the same draws whichever decoder runs.

Geometry, matched to ``pipelines.torchvision_pipeline.preprocess`` (torchvision's rules):
the shorter side goes to ``size`` and the longer to ``int(size * long / short)``; the central
``size`` x ``size`` square starts at ``round((out - size) / 2)`` with Python's round (half to
even). DALI's ``resize_shorter`` followed by a centre crop rounds both differently, and on
the embedded data one pixel of misalignment made the outputs differ by up to 186/255 (mean
2.8/255). So the square is resized directly from the input region that maps onto it
(``fn.resize`` with an absolute ROI): the same sampling grid and the same antialiasing scale
as PIL's, without materialising the full resized image.
"""

from __future__ import annotations

from typing import Sequence

from nvidia.dali import fn, types
from nvidia.dali import math as dmath
from nvidia.dali.pipeline import pipeline_def

from pipelines.spec import AugmentSpec

READER = "reader"  # the reader's name, so the iterator can size the epoch and drop padding


def read(files: Sequence[str], indices: Sequence[int], *, shard_id: int, num_shards: int):
    """Encoded files in the given order (no shuffling, no directory scan), with their indices as labels.

    DALI's shard ``shard_id`` is the contiguous block ``[shard_id * N // num_shards,
    (shard_id + 1) * N // num_shards)`` of the list; the last batch of a shard is padded by
    repeating its last sample (the iterator drops the padding). ``stick_to_shard`` keeps a
    reused (evaluation) graph on the same shard every epoch.
    """
    return fn.readers.file(
        files=list(files),
        labels=list(indices),
        shard_id=shard_id,
        num_shards=num_shards,
        pad_last_batch=True,
        stick_to_shard=True,
        random_shuffle=False,
        name=READER,
    )


def decode(jpegs, *, decoder: str, hw_decoder_load: float):
    """RGB, upright by EXIF orientation (DALI's default). ``mixed``: nvJPEG on the GPU, with
    libjpeg-turbo's "fancy" chroma upsampling so its output matches the CPU decoder's (and PIL's)."""
    if decoder == "mixed":
        return fn.decoders.image(
            jpegs, device="mixed", output_type=types.RGB, hw_decoder_load=hw_decoder_load, jpeg_fancy_upsampling=True
        )
    return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)


def _round_half_even_half(excess):
    """``round(excess / 2)`` with Python's rounding (halves to even), in integer DALI arithmetic."""
    half = excess // 2
    return half + (excess & 1) * (half & 1)


def centre_square(images, jpegs, size: int):
    """Shorter side to ``size`` (bilinear, antialiased), then the central ``size`` x ``size`` square; uint8 HWC.

    For each axis of length ``n``, the resized length is ``out = size * n // short`` and the
    square starts at ``top = round((out - size) / 2)``; it covers the input interval
    ``[top * n / out, (top + size) * n / out)``, which is resized to ``size`` directly.
    """
    shape = fn.peek_image_shape(jpegs, dtype=types.INT32)  # H, W, C after the EXIF rotation, as decoded
    h, w = shape[0], shape[1]
    short = dmath.min(h, w)
    starts, ends = [], []
    for n in (h, w):
        out = (size * n) // short
        top = _round_half_even_half(out - size)
        starts.append(top * n / out)
        ends.append((top + size) * n / out)
    return fn.resize(
        images,
        size=[size, size],
        roi_start=fn.stack(*starts),
        roi_end=fn.stack(*ends),
        roi_relative=False,
        interp_type=types.INTERP_LINEAR,
        antialias=True,
    )


def _position(offset: int, edge: int) -> float:
    """``crop_pos`` that ``crop_mirror_normalize`` turns back into the integer ``offset`` (it rounds ``pos * edge``)."""
    return offset / edge if edge else 0.0


def random_crop_position(edge: int):
    """A uniform integer offset in ``[0, edge]``, as the normalised position ``crop_mirror_normalize`` takes."""
    if edge == 0:
        return 0.0
    return fn.random.uniform(values=[_position(k, edge) for k in range(edge + 1)])


def lighting_mean(spec: AugmentSpec):
    """The per-image normalisation mean with the paper's PCA lighting folded in, in 0-255 units.

    ``shift = M @ alpha``, ``M = eigvec * eigval`` (``AugmentSpec.lighting_matrix``), ``alpha ~
    N(0, sigma)`` per image per use. The spec adds the shift to pixels in [0, 1] before
    normalising: ``(x / 255 + shift - mean) / std == (x - 255 * (mean - shift)) / (255 * std)``,
    so the shift becomes a per-image mean for ``crop_mirror_normalize``: three numbers per
    image instead of a pass over every pixel.
    """
    mean = [255.0 * m for m in spec.colour.mean]
    if spec.lighting_sigma == 0:
        return mean
    matrix = spec.lighting_matrix()
    alpha = fn.random.normal(shape=[3], mean=0.0, stddev=spec.lighting_sigma, dtype=types.FLOAT)
    a = [alpha[i] for i in range(3)]
    per_channel = []
    for c in range(3):
        shift = float(matrix[c, 0]) * a[0] + float(matrix[c, 1]) * a[1] + float(matrix[c, 2]) * a[2]
        per_channel.append(mean[c] - 255.0 * shift)
    return fn.stack(*per_channel)


def crop_normalise(square, spec: AugmentSpec, *, pos_y, pos_x, mirror, mean):
    """Crop ``spec.crop`` at the given position, mirror, normalise; float CHW."""
    return fn.crop_mirror_normalize(
        square,
        crop=[spec.crop, spec.crop],
        crop_pos_y=pos_y,
        crop_pos_x=pos_x,
        rounding="round",
        mirror=mirror,
        mean=mean,
        std=[255.0 * s for s in spec.colour.std],
        dtype=types.FLOAT,
        output_layout="CHW",
    )


def _outputs(images, indices, decoder: str):
    return images, (indices.gpu() if decoder == "mixed" else indices)


@pipeline_def
def train_graph(files, indices, *, shard_id, num_shards, spec: AugmentSpec, decoder: str, hw_decoder_load: float):
    """Random crop (uniform integer offsets), flip with ``spec.flip_prob``, PCA lighting, normalisation.

    The random operators are created in a fixed order (crop top, crop left, flip, lighting),
    which fixes the seed DALI derives for each from the pipeline's seed.
    """
    jpegs, idx = read(files, indices, shard_id=shard_id, num_shards=num_shards)
    square = centre_square(decode(jpegs, decoder=decoder, hw_decoder_load=hw_decoder_load), jpegs, spec.resize)
    edge = spec.resize - spec.crop
    pos_y, pos_x = random_crop_position(edge), random_crop_position(edge)
    mirror = fn.random.coin_flip(probability=spec.flip_prob, dtype=types.INT32) if spec.flip_prob > 0 else 0
    images = crop_normalise(square, spec, pos_y=pos_y, pos_x=pos_x, mirror=mirror, mean=lighting_mean(spec))
    return _outputs(images, idx, decoder)


@pipeline_def
def eval_graph(files, indices, *, shard_id, num_shards, spec: AugmentSpec, decoder: str, hw_decoder_load: float, ten_crop: bool):
    """The centre crop at offset ``(resize - crop) // 2`` (as the torchvision pipeline), or the
    ten views of ``AugmentSpec.ten_crop_offsets()`` stacked as ``10 x 3 x H x W`` per sample."""
    jpegs, idx = read(files, indices, shard_id=shard_id, num_shards=num_shards)
    square = centre_square(decode(jpegs, decoder=decoder, hw_decoder_load=hw_decoder_load), jpegs, spec.resize)
    edge = spec.resize - spec.crop
    mean = [255.0 * m for m in spec.colour.mean]
    if not ten_crop:
        centre = _position(edge // 2, edge)
        return _outputs(crop_normalise(square, spec, pos_y=centre, pos_x=centre, mirror=0, mean=mean), idx, decoder)
    views = [
        crop_normalise(square, spec, pos_y=_position(top, edge), pos_x=_position(left, edge), mirror=int(flip), mean=mean)
        for top, left, flip in spec.ten_crop_offsets()
    ]
    return _outputs(fn.stack(*views), idx, decoder)
