"""The paper's augmentation as DALI graph functions over DataNodes, and the two graphs built
from them (the shape of DALI's ResNet-50 example: plain functions over DataNodes, reused by
graph-only ``@pipeline_def`` functions; batch size, threads, device and seed given at the call).

The training graph is built once per loader and fed each epoch's files and random draws
through one parallel ``external_source`` (files read, draws made in DALI's Python workers by
``pipelines.dali_feed.EpochFeed`` with the torchvision pipeline's ``AugmentSpec.draw``);
everything else is a DALI operator. The draws do not depend on the decoder, so the ``cpu``
and ``mixed`` graphs draw the same.

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

import math
from typing import Sequence

from nvidia.dali import fn, types
from nvidia.dali import math as dmath
from nvidia.dali.pipeline import pipeline_def

from pipelines.spec import AugmentSpec, centre_start

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


# The training graph's external source: per sample, the encoded file, its index in the split,
# the region of the file to decode (``start``/``end``, rows and columns) and the crop's window
# inside that region (``roi_start``/``roi_end``), the mirror flag and the lighting folded into
# the per-image mean. ``pipelines.dali_feed.EpochFeed`` produces them, the geometry with
# ``crop_region``.
FEED = ("jpegs", "indices", "start", "end", "roi_start", "roi_end", "mirror", "mean")
FEED_TYPES = (types.UINT8, types.INT64, types.INT32, types.INT32, types.FLOAT, types.FLOAT, types.INT32, types.FLOAT)
SLICE_MARGIN = 4  # decoded pixels kept around a crop's input window: more than the filter's reach (scale < 4)


def crop_window(n: int, short: int, size: int, offset: int, crop: int) -> tuple[float, float]:
    """The input interval ``[start, end)`` along an axis of ``n`` pixels that maps onto ``[offset, offset + crop)``
    of the central ``size`` square (``centre_square``'s geometry: Python's round, halves to even)."""
    out = (size * n) // short
    top = centre_start(out, size) + offset
    return top * n / out, (top + crop) * n / out


def crop_region(height: int, width: int, spec: AugmentSpec, top: int, left: int) -> tuple[list[int], list[int], list[float], list[float]]:
    """For an upright ``height`` x ``width`` image and the crop at ``(top, left)`` of its square: the region to
    decode (``start``, ``end``: rows, columns; the window plus ``SLICE_MARGIN``, inside the image) and the
    window relative to it (``roi_start``, ``roi_end``), as ``random_crop`` takes them.

    Computed in Python by the feed, not in the graph: the same numbers as the
    ``peek_image_shape`` and arithmetic operators they replace, and faster on the CPU, where a
    batch waited on some twenty small operators (measured in ``pipelines.dali_pipeline``).
    """
    windows = [crop_window(n, min(height, width), spec.resize, offset, spec.crop) for n, offset in ((height, top), (width, left))]
    first = [max(math.floor(lo) - SLICE_MARGIN, 0) for lo, _ in windows]
    last = [min(math.ceil(hi) + SLICE_MARGIN, n) for (_, hi), n in zip(windows, (height, width))]
    return first, last, [lo - f for (lo, _), f in zip(windows, first)], [hi - f for (_, hi), f in zip(windows, first)]


def random_crop(jpegs, spec: AugmentSpec, *, start, end, roi_start, roi_end, decoder: str, hw_decoder_load: float):
    """The training crop, resampled straight from its input window, decoding only that window (plus a margin).

    The same sampling grid and filter as cropping ``centre_square``'s square (DALI resamples
    in floating point): only the region the crop maps back to is decoded
    (``decoders.image_slice``: libjpeg-turbo skips the rows and columns outside it), and only
    ``crop x crop`` pixels are resampled instead of the ``size x size`` square. The region and
    the window come from ``crop_region``, through the feed.
    """
    if decoder == "mixed":
        region = fn.decoders.image_slice(jpegs, start=start, end=end, axis_names="HW", device="mixed",
                                         output_type=types.RGB, hw_decoder_load=hw_decoder_load, jpeg_fancy_upsampling=True)
    else:
        region = fn.decoders.image_slice(jpegs, start=start, end=end, axis_names="HW", device="cpu", output_type=types.RGB)
    return fn.resize(region, size=[spec.crop, spec.crop], roi_start=roi_start, roi_end=roi_end, roi_relative=False,
                     interp_type=types.INTERP_LINEAR, antialias=True)


@pipeline_def
def train_graph(feed, *, spec: AugmentSpec, decoder: str, hw_decoder_load: float, uint8: bool, feed_depth: int):
    """The epoch's files and draws from ``feed`` (``pipelines.dali_feed.EpochFeed``, see ``FEED``),
    run by DALI's Python workers ``feed_depth`` batches ahead (parallel ``external_source``,
    batch mode): crop (``random_crop``), flip, PCA lighting folded into the mean,
    normalisation; built once and fed every epoch.

    ``uint8``: crop and flip only; the batch leaves as uint8 with the per-image means, and torch
    normalises it on the target device (the CPU decoder feeding a GPU).
    """
    jpegs, idx, start, end, roi_start, roi_end, mirror, mean = fn.external_source(source=feed, num_outputs=len(FEED), batch=True, batch_info=True,
                                                                                   parallel=True, prefetch_queue_depth=feed_depth, dtype=list(FEED_TYPES))
    crop = random_crop(jpegs, spec, start=start, end=end, roi_start=roi_start, roi_end=roi_end, decoder=decoder,
                       hw_decoder_load=hw_decoder_load)
    if uint8:
        return fn.crop_mirror_normalize(crop, mirror=mirror, dtype=types.UINT8, output_layout="CHW"), idx, mean
    images = fn.crop_mirror_normalize(crop, mirror=mirror, mean=mean, std=[255.0 * s for s in spec.colour.std], dtype=types.FLOAT, output_layout="CHW")
    return (*_outputs(images, idx, decoder), mean)


def crop_uint8(square, spec: AugmentSpec, *, pos_y, pos_x, mirror):
    """Crop ``spec.crop`` at the given position and mirror, no normalisation: uint8 CHW (torch normalises on the device)."""
    return fn.crop_mirror_normalize(square, crop=[spec.crop, spec.crop], crop_pos_y=pos_y, crop_pos_x=pos_x, rounding="round",
                                    mirror=mirror, dtype=types.UINT8, output_layout="CHW")


@pipeline_def
def eval_graph(files, indices, *, shard_id, num_shards, spec: AugmentSpec, decoder: str, hw_decoder_load: float, ten_crop: bool, uint8: bool = False):
    """The centre crop at offset ``(resize - crop) // 2`` (as the torchvision pipeline), or the
    ten views of ``AugmentSpec.ten_crop_offsets()`` stacked as ``10 x 3 x H x W`` per sample
    (``uint8``: not normalised, as in ``train_graph``)."""
    jpegs, idx = read(files, indices, shard_id=shard_id, num_shards=num_shards)
    square = centre_square(decode(jpegs, decoder=decoder, hw_decoder_load=hw_decoder_load), jpegs, spec.resize)
    edge = spec.resize - spec.crop
    mean = [255.0 * m for m in spec.colour.mean]

    def view(top: int, left: int, flip: bool):
        pos_y, pos_x = _position(top, edge), _position(left, edge)
        if uint8:
            return crop_uint8(square, spec, pos_y=pos_y, pos_x=pos_x, mirror=int(flip))
        return crop_normalise(square, spec, pos_y=pos_y, pos_x=pos_x, mirror=int(flip), mean=mean)

    if not ten_crop:
        return _outputs(view(edge // 2, edge // 2, False), idx, decoder)
    return _outputs(fn.stack(*[view(t, l, f) for t, l, f in spec.ten_crop_offsets()]), idx, decoder)
