"""Deterministic synthetic dynamic scenes with full ground truth: the training source.

See `generator.generate_clip`; scene content in `scene` and `surfaces`, camera
paths in `cameras`, track sampling, visibility and tracker noise in `sampling`.
"""

from tracks4d.synthetic.cameras import CAMERA_PATHS, ORBIT_DEG
from tracks4d.synthetic.generator import ClipInfo, SyntheticConfig, clip_rng, generate_clip
from tracks4d.synthetic.sampling import TrackerNoise
from tracks4d.synthetic.scene import FAMILIES
