"""Objectives: how the labels (or inputs) of task ``r`` are made.

Every objective is a pure function of ``(seed, r)``: every strategy sees exactly the same task
sequence, and a restored run rebuilds the same tasks. Task 0 always uses the original labels.

- ``none``: the original labels for every task (a control).
- ``class_shuffle``: a random permutation ``π_r`` of the 10 classes; label ← ``π_r[label]``,
  train and test alike (the paper's class shuffling).
- ``full_shuffle``: the paper's "dummy network" method done right. One randomly initialised
  teacher network per task labels every image by the argmax of its logits; the labels are a
  function of the image and stay fixed for the whole task (the paper's code drew a new teacher
  for every batch, so nothing could be learned). Raw argmax of a random network piles most
  images into one or two classes, so each logit is standardised over the training images first
  (a fixed per-task affine map of the teacher's output; labels stay a function of the image).
- ``random_labels``: i.i.d. uniform labels per image, fixed for the task (memorisation, as in
  Lyle et al. 2023). Test accuracy is meaningless there (``meaningful_test`` is false).
- ``permute_inputs``: a fixed random permutation of pixel positions per task, original labels
  (permuted MNIST, as in Dohare et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity.data import NUM_CLASSES, Dataset
from plasticity.models import MLPSpec, build
from plasticity.seeding import generator, seeded

OBJECTIVES = ("none", "class_shuffle", "full_shuffle", "random_labels", "permute_inputs")

# The teacher of full_shuffle: a random MLP with two hidden layers of 256 (as the paper's code,
# a "dummy MLP"; narrower than the paper's models so labelling CIFAR10 stays cheap on a CPU).
TEACHER = MLPSpec(hidden=(256, 256))


@dataclass
class Task:
    """The labels (and input permutation) of one task, on the data's device."""

    index: int
    y_train: torch.Tensor
    y_test: torch.Tensor
    pixel_perm: torch.Tensor | None = None
    meaningful_test: bool = True

    @property
    def majority_rate(self) -> float:
        """Fraction of training images in the most common class: the accuracy of a constant
        guess, the floor any learning must beat."""
        return torch.bincount(self.y_train, minlength=NUM_CLASSES).max().item() / len(self.y_train)


def make_task(objective: str, data: Dataset, seed: int, index: int) -> Task:
    """Task ``index`` of ``objective`` (``index`` 0: original labels, no permutation)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}")
    y_tr, y_te = data.train.y, data.test.y
    if index == 0 or objective == "none":
        return Task(index, y_tr, y_te)
    g = generator(seed, "objective", objective, index)
    dev = data.device
    if objective == "class_shuffle":
        perm = torch.randperm(NUM_CLASSES, generator=g).to(dev)
        return Task(index, perm[y_tr], perm[y_te])
    if objective == "random_labels":
        y = torch.randint(NUM_CLASSES, (len(y_tr) + len(y_te),), generator=g).to(dev)
        return Task(index, y[: len(y_tr)], y[len(y_tr) :], meaningful_test=False)
    if objective == "permute_inputs":
        _, _, h, w = data.train.x.shape
        return Task(index, y_tr, y_te, pixel_perm=torch.randperm(h * w, generator=g).to(dev))
    return Task(index, *teacher_labels(data, seed, index))


@torch.no_grad()  # not inference_mode: the labels are later saved by autograd as CE targets
def teacher_labels(
    data: Dataset, seed: int, index: int, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """``full_shuffle`` labels: argmax of a random teacher's standardised logits."""
    with seeded(seed, "teacher", index):
        teacher = build(TEACHER, data.info.shape).to(data.device).eval()

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([teacher(data.prepare(x[i : i + chunk])) for i in range(0, len(x), chunk)])

    z_tr, z_te = logits(data.train.x), logits(data.test.x)
    mu, sd = z_tr.mean(0), z_tr.std(0).clamp_min(1e-12)
    return ((z_tr - mu) / sd).argmax(1), ((z_te - mu) / sd).argmax(1)
