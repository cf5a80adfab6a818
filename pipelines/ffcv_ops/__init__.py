"""The paper's augmentation as FFCV operations, one per file, and the order FFCV loads in.

Importing this package imports FFCV; only ``pipelines.ffcv_pipeline`` does.
"""

from pipelines.ffcv_ops.crop import Crop
from pipelines.ffcv_ops.draws import EpochDraws
from pipelines.ffcv_ops.flip import RandomFlip
from pipelines.ffcv_ops.lighting import LightingNormalize
from pipelines.ffcv_ops.order import ShardedOrder
from pipelines.ffcv_ops.ten_crop import TenCrop

__all__ = ["Crop", "EpochDraws", "LightingNormalize", "RandomFlip", "ShardedOrder", "TenCrop"]
