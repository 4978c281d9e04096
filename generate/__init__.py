"""generate, part 1: new cameras, paired tracks, depth-aware warping, synthetic multi-view videos.

Pure geometry and data (no learning). Works on any reconstruction given as 3D
tracks (t, n, 3) with source cameras, or on ground truth.

Modules (one job each):
  checks           eager input validation: ValueError naming the argument
  cameras          `Trajectory`; the six camera moves (orbit left/right/up/down about a
                   look-at point at the scene's depth, dolly in/out, per frame), static
                   views, user trajectories (`Trajectory.create` validates)
  paired_tracks    `PairedTracks`: source tracks with their target-view 2D tracks, depth
                   and visibility (in image, in front, coarse z-buffer among tracks)
  warp             forward splatting of a video into target cameras with depth (nearer
                   wins, depth-gap test, mask per pixel), `compress_mask_time`, dense depth
                   from track depths, `psnr`
  scene            procedural textured scenes (room, rigid and deforming boxes/ellipsoids)
  render           JAX ray caster: RGB, depth, surface ids; exact 3D tracks and visibility
  multiview_data   `SceneViews`: one scene's source + k target videos with GT paired tracks
  dataset          tensorstore zarr dataset of `SceneViews`, resumable, kill-safe
  preview          camera-path PNGs, side-by-side panels, mp4 writing

The paired-track array layout (`PairedTracks`: track j of the source is track j of
the target) is documented in `generate.paired_tracks` and WORKSPACE.md; the
multi-view dataset layout in `generate.dataset`. Conventions are
`tracks4d.geometry`'s (OpenCV camera; pixel centres at integers).

Example:
  >>> from generate import cameras, paired_tracks, warp
  >>> source = cameras.Trajectory.create(w2c, K, (h, w), name="source")
  >>> d = cameras.scene_depth(xyz_world[0], w2c[0], K, (h, w))
  >>> target = cameras.camera_move(source, "orbit_left", 1.5, look_at=d)
  >>> pairs = paired_tracks.paired_tracks(xyz_world, source, target)
  >>> warped = warp.warp_video(rgb, depth, source, target)
"""
