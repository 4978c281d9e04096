r"""Focal-length self-calibration on synthetic clips (the BENCHMARKS.md numbers).

  bash .ci/in_venv python -m experiments.bench_focal --clips_per_case=6

For each scene family x camera path, `clips_per_case` clips (seed 0): whether
`reconstruct.intrinsics.estimate_focal` accepts an estimate, and the relative
error of the accepted ones against the true focal length.
"""

import numpy as np
from absl import app, flags

from reconstruct.intrinsics import estimate_focal
from tracks4d import synthetic


def main(argv):
  del argv
  cfg = synthetic.SyntheticConfig()
  errors = []
  for camera in cfg.camera_paths:
    for family in ("static", "rigid", "nonrigid"):
      row = []
      for i in range(flags.FLAGS.clips_per_case):
        clip = synthetic.generate_clip(cfg, 0, i, family=family, camera=camera)
        est = estimate_focal(clip)
        err = est.focal_px / float(clip.intrinsics[0, 0, 0]) - 1
        row.append(f"{err:+.3f}{'E' if est.source == 'estimated' else 'g'}")
        if est.source == "estimated":
          errors.append(abs(err))
      print(f"{camera:9s} {family:9s} {' '.join(row)}   (E accepted, g guess)")
  n = flags.FLAGS.clips_per_case * len(cfg.camera_paths) * 3
  print(f"accepted {len(errors)}/{n}; |relative error| of accepted: median {np.median(errors):.4f}, "
        f"max {np.max(errors):.4f}")


if __name__ == "__main__":
  flags.DEFINE_integer("clips_per_case", 6, "Clips per family and camera path.")
  app.run(main)
