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
- ``warm_start``: the setting of Ash & Adams 2020 ("On warm-starting neural network training",
  NeurIPS). The objective never changes (original labels, the full test set, so test accuracy
  means something); what grows is the training data. With ``R`` restarts (tasks ``0..R``) and
  ``N`` training images, task ``k`` trains on the first

      m_k = ⌈N·(k+1)/(R+1)⌉                   (exact integer arithmetic)

  images of one fixed permutation of the training set, seeded by the run seed alone (not by
  ``k``). So the subsets are nested (task ``k``'s holds task ``k−1``'s, in the same order, as its
  prefix), task ``R`` is the whole set, and every strategy, and a restored run, trains on the
  same images. Why equal shares ``(k+1)/(R+1)``: with ``R = 1`` it is exactly the paper's main
  ("batch updating") experiment, half of the data, then all of it; with ``R > 1`` it is the
  paper's passive online experiment, where equal chunks of new data arrive and each model is
  trained on everything seen so far. The alternative, a start share ``s_0`` grown by
  ``(1 − s_0)/R`` a task, adds a free parameter and matches the online experiment only with
  ``s_0 = 1/(R+1)``, which is this scheme. The paper
  trains each stage to convergence; here each task gets the run's ``E`` epochs over its own
  subset (``⌈m_k/B⌉`` steps an epoch), the same budget for a fresh and a warm-started network.
  ``reset`` is the paper's randomly initialised model, ``continuous`` its warm start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity.data import NUM_CLASSES, Dataset
from plasticity.models import MLPSpec, build
from plasticity.seeding import generator, seeded

OBJECTIVES = (
    "none",
    "class_shuffle",
    "full_shuffle",
    "random_labels",
    "permute_inputs",
    "warm_start",
)

# The teacher of full_shuffle: a random MLP with two hidden layers of 256 (as the paper's code,
# a "dummy MLP"; narrower than the paper's models so labelling CIFAR10 stays cheap on a CPU).
TEACHER = MLPSpec(hidden=(256, 256))


@dataclass
class Task:
    """The training images and labels (and input permutation) of one task, on the data's device.

    ``y_train`` (``M``) labels the task's training images: ``x_train`` (``M x C x H x W``
    uint8) when the task trains on a subset (``warm_start``), else the whole training set
    (``x_train`` None, ``M = N``). ``train_index`` (``M``) says which images of the training
    set ``x_train`` holds, in training order.
    """

    index: int
    y_train: torch.Tensor
    y_test: torch.Tensor
    pixel_perm: torch.Tensor | None = None
    meaningful_test: bool = True
    x_train: torch.Tensor | None = None
    train_index: torch.Tensor | None = None

    @property
    def majority_rate(self) -> float:
        """Fraction of the task's training images in the most common class: the accuracy of a
        constant guess, the floor any learning must beat."""
        return torch.bincount(self.y_train, minlength=NUM_CLASSES).max().item() / len(self.y_train)


def make_task(
    objective: str, data: Dataset, seed: int, index: int, restarts: int | None = None
) -> Task:
    """Task ``index`` of ``objective`` (``index`` 0: original labels, no permutation).

    ``restarts`` (R, tasks ``0..R``) is read by ``warm_start`` only, whose shares depend on it;
    every other objective's task ``index`` is the same whatever R.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}")
    if objective == "warm_start":
        return warm_start_task(data, seed, index, restarts)
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


def warm_start_size(n: int, index: int, restarts: int) -> int:
    """``m_k = ⌈n·(k+1)/(R+1)⌉``: training images of ``warm_start`` task ``k`` out of ``n``."""
    return -(-n * (index + 1) // (restarts + 1))


def warm_start_task(data: Dataset, seed: int, index: int, restarts: int | None) -> Task:
    """``warm_start`` task ``index``: the first ``m_k`` images of the run's fixed permutation
    of the training set, their original labels, and the full test set."""
    if restarts is None or not 0 <= index <= restarts:
        raise ValueError(f"warm_start needs 0 <= index <= restarts, got {index}, {restarts}")
    n = len(data.train)
    # One permutation for every task (keyed by the seed, not the index): nested subsets.
    order = torch.randperm(n, generator=generator(seed, "objective", "warm_start"))
    idx = order[: warm_start_size(n, index, restarts)].to(data.device)
    # Gathered once per task, so the loop slices contiguous batches as for the full set.
    x, y = data.train.x[idx], data.train.y[idx]
    return Task(index, y, data.test.y, x_train=x, train_index=idx)


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
