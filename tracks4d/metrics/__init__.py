"""Evaluation metrics in the papers' units (pure NumPy).

Modules:
  depth     AbsRel and delta accuracies at track points, per-frame or per-clip median scale.
  pose      ATE and RPE after an Umeyama Sim(3) alignment of camera centres.
  nrsfm     the normalised 3D error e3D of non-rigid structure from motion.
  tapvid3d  TAPVid-3D APD, occlusion accuracy and 3D average Jaccard.
"""

from tracks4d.metrics.depth import DepthMetrics, depth_metrics, median_scales
from tracks4d.metrics.nrsfm import NrsfmMetrics, e3d, global_rotation, norm_scale, nrsfm_metrics
from tracks4d.metrics.pose import PoseMetrics, align_sim3, pose_metrics
from tracks4d.metrics.tapvid3d import TapVid3DMetrics, global_scale, tapvid3d_metrics

__all__ = [
    "DepthMetrics",
    "NrsfmMetrics",
    "PoseMetrics",
    "TapVid3DMetrics",
    "align_sim3",
    "depth_metrics",
    "e3d",
    "global_rotation",
    "global_scale",
    "median_scales",
    "norm_scale",
    "nrsfm_metrics",
    "pose_metrics",
    "tapvid3d_metrics",
]
