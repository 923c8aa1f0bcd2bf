"""s2gr: stepwise semantic-guided latent reasoning for generative recommendation."""

__version__ = "0.1.0"
