"""crd-edge: distil image-to-image GAN generators and ship them to edge devices."""

__version__ = "0.1.0"
