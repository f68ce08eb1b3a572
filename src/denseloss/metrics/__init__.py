"""Dataset-level metrics: confusion matrix (mIoU), boundary F1, depth and normal errors.

Every metric keeps a fixed-size ``state()`` tensor, so DDP ranks are synchronised by summing
states (``fabric.all_reduce(m.state(), reduce_op="sum")``) and loading the sum back.
"""

from denseloss.metrics.boundary import BoundaryF1, class_boundaries
from denseloss.metrics.confusion import ConfusionMatrix
from denseloss.metrics.depth import DepthMetrics
from denseloss.metrics.normals import NormalMetrics

__all__ = ["BoundaryF1", "ConfusionMatrix", "DepthMetrics", "NormalMetrics", "class_boundaries"]
