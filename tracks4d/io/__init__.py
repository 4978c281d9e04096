"""File formats read and written by tracks4d.

Modules:
  npz_utils     safe npz loading (no pickle), key/shape checks, atomic writes.
  peer_npz      the TracksTo4D peer npz format <-> `tracks4d.tracks.Tracks`.
  tapvid3d_npz  TAPVid-3D clip and prediction npz files.
  mocap_mat     CMU-mocap NRSfM .mat sequences -> MocapSequence and Tracks.
  zarr_store    chunked tensorstore zarr storage: kvstore specs, arrays, the progress marker.
  dataset       many clips in tensorstore zarr arrays (local or any kvstore), random batches.
"""
