"""Packaging for s2gr: stepwise semantic-guided reasoning for generative recommendation."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
SERVE = ["fastapi>=0.110", "uvicorn>=0.29"]  # `s2gr serve`

setup(
    name="s2gr",
    version="0.1.0",
    description=(
        "S2GR: stepwise semantic-guided latent reasoning for generative recommendation, "
        "as a Hugging Face-compatible model package"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["s2gr", "s2gr.*"]),
    package_data={"s2gr": ["metrics/*/*.py"]},
    install_requires=[
        # torch first and pinned by the Makefile (a local CPU wheel); any 2.x works here.
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "accelerate>=1.0",
        "peft>=0.17",
        "evaluate>=0.4.3",
        "huggingface-hub>=1.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "pyarrow>=15",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "serve": SERVE,
        "dev": [
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "pytest-timeout>=2.3",
            "httpx>=0.27",
            "tensorboard>=2.14",
            *SERVE,
        ],
    },
    entry_points={"console_scripts": ["s2gr=s2gr.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
