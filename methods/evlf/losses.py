"""The two terms of the EVLF training loss and what feeds them: the symmetric multi-positive
InfoNCE between projected fused latents and pooled prompt vectors, the ramped weight of the
MSE term, and the pooling of a prompt's token states into one vector.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

TEXT_POOLS: tuple[str, ...] = ("last", "eot")
MSE_WEIGHT_START, MSE_WEIGHT_END = 0.05, 1.0


def pool_text(tokens: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector per prompt from its K x L x D token states and K x L attention mask.

    ``last``: the state at the last position of the padded sequence. That is what the
    released code ends up with on CLIP, whose padding token is the end-of-text token, so the
    search for the last end-of-text token lands on the last padding position (faithful).
    ``eot``: the state at the last real token (CLIP's first end-of-text, BERT's [SEP]), the
    position the paper means.
    """
    if how == "last":
        return tokens[:, -1]
    if how == "eot":
        position = mask.long().sum(dim=1).sub(1).clamp(min=0)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), position.to(tokens.device)]
    raise ValueError(f"text pooling must be one of {TEXT_POOLS}, got {how!r}")


def _multi_positive_ce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    log_p = logits.log_softmax(dim=1)
    log_p_pos = log_p.masked_fill(~positives, float("-inf"))
    count = positives.sum(dim=1).clamp(min=1).to(logits.dtype)
    return -(log_p_pos.logsumexp(dim=1) - count.log()).mean()


def multi_positive_info_nce(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                            temperature: float = 0.07) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE of B image features and B text features (B x D each).

    With u_i = image_i / |image_i|, v_j = text_j / |text_j|, s_ij = u_i . v_j / temperature and
    the positives P_i = {j : labels_j = labels_i} (i itself included):

        l_i2t(i) = -log( (1 / |P_i|) * sum_{j in P_i} exp(s_ij) / sum_k exp(s_ik) )
        l_t2i(i) = the same with s_ji in place of s_ij
        L = ( mean_i l_i2t(i) + mean_i l_t2i(i) ) / 2

    i.e. minus the log of the mean softmax probability of the positives (log-mean-exp over the
    positives, as the released code computes it), so a row's loss does not grow with its
    number of positives. Computed in float32.
    """
    u = F.normalize(image.float(), dim=-1)
    v = F.normalize(text.float(), dim=-1)
    logits = u @ v.t() / temperature
    labels = labels.to(logits.device)
    positives = labels[:, None] == labels[None, :]
    return 0.5 * (_multi_positive_ce(logits, positives) + _multi_positive_ce(logits.t(), positives.t()))


def mse_weight(step: int, steps: int) -> float:
    """``l2(step)``: linear from 0.05 at step 0 to 1.0 at half of ``steps``, then 1.0."""
    half = max(steps / 2, 1.0)
    t = min(max(step / half, 0.0), 1.0)
    return MSE_WEIGHT_START + (MSE_WEIGHT_END - MSE_WEIGHT_START) * t
