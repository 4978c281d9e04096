"""tracks4d: feed-forward 4D reconstruction from 2D point tracks, in JAX."""

import setuptools

setuptools.setup(
    name="tracks4d",
    version="0.1.0",
    description=(
        "Feed-forward 4D reconstruction from 2D point tracks and track-conditioned "
        "novel-view video generation, in JAX."
    ),
    packages=setuptools.find_packages(include=["tracks4d*", "reconstruct*", "generate*", "experiments*"]),
    package_data={"tracks4d": ["pretrained/*/*.json", "pretrained/*/*.md", "pretrained/*/params/*",
                               "pretrained/*/params/*/*", "pretrained/*/params/*/*/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.35,<0.11",
        "flax>=0.10,<0.13",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "tensorstore>=0.1.70,<0.2",
        "absl-py>=2.1,<3",
        "ml_collections>=0.1.1,<2",
        "einops>=0.8,<0.9",
        "numpy>=1.26,<3",
        "scipy>=1.13,<2",
        "opencv-python-headless>=4.9,<6",
        "imageio>=2.34,<3",
        "imageio-ffmpeg>=0.5,<0.9",
        "tqdm>=4.66,<5",
        "jaxtyping>=0.2.34,<0.4",
        "tensorboardX>=2.6,<3",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4"],
    },
)
