"""SAM's training losses on mask logits: focal + dice (20:1) and MSE on the predicted IoU.

All functions take logits and targets of the same shape ``(..., H, W)`` and return one value per
mask (shape ``(...)``), so callers can take the minimum over multimask outputs before averaging.

Example:
    >>> import torch
    >>> t = torch.zeros(1, 4, 4); t[:, :2] = 1
    >>> perfect = (t * 2 - 1) * 50
    >>> float(dice_loss(perfect, t)) < 1e-4, float(sigmoid_focal_loss(perfect, t)) < 1e-4
    (True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al.) per mask, averaged over pixels.

    Example:
        >>> import torch
        >>> t = torch.ones(1, 2, 2)
        >>> round(float(sigmoid_focal_loss(torch.zeros(1, 2, 2), t)), 4)  # 0.25 * 0.25 * ln 2
        0.0433
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss ``1 - (2|P∩T| + eps) / (|P| + |T| + eps)`` per mask, on sigmoid(logits).

    Example:
        >>> import torch
        >>> t = torch.zeros(1, 2, 2); t[0, 0, 0] = 1
        >>> round(float(dice_loss(torch.full((1, 2, 2), -50.0), t)), 4)  # predicts nothing
        0.5
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits).flatten(-2)
    t = targets.flatten(-2)
    num = 2 * (p * t).sum(-1) + eps
    den = p.sum(-1) + t.sum(-1) + eps
    return 1 - num / den


def mask_iou_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with the targets, per mask (no gradient); 1 when both are empty.

    Example:
        >>> import torch
        >>> t = torch.zeros(1, 2, 2); t[0, 0] = 1
        >>> float(mask_iou_from_logits(torch.ones(1, 2, 2), t))
        0.5
    """
    with torch.no_grad():
        p = (logits > 0).flatten(-2)
        t = (targets > 0.5).flatten(-2)
        inter = (p & t).sum(-1).float()
        union = (p | t).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_losses(
    logits: torch.Tensor,
    targets: torch.Tensor,
    iou_pred: torch.Tensor,
    *,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Per-mask losses for logits ``(N, M, H, W)`` vs targets ``(N, H, W)``, IoU preds ``(N, M)``.

    Returns ``focal``, ``dice``, ``iou`` (MSE of ``iou_pred`` vs the actual IoU) and ``mask``
    (= ``focal_weight * focal + dice_weight * dice``), each of shape ``(N, M)``. Take
    ``mask.min(1)`` for multimask outputs as SAM does.

    Example:
        >>> import torch
        >>> t = torch.zeros(2, 4, 4); t[:, 1:3, 1:3] = 1
        >>> out = mask_losses((t[:, None] * 2 - 1) * 50, t, torch.ones(2, 1))
        >>> sorted(out), float(out["iou"].max())
        (['dice', 'focal', 'iou', 'mask'], 0.0)
    """
    tgt = targets[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, tgt)
    dice = dice_loss(logits, tgt)
    actual = mask_iou_from_logits(logits, tgt)
    iou = (iou_pred - actual) ** 2
    mask = focal_weight * focal + dice_weight * dice
    return {"focal": focal, "dice": dice, "iou": iou_weight * iou, "mask": mask}
