"""``crd-edge demo``: live translation from a camera, video file or stream, shown side by side
(input | student | teacher) in a window, written to a video file, or served as MJPEG."""

from crd_edge.demo.loop import DemoOptions, DemoSummary, run_demo

__all__ = ["DemoOptions", "DemoSummary", "run_demo"]
