"""Distillation from a frozen teacher during training (the config's `teacher:` section).

Fine-tuning a released model on a few thousand narrow photos makes it forget what it knew about
photos unlike them. Learning without forgetting keeps a frozen copy (or a stronger model) as a
teacher and adds, to the label losses, the KL divergence from the teacher's probabilities to the
student's on every training batch, so the student moves towards the labels only as far as it
can while still predicting what the teacher predicts elsewhere.

    teacher:
      model_path: released.pt        # weights for the teacher (required)
      model: {type: PPHumanSegLite, num_classes: 2}   # default: the student's model section
      coef: 1.0                      # weight of the KL term in the total loss
      temperature: 1.0               # softens both distributions; the term is scaled by T^2
      flip: true                     # average the teacher over a horizontal flip (a better teacher)
      input_size: [398, 224]         # [w, h] the teacher sees (resized batch); default: as given
      skip_grey: false               # leave grey-scale samples (three equal channels) out of the
                                     # term: a colour-trained teacher is poor on them, and grey
                                     # augmentation is there to do better than it
      grey_student: 0.0              # share of samples the student sees in grey while the teacher
                                     # sees the colour original: a grey photo is taught the
                                     # teacher's colour-quality answer, not its grey mistakes

`grey_student` greys whole samples of the normalised batch (BT.601 luma, as RandomGrayscale),
undoing and redoing the train transforms' `Normalize`; it is the same as a RandomGrayscale placed
after every colour transform (blur and flips commute with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from humanseg.builder import teacher_settings
from humanseg.data.inference import Normalize

TERM_NAME = "Distillation"
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601, the weights of RandomGrayscale (albumentations)


class Teacher:
    """A frozen model in eval mode and the KL term that pulls the student towards it.

    Args:
        spec: the config's `teacher` section (keys in the module docstring).
        student_model: the student's `model` section, used when the teacher names none.
        device: where the teacher runs (the student's device).
        normalisation: the train transforms' `Normalize` (needed by `grey_student` only).
    """

    def __init__(self, spec: Mapping[str, Any], student_model: Mapping[str, Any],
                 device: torch.device, normalisation: Normalize | None = None) -> None:
        from humanseg.models import build_model, load_model_file, without_pretrained

        settings = teacher_settings(spec, normalisation is not None)
        self.coef, self.temperature = settings.coef, settings.temperature
        self.flip, self.skip_grey = settings.flip, settings.skip_grey
        self.grey_student, self.input_hw = settings.grey_student, settings.input_hw
        self.normalisation = normalisation
        self.model = build_model(without_pretrained(settings.model or student_model))
        load_model_file(self.model, settings.model_path)
        self.model.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def student_view(self, images: torch.Tensor) -> torch.Tensor:
        """The normalised batch [N, 3, H, W] with a random `grey_student` share of its samples
        in grey (torch's seeded generator); the batch itself when the share is 0."""
        if self.grey_student <= 0:
            return images
        grey = torch.rand(images.shape[0], device=images.device) < self.grey_student
        if not grey.any():
            return images
        return torch.where(grey[:, None, None, None], grey_normalised(images, self.normalisation),
                           images)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher softmax [N, C, H, W] at the batch's size (temperature applied)."""
        height, width = images.shape[-2:]
        inputs = images if self.input_hw is None else F.interpolate(
            images, size=self.input_hw, mode="bilinear", align_corners=False)
        logits = self.model(inputs).float()
        probabilities = (logits / self.temperature).softmax(dim=1)
        if self.flip:
            flipped = self.model(inputs.flip(-1)).float().flip(-1)
            probabilities = 0.5 * (probabilities + (flipped / self.temperature).softmax(dim=1))
        if tuple(probabilities.shape[-2:]) != (height, width):
            probabilities = F.interpolate(probabilities, size=(height, width), mode="bilinear",
                                          align_corners=False)
        return probabilities

    def loss(self, student_logits: torch.Tensor, images: torch.Tensor,
             valid: torch.Tensor) -> torch.Tensor:
        """T^2 * mean over valid pixels of KL(teacher || student) (unweighted: the trainer
        adds `coef` times this to the total)."""
        target = self.probabilities(images)
        if self.skip_grey:
            colour = (images[:, 0] != images[:, 1]) | (images[:, 1] != images[:, 2])
            valid = valid & colour.flatten(1).any(dim=1)[:, None, None]
        log_student = F.log_softmax(student_logits.float() / self.temperature, dim=1)
        per_pixel = (target * (target.clamp_min(1e-8).log() - log_student)).sum(dim=1)
        mask = valid.to(per_pixel.dtype)
        mean = (per_pixel * mask).sum() / mask.sum().clamp_min(1.0)
        return self.temperature**2 * mean


def grey_normalised(images: torch.Tensor, normalisation: Normalize) -> torch.Tensor:
    """The grey version (BT.601 luma in all three channels) of normalised images [N, 3, H, W]:
    back to pixel values, luma, normalised again with the same per-channel mean and std."""
    mean = torch.as_tensor(normalisation.mean, dtype=images.dtype, device=images.device)
    scale = torch.as_tensor(normalisation.inverse_std, dtype=images.dtype, device=images.device)
    weights = torch.as_tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    pixels = images / scale[:, None, None] + mean[:, None, None]
    luma = (pixels * weights[:, None, None]).sum(dim=1, keepdim=True)
    return (luma - mean[:, None, None]) * scale[:, None, None]
