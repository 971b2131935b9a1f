"""crd-edge: distil image-to-image GAN generators and ship them to edge devices."""

from crd_edge._version import __version__

__all__ = ["__version__"]
