r"""Command line: reconstruct a video, a frame folder, or track files.

  python -m reconstruct INPUT --out DIR [--bundle_adjust] [--finetune_steps N] [--tracker lk|tapnet]
  python -m reconstruct --demo --out DIR

INPUT: a video file, a folder of frames, a TracksTo4D peer npz, a TAPVid-3D npz,
or a folder of npz files (one result per clip, in DIR/<name>/). DIR receives
reconstruction.npz (c2w, K, tracks_world, tracks_cam, visible, movement),
tapvid3d_prediction.npz, colmap/ (cameras.txt, images.txt, points3D.txt),
points_static.ply, tracks.ply, cameras.ply, reconstruction.png, tracks.mp4 (video
inputs) and summary.json. See reconstruct/cli.py.
"""

import json

from absl import app, flags

from reconstruct import cli
from reconstruct.pipeline import ReconstructOptions

_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_DEMO = flags.DEFINE_bool("demo", False, "Reconstruct the embedded rendered demo video and score it.")
_MODEL = flags.DEFINE_string("model", None, "Model folder (default: the shipped small model).")
_BA = flags.DEFINE_bool("bundle_adjust", False, "Refine cameras and static points by bundle adjustment.")
_REFINE_FOCAL = flags.DEFINE_bool("refine_focal", False, "Also refine the focal length in bundle adjustment.")
_FT_STEPS = flags.DEFINE_integer("finetune_steps", 0, "Test-time fine-tuning steps per clip.")
_FT_LR = flags.DEFINE_float("finetune_learning_rate", 3e-4, "Fine-tuning step size (Adam).")
_TRACKER = flags.DEFINE_enum("tracker", "lk", ["lk", "tapnet"], "Tracker for video inputs.")
_TAPNET_CKPT = flags.DEFINE_string("tapnet_checkpoint", None, "TAPIR/BootsTAPIR checkpoint (--tracker=tapnet).")
_GRID = flags.DEFINE_integer("grid_size", 15, "Tracker queries per image side at each query frame.")
_QUERY_FRAMES = flags.DEFINE_integer("num_query_frames", 3, "Tracker query frames.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Use at most this many frames of a video.")
_STRIDE = flags.DEFINE_integer("stride", 1, "Use every stride-th frame of a video.")
_WINDOW = flags.DEFINE_integer("window_size", 32, "Frames per window.")
_OVERLAP = flags.DEFINE_integer("overlap", 8, "Least frames shared by consecutive windows.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Windows per network call.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
  options = ReconstructOptions(window_size=_WINDOW.value, overlap=_OVERLAP.value, batch_size=_BATCH.value,
                               bundle_adjust=_BA.value, refine_focal=_REFINE_FOCAL.value,
                               finetune_steps=_FT_STEPS.value, finetune_learning_rate=_FT_LR.value,
                               progress=_PROGRESS.value)
  if _DEMO.value:
    if len(argv) > 1:
      raise app.UsageError("--demo takes no INPUT.")
    result = cli.run_demo(_OUT.value, options, model=_MODEL.value)
    print(json.dumps(result, indent=1))
    return
  if len(argv) != 2:
    raise app.UsageError("Expected exactly one INPUT (a video, frame folder, npz, or folder of npz), or --demo.")
  tracker_options = {"grid_size": _GRID.value, "num_query_frames": _QUERY_FRAMES.value}
  if _TRACKER.value == "tapnet":
    tracker_options["checkpoint"] = _TAPNET_CKPT.value
  summaries = cli.run_input(argv[1], _OUT.value, options, model=_MODEL.value, tracker=_TRACKER.value,
                            tracker_options=tracker_options, max_frames=_MAX_FRAMES.value, stride=_STRIDE.value)
  for s in summaries:
    print(json.dumps({k: s.get(k) for k in ("clip", "num_frames", "num_tracks", "focal_source", "reprojection",
                                            "timings", "ground_truth_scores") if k in s}, indent=1))


if __name__ == "__main__":
  app.run(main)
