"""Everything a view-based run (``data.views > 0``) needs besides the loop: the photos and their
split, the teacher's labeller, the bank of labelled training views, the labelled held-out
split, and the fixed training views whose fit is tracked."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crd_edge._io import cache_root
from crd_edge.config import RunConfig
from crd_edge.data.photo_source import PhotoSet, load_photo_set
from crd_edge.data.views import ViewSpec, sample_view
from crd_edge.training.heldout import HeldoutSet, build_heldout
from crd_edge.training.view_bank import TeacherLabeller, ViewBank, bank_key

__all__ = ["ViewTraining", "bank_capacity", "views_cache_dir"]

FIT_VIEWS = 128  # training views whose L1 to the teacher is tracked (the training-set fit)


def views_cache_dir() -> Path:
    return cache_root() / "views"


def bank_capacity(cfg: RunConfig) -> int:
    """How many views to label: ``data.views``, or fewer when the run draws fewer (``train.steps``
    x ``data.batch_size``): a 20-step trial labels 160 views, not 4000. Shard k is the same views
    whatever the capacity, so a longer run later labels only the views the trial did not."""
    dc, steps = cfg.data, cfg.train.steps
    return dc.views if steps is None else max(1, min(dc.views, steps * dc.batch_size))


@dataclass
class ViewTraining:
    photos: PhotoSet
    spec: ViewSpec
    labeller: TeacherLabeller
    bank: ViewBank
    heldout: HeldoutSet | None
    fit_x: torch.Tensor   # FIT_VIEWS training views and their teacher outputs, [-1, 1]
    fit_y: torch.Tensor

    @classmethod
    def build(cls, cfg: RunConfig, teacher, device: torch.device, *, cache_dir: Path | None = None) -> "ViewTraining":
        dc = cfg.data
        photos = load_photo_set(dc.data, video_stride=dc.video_stride, min_size=dc.size).first_photos(dc.train_photos)
        spec = ViewSpec(size=dc.size, min_short=dc.size, max_short=dc.view_max_short, jitter=dc.view_jitter)
        images = [img for _, img in photos.train]
        probe = np.stack([sample_view(images[i % len(images)], random.Random(i), spec) for i in range(4)])
        labeller = TeacherLabeller(teacher, dc.size, device, probe=probe)
        key_parts = {"teacher": teacher.identity.get("sha256"), "source": teacher.identity.get("source"),
                     "photos": [(name, img.shape) for name, img in photos.train], "spec": spec.as_dict(),
                     "seed": cfg.train.seed, "labeller": labeller.info.get("precision")}
        root = (cache_dir or views_cache_dir())
        bank = ViewBank(root / bank_key(key_parts), images, spec, labeller, bank_capacity(cfg), seed=cfg.train.seed)
        heldout = None
        if photos.test:
            held_key = bank_key({**key_parts, "photos": [(n, i.shape) for n, i in photos.test], "seed": None})
            heldout = build_heldout(photos.test, dc.size, labeller, root / f"heldout-{held_key}")
        # The fit views are the bank's first views: labelled before training starts.
        while len(bank) < min(FIT_VIEWS, bank.capacity):
            if not bank.fill_shard():
                break
        fit_x, fit_y = bank.first(min(FIT_VIEWS, len(bank)))
        return cls(photos, spec, labeller, bank, heldout, fit_x, fit_y)

    def describe(self) -> dict:
        return {"photos": self.photos.description, "view_spec": self.spec.as_dict(), "labeller": self.labeller.info,
                "bank": self.bank.stats(), "teacher_passes": self.labeller.passes,
                "labelling_seconds": round(self.labeller.seconds, 1),
                "heldout": None if self.heldout is None else {"crops": len(self.heldout), "photos": self.heldout.photos}}

