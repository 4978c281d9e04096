"""reconstruct.static_fit: the movement level (least static-fit pixel error)."""

import numpy as np

from reconstruct import static_fit
from tracks4d import geometry, synthetic

CFG = synthetic.SyntheticConfig(num_frames=(24, 24), grid_size=8, query_stride=12,
                                noise=synthetic.TrackerNoise(noise_px=0.5, outlier_frac=0.0, drop_frac=0.0))


def _fit(clip, w2c, steps=10):
  return static_fit.triangulate_static(w2c, clip.intrinsics, clip.xy_px, clip.visible, refine_steps=steps)


def test_static_tracks_fit_to_the_tracker_noise_and_moving_tracks_do_not():
  clip = synthetic.generate_clip(CFG, 5, 0, family="rigid", camera="orbit")
  fit = _fit(clip, clip.gt.w2c)
  moving = clip.gt.dynamic.any(0)
  assert moving.any() and (~moving).any()
  static_rms = fit.rms_px[~moving & fit.ok]
  # The jitter is 0.5 px at a 512-px side; the clip is smaller, so less.
  assert np.median(static_rms) < 0.6 and np.percentile(static_rms, 90) < 1.0, static_rms
  thr = static_fit.movement_threshold(fit.rms_px)
  labelled = fit.ok & (fit.rms_px > thr)
  assert labelled[~moving].mean() < 0.05 and labelled[moving].mean() > 0.5, (labelled[moving].mean(), thr)
  # Refining on the pixel error lowers it below the algebraic (DLT) point's.
  dlt = _fit(clip, clip.gt.w2c, steps=0)
  both = fit.ok & dlt.ok
  assert (fit.rms_px[both] <= dlt.rms_px[both] + 1e-6).all()


def test_level_is_the_least_pixel_error_under_imprecise_cameras():
  """Under cameras off by a few percent, no nearby static point explains a track
  better than the fitted one (the level is a minimum of the pixel error, so it is
  continuous in the cameras; the algebraic DLT point is not such a minimum)."""
  clip = synthetic.generate_clip(CFG, 5, 1, family="nonrigid", camera="handheld")
  rng = np.random.default_rng(0)
  w2c = np.asarray(clip.gt.w2c, np.float64).copy()
  w2c[:, :3, :] += 0.03 * rng.standard_normal(w2c[:, :3, :].shape)
  xy, vis = np.asarray(clip.xy_px, np.float64), np.asarray(clip.visible)

  def rms(points, ok):  # (m, 3) points of the tracks `ok`
    proj, _ = geometry.project(geometry.transform_points(w2c, points), clip.intrinsics)
    return np.sqrt(np.where(vis[:, ok], ((proj - xy[:, ok]) ** 2).sum(-1), 0).sum(0) / vis[:, ok].sum(0))

  for steps, want_min in ((10, True), (0, False)):
    fit = _fit(clip, w2c, steps)
    ok = fit.ok
    np.testing.assert_allclose(rms(fit.xyz_world[ok], ok), fit.rms_px[ok], rtol=1e-9)
    scale = 1e-3 * np.linalg.norm(fit.xyz_world[ok] - geometry.invert_pose(w2c)[:, None, :3, 3].mean(0), axis=-1)
    worse = [rms(fit.xyz_world[ok] + scale[:, None] * rng.standard_normal((ok.sum(), 3)) / np.sqrt(3), ok)
             for _ in range(8)]
    is_min = (np.stack(worse) >= fit.rms_px[ok] - 1e-9).all(0)
    assert is_min.all() if want_min else not is_min.all(), (steps, is_min.mean())


def test_tracks_seen_once_or_never_are_not_fitted():
  clip = synthetic.generate_clip(CFG, 5, 2)
  visible = np.asarray(clip.visible).copy()
  visible[:, 0] = False
  visible[:, 1] = False
  visible[3, 1] = True
  fit = static_fit.triangulate_static(clip.gt.w2c, clip.intrinsics, clip.xy_px, visible)
  assert not fit.ok[0] and not fit.ok[1] and np.isnan(fit.rms_px[:2]).all() and fit.ok[2:].mean() > 0.9
